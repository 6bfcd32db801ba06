"""Inference backends behind one interface: a batch of preprocessed faces in, class probabilities out.

``base``: the protocol, its error and the shared batch chunking and probability check; ``registry``: the backends by
name and ``open_backend``; one module per runtime: ``onnx_runtime``, ``tensorrt_engine`` (running and building
engines), ``torch_program``.
"""

from __future__ import annotations

from .base import MAX_BATCH, OPT_BATCH, TIMED_BATCHES, Backend, BackendError, Runtime, cuda_device, sha256, softmax, throughput
from .onnx_runtime import OnnxRuntimeBackend, ort_gpu_providers
from .registry import backend_names, nvidia_gpu_present, open_backend, register_backend
from .tensorrt_engine import TensorRTBackend, build_engine, engine_for, import_tensorrt, open_tensorrt
from .torch_program import PROGRAM_SHA_KEY, TorchBackend, open_torch

# "auto" tries these in order, fastest first; onnxruntime on CPU is the fallback that always runs.
BACKENDS = backend_names()

__all__ = ["BACKENDS", "MAX_BATCH", "OPT_BATCH", "PROGRAM_SHA_KEY", "TIMED_BATCHES", "Backend", "BackendError", "OnnxRuntimeBackend", "Runtime",
           "TensorRTBackend", "TorchBackend", "backend_names", "build_engine", "cuda_device", "engine_for",
           "import_tensorrt", "nvidia_gpu_present", "open_backend", "open_tensorrt", "open_torch",
           "ort_gpu_providers", "register_backend", "sha256", "softmax", "throughput"]
