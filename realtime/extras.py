"""Optional dependencies: imported where needed, with a one-line error naming the extra that installs them."""

from __future__ import annotations

import importlib
from types import ModuleType

# What each optional module is installed with.
EXTRAS = {"pandas": "table", "pyarrow": "table", "ray": "cluster", "torch": "train", "torchvision": "train",
          "onnx": "train", "efficientnet_lite_pytorch": "train", "fastapi": "serve", "uvicorn": "serve",
          "python_multipart": "serve"}


class MissingExtra(Exception):
    """An optional dependency that is not installed; the message says which extra installs it."""


def missing(module: str) -> MissingExtra:
    """The error for an optional ``module`` (or a submodule of one) that is not installed."""
    top = module.partition(".")[0]
    return MissingExtra(f"{top} is not installed; pip install 'emocam[{EXTRAS[top]}]'")


def optional(error: ModuleNotFoundError) -> bool:
    """Whether ``error`` is about an optional dependency (a missing extra) rather than a broken install."""
    return (error.name or "").partition(".")[0] in EXTRAS


def require(module: str) -> ModuleType:
    """``module`` imported, or MissingExtra telling which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise missing(module) from None
