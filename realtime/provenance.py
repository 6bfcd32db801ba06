"""What a result came from: the input, the model (by its sha256), the options and the emocam version, recorded in
every summary and in the batch index, so that a result file read months later says how it was made."""

from __future__ import annotations

import functools
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any

from .backends import sha256

try:
    VERSION = metadata.version("emocam")
except metadata.PackageNotFoundError:  # run from a checkout that was never installed
    VERSION = "unknown"


@functools.lru_cache(maxsize=8)
def _model_sha256(path: str, size: int, mtime_ns: int) -> str:
    return sha256(Path(path))


def model_sha256(path: Path) -> str:
    """The model file's sha256, hashed once per version of the file (a batch records it for every input)."""
    st = Path(path).stat()
    return _model_sha256(str(Path(path).absolute()), st.st_size, st.st_mtime_ns)


def options_record(options: Any) -> dict:
    """An emocam Options as JSON-ready values (paths as text), the face reading as the settings it resolves to
    (detector, min_score, enlarge, keep), however it was given; the model is recorded apart, with its hash."""
    given = {k: v for k, v in asdict(options).items() if k not in ("model", "reading", "detector", "min_score")}
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in given.items()} | options.face_reading.to_dict()


def provenance(source: str | Path | None, options: Any, backend: str | None = None) -> dict:
    """The record of how a result was made: the input, the model's path and sha256, the options (an emocam Options),
    the backend that ran the model (``options.backend`` may say "auto") and the emocam version."""
    model = options.model_path
    return {"input": None if source is None else str(source), "model": str(model), "model_sha256": model_sha256(model),
            "options": options_record(options), "backend": backend, "emocam_version": VERSION}
