"""What every backend is and does alike: the ``Backend`` protocol, its error, and ``Runtime``, the base that runs a
batch in chunks the runtime accepts and turns a logits model's answers into probabilities."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Protocol

import numpy as np

from ..contract import ModelContract

# Batch sizes the GPU backends are prepared for: the largest (the TensorRT profile's max and the largest CUDA graph)
# and the most common (its opt: a file's eight frames of one face each, ``Options.batch_frames``).
MAX_BATCH = 64
OPT_BATCH = 8
# The batch sizes at which the classifier alone is timed.
TIMED_BATCHES = (1, OPT_BATCH, MAX_BATCH)


class BackendError(Exception):
    """A backend that cannot run here (not installed, no GPU); the message says what to install."""


class Backend(Protocol):
    """Runs the classifier. ``predict`` takes (N, C, S, S) float32 and returns (N, K) float32 probabilities."""

    name: str
    contract: ModelContract

    def predict(self, batch: np.ndarray) -> np.ndarray: ...


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, float32."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def outputs_probabilities(contract: ModelContract) -> bool:
    """Whether the model answers probabilities (emocam exports do) rather than logits."""
    return contract.info.get("output", "probs") == "probs"


class Runtime:
    """Base of the backends: ``predict`` runs ``_run`` on chunks of at most ``max_batch`` faces (None: the whole
    batch in one call) and gives probabilities whatever the model outputs."""

    name: str
    contract: ModelContract
    max_batch: int | None = None

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """(N, C, S, S) float32 faces -> (N, K) float32 probabilities."""
        step = self.max_batch or max(len(batch), 1)
        parts = [self._run(batch[i:i + step]) for i in range(0, len(batch), step)]
        out = np.concatenate(parts) if parts else np.zeros((0, len(self.contract.classes)), np.float32)
        return out if outputs_probabilities(self.contract) else softmax(out)

    def _run(self, chunk: np.ndarray) -> np.ndarray:
        """The model's raw answers for at most ``max_batch`` faces."""
        raise NotImplementedError


def sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def cuda_device(device: int | str):
    """The torch CUDA device for ``device`` (an index or 'cuda:N'); BackendError where torch sees no GPU."""
    try:
        import torch
    except ImportError:
        raise BackendError("PyTorch is not installed; pip install '.[gpu]'") from None
    if not torch.cuda.is_available():
        raise BackendError(f"no CUDA GPU is visible to PyTorch {torch.__version__} here; run on a machine with one")
    return torch.device(f"cuda:{device}" if isinstance(device, int) else device)


def throughput(backend: Backend, batches: tuple[int, ...] = TIMED_BATCHES, seconds: float = 2.0) -> dict[int, float]:
    """Faces per second that ``backend.predict`` sustains at each batch size, numpy in and out, after warm-up."""
    pre = backend.contract.pre
    rng = np.random.default_rng(0)
    rates = {}
    for n in batches:
        x = rng.standard_normal((n, pre.channels, pre.size, pre.size)).astype(np.float32)
        for _ in range(3):  # first calls build CUDA graphs and TensorRT's lazy state
            backend.predict(x)
        calls, start = 0, time.perf_counter()
        while True:
            backend.predict(x)
            calls += 1
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                break
        rates[n] = calls * n / elapsed
    return rates
