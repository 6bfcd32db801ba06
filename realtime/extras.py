"""Optional dependencies: imported where needed, with a one-line error naming the extra that installs them."""

from __future__ import annotations

import importlib
from types import ModuleType

# What each optional module is installed with.
EXTRAS = {"pandas": "table", "pyarrow": "table", "ray": "cluster", "fastapi": "serve", "uvicorn": "serve",
          "python_multipart": "serve", "PIL": "serve"}


class MissingExtra(Exception):
    """An optional dependency that is not installed; the message says which extra installs it."""


def require(module: str) -> ModuleType:
    """``module`` imported, or MissingExtra telling which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtra(f"{module} is not installed; pip install 'emocam[{EXTRAS[module]}]'") from None
