"""The backends by name: each runtime's module registers how to open it (``register_backend``), and
``open_backend`` opens one by name, or with 'auto' the fastest that runs here. An unknown name lists the valid ones."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .base import Backend, BackendError

Opener = Callable[[Path, "int | str", int], Backend]


@dataclass(frozen=True)
class Entry:
    """How to open one backend (``opener(model, device, threads)``), where 'auto' tries it (``rank``, fastest first)
    and whether it needs a GPU."""

    name: str
    opener: Opener
    rank: int
    gpu_only: bool


_REGISTRY: dict[str, Entry] = {}


def register_backend(name: str, rank: int, gpu_only: bool = False) -> Callable[[Opener], Opener]:
    """Decorator: ``opener(model, device, threads)`` opens the backend ``name``; 'auto' tries lower ranks first."""
    def add(opener: Opener) -> Opener:
        if name in _REGISTRY:
            raise ValueError(f"backend '{name}' is registered twice")
        _REGISTRY[name] = Entry(name, opener, rank, gpu_only)
        return opener
    return add


def backend_names() -> tuple[str, ...]:
    """Every registered backend, in the order 'auto' tries them; the last one (onnxruntime on CPU) always runs."""
    return tuple(e.name for e in sorted(_REGISTRY.values(), key=lambda e: e.rank))


def nvidia_gpu_present() -> bool:
    """Whether this machine may have an NVIDIA GPU: on Linux, whether its driver is loaded (elsewhere, assume so).
    Checked before trying the GPU backends, because importing torch only to learn there is no GPU takes seconds."""
    if not sys.platform.startswith("linux"):
        return True
    return Path("/proc/driver/nvidia/version").exists() or any(Path("/dev").glob("nvidia[0-9]*"))


def open_backend(model: Path, backend: str = "onnxruntime", device: int | str = 0, threads: int = 1) -> Backend:
    """The named backend for ``model`` (an emocam ONNX file) on GPU ``device`` (or 'cpu'); 'auto' picks the fastest
    that runs here. BackendError says what to install when the named one cannot run."""
    model = Path(model)
    names = backend_names()
    if backend == "auto":
        for name in names[:-1] if device != "cpu" and nvidia_gpu_present() else ():
            try:
                return open_backend(model, name, device, threads)
            except BackendError:
                continue
        return open_backend(model, names[-1], device, threads)
    entry = _REGISTRY.get(backend)
    if entry is None:
        raise BackendError(f"unknown backend '{backend}'; choose auto, {', '.join(names)}")
    if device == "cpu" and entry.gpu_only:
        raise BackendError(f"backend '{backend}' runs on a GPU only; choose torch or onnxruntime for the CPU")
    return entry.opener(model, device, threads)
