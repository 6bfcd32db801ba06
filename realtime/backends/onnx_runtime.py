"""ONNX Runtime: on CPU (the backend that always runs), or through its CUDA or TensorRT execution providers."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..contract import ModelError, session_contract
from .base import MAX_BATCH, OPT_BATCH, BackendError, Runtime
from .registry import register_backend


class OnnxRuntimeBackend(Runtime):
    """ONNX Runtime; CPU by default, or the CUDA / TensorRT execution providers when asked for."""

    name = "onnxruntime"

    def __init__(self, model: Path, providers: tuple = ("CPUExecutionProvider",), threads: int = 1) -> None:
        import onnxruntime as ort

        model = Path(model)
        if not model.is_file():
            raise ModelError(f"model file not found: {model}")
        names = [p if isinstance(p, str) else p[0] for p in providers]
        missing = [p for p in names if p not in ort.get_available_providers()]
        if missing:
            raise BackendError(f"onnxruntime here lacks {', '.join(missing)}; install onnxruntime-gpu (pip install '.[gpu]')")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(str(model), opts, providers=list(providers))
        except Exception as e:  # onnxruntime raises several unrelated types for a bad file
            if names[0] != "CPUExecutionProvider":
                raise BackendError(f"onnxruntime could not start {names[0]} ({str(e).splitlines()[0][:120]})") from None
            raise ModelError(f"{model} is not a readable ONNX model ({str(e).splitlines()[0][:120]})") from None
        active = self.session.get_providers()[0]
        if active != names[0]:
            # onnxruntime falls back to the next provider when one fails to load (missing CUDA/TensorRT libraries).
            raise BackendError(f"onnxruntime could not start {names[0]} and fell back to {active}; it needs CUDA 13 and "
                               f"cuDNN 9 (pip install 'onnxruntime-gpu[cuda,cudnn]') and, for TensorRT, TensorRT 10")
        self.name = {"TensorrtExecutionProvider": "onnxruntime-tensorrt",
                     "CUDAExecutionProvider": "onnxruntime-cuda"}.get(active, "onnxruntime")
        self.contract = session_contract(self.session, model)
        self._input = self.session.get_inputs()[0].name

    def _run(self, chunk: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self._input: chunk})[0]


def ort_gpu_providers(model: Path, kind: str, device: int = 0) -> tuple:
    """onnxruntime providers for ``kind`` 'cuda' or 'tensorrt' (fp16, a 1..MAX_BATCH batch profile, cached
    engines)."""
    # TF32 would move probabilities by ~1e-3; this model is far too small for it to pay.
    cuda = ("CUDAExecutionProvider", {"device_id": device, "use_tf32": 0})
    if kind == "cuda":
        return cuda, "CPUExecutionProvider"
    probe = OnnxRuntimeBackend(model)  # on CPU, for the input's name and shape
    pre = probe.contract.pre
    shape = lambda n: f"{probe._input}:{n}x{pre.channels}x{pre.size}x{pre.size}"  # noqa: E731
    # Without a profile the TensorRT provider rebuilds its engine whenever a larger batch arrives.
    trt = ("TensorrtExecutionProvider", {
        "device_id": device, "trt_fp16_enable": True, "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(Path(model).parent / "ort-trt-cache"),
        "trt_profile_min_shapes": shape(1), "trt_profile_opt_shapes": shape(OPT_BATCH),
        "trt_profile_max_shapes": shape(MAX_BATCH)})
    return trt, cuda, "CPUExecutionProvider"


@register_backend("onnxruntime", rank=4)
def open_onnxruntime(model: Path, device: int | str = 0, threads: int = 1) -> OnnxRuntimeBackend:
    """ONNX Runtime on the CPU (``device`` is not used)."""
    return OnnxRuntimeBackend(model, threads=threads)


@register_backend("onnxruntime-tensorrt", rank=1, gpu_only=True)
def open_onnxruntime_tensorrt(model: Path, device: int | str = 0, threads: int = 1) -> OnnxRuntimeBackend:
    """ONNX Runtime through its TensorRT execution provider on GPU ``device``."""
    return OnnxRuntimeBackend(model, ort_gpu_providers(model, "tensorrt", device), threads)


@register_backend("onnxruntime-cuda", rank=2, gpu_only=True)
def open_onnxruntime_cuda(model: Path, device: int | str = 0, threads: int = 1) -> OnnxRuntimeBackend:
    """ONNX Runtime through its CUDA execution provider on GPU ``device``."""
    return OnnxRuntimeBackend(model, ort_gpu_providers(model, "cuda", device), threads)
