"""Inference backends behind one interface: a batch of preprocessed faces in, class probabilities out."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from .contract import ModelContract, ModelError, contract_from_metadata


class BackendError(Exception):
    """A backend that cannot run here (not installed, no GPU); the message says what to install."""


class Backend(Protocol):
    """Runs the classifier. ``predict`` takes (N, C, S, S) float32 and returns (N, K) float32 probabilities."""

    name: str
    contract: ModelContract

    def predict(self, batch: np.ndarray) -> np.ndarray: ...


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


class OnnxRuntimeBackend:
    """ONNX Runtime; CPU by default, or the CUDA / TensorRT execution providers when asked for."""

    name = "onnxruntime"

    def __init__(self, model: Path, providers: tuple[str, ...] = ("CPUExecutionProvider",), threads: int = 1) -> None:
        import onnxruntime as ort

        model = Path(model)
        if not model.is_file():
            raise ModelError(f"model file not found: {model}")
        missing = [p for p in providers if p not in ort.get_available_providers()]
        if missing:
            raise BackendError(f"onnxruntime here lacks {', '.join(missing)}; install onnxruntime-gpu (pip install '.[gpu]')")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(str(model), opts, providers=list(providers))
        except Exception as e:  # onnxruntime raises several unrelated types for a bad file
            raise ModelError(f"{model} is not a readable ONNX model ({str(e).splitlines()[0][:120]})") from None
        self.contract = contract_from_metadata(self.session.get_modelmeta().custom_metadata_map, model)
        self._input = self.session.get_inputs()[0].name
        self._outputs_probs = self.contract.info.get("output", "probs") == "probs"

    def predict(self, batch: np.ndarray) -> np.ndarray:
        out = self.session.run(None, {self._input: batch})[0]
        return out if self._outputs_probs else softmax(out)


def open_backend(model: Path, backend: str = "onnxruntime", threads: int = 1) -> Backend:
    """The named backend for ``model``; BackendError says what to install if it cannot run here."""
    if backend == "onnxruntime":
        return OnnxRuntimeBackend(model, threads=threads)
    raise BackendError(f"unknown backend '{backend}'; choose onnxruntime")
