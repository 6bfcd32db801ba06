"""Inference backends behind one interface: a batch of preprocessed faces in, class probabilities out."""

from __future__ import annotations

import contextlib
import hashlib
import sys
import time
from pathlib import Path
from typing import Protocol

import numpy as np

from .contract import METADATA_KEY, ModelContract, ModelError, contract_from_metadata, read_contract, session_contract

# "auto" tries these in order, fastest first; onnxruntime on CPU is the fallback that always runs.
BACKENDS = ("tensorrt", "onnxruntime-tensorrt", "onnxruntime-cuda", "torch", "onnxruntime")
# Batch sizes the GPU backends are prepared for: the TensorRT profile's max and the largest CUDA graph.
MAX_BATCH = 64
PROGRAM_SHA_KEY = "onnx_sha256"


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


def sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def import_tensorrt():
    """The tensorrt module; BackendError saying how to install it where it is missing."""
    try:
        import tensorrt
    except (ImportError, OSError):
        raise BackendError("TensorRT is not installed; pip install tensorrt "
                           "(its libraries download from NVIDIA's package index)") from None
    return tensorrt


def cuda_device(device: int | str):
    """The torch CUDA device for ``device`` (an index or 'cuda:N'); BackendError where torch sees no GPU."""
    try:
        import torch
    except ImportError:
        raise BackendError("PyTorch is not installed; pip install '.[gpu]'") from None
    if not torch.cuda.is_available():
        raise BackendError(f"no CUDA GPU is visible to PyTorch {torch.__version__} here; run on a machine with one")
    return torch.device(f"cuda:{device}" if isinstance(device, int) else device)


class OnnxRuntimeBackend:
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
        self._outputs_probs = self.contract.info.get("output", "probs") == "probs"

    def predict(self, batch: np.ndarray) -> np.ndarray:
        out = self.session.run(None, {self._input: batch})[0]
        return out if self._outputs_probs else softmax(out)


def ort_gpu_providers(model: Path, kind: str, device: int = 0) -> tuple:
    """onnxruntime providers for ``kind`` 'cuda' or 'tensorrt' (fp16, a 1..64 batch profile, cached engines)."""
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
        "trt_profile_min_shapes": shape(1), "trt_profile_opt_shapes": shape(8), "trt_profile_max_shapes": shape(MAX_BATCH)})
    return trt, cuda, "CPUExecutionProvider"


class TensorRTBackend:
    """A serialised TensorRT engine run by tensor name on its own CUDA stream, through pinned host buffers."""

    name = "tensorrt"

    def __init__(self, engine: Path, contract: ModelContract, device: int = 0) -> None:
        trt = import_tensorrt()
        import torch

        self.contract = contract
        self.device = cuda_device(device)
        self._outputs_probs = contract.info.get("output", "probs") == "probs"
        dtypes = {trt.float32: torch.float32, trt.float16: torch.float16}
        with torch.cuda.device(self.device):
            self.engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(Path(engine).read_bytes())
            if self.engine is None:
                raise BackendError(f"TensorRT could not load {engine}; rebuild it with 'emotrain engine'")
            names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
            self._input = next(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
            self._output = next(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT)
            self.max_batch = int(self.engine.get_tensor_profile_shape(self._input, 0)[2][0])
            self.context = self.engine.create_execution_context()
            self.stream = torch.cuda.Stream(self.device)
            pre, k = contract.pre, len(contract.classes)
            shape_in, shape_out = (self.max_batch, pre.channels, pre.size, pre.size), (self.max_batch, k)
            type_in = dtypes[self.engine.get_tensor_dtype(self._input)]
            type_out = dtypes[self.engine.get_tensor_dtype(self._output)]
            self._d_in = torch.empty(shape_in, dtype=type_in, device=self.device)
            self._d_out = torch.empty(shape_out, dtype=type_out, device=self.device)
            self._h_in = torch.empty(shape_in, dtype=type_in, pin_memory=True)
            self._h_out = torch.empty(shape_out, dtype=type_out, pin_memory=True)
            # A batch of n uses the first n rows of these max-batch buffers, so the addresses never change.
            self.context.set_tensor_address(self._input, self._d_in.data_ptr())
            self.context.set_tensor_address(self._output, self._d_out.data_ptr())

    def predict(self, batch: np.ndarray) -> np.ndarray:
        parts = [self._run(batch[i:i + self.max_batch]) for i in range(0, len(batch), self.max_batch)]
        out = np.concatenate(parts) if parts else np.zeros((0, len(self.contract.classes)), np.float32)
        return out if self._outputs_probs else softmax(out)

    def _run(self, chunk: np.ndarray) -> np.ndarray:
        import torch

        n = len(chunk)
        self._h_in.numpy()[:n] = chunk
        with torch.cuda.device(self.device), torch.cuda.stream(self.stream):
            self._d_in[:n].copy_(self._h_in[:n], non_blocking=True)
            self.context.set_input_shape(self._input, tuple(chunk.shape))
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise RuntimeError(f"TensorRT failed to run a batch of {n}")
            self._h_out[:n].copy_(self._d_out[:n], non_blocking=True)
        self.stream.synchronize()
        return self._h_out[:n].numpy().astype(np.float32)


class TorchBackend:
    """A torch.export program (``model.pt2``) on CPU or CUDA; on CUDA fp16 and one CUDA graph per batch bucket."""

    name = "torch"

    def __init__(self, program: Path, device: int | str = "cpu", fp16: bool | None = None,
                 graphs: bool | None = None) -> None:
        try:
            import torch
            from torch.export.passes import move_to_device_pass
        except ImportError:
            raise BackendError("PyTorch is not installed; pip install '.[gpu]'") from None
        self.device = torch.device("cpu") if device == "cpu" else cuda_device(device)
        program = Path(program)
        if not program.is_file():
            raise BackendError(f"no torch program at {program}; emotrain export writes it beside the ONNX")
        extra = {METADATA_KEY: "", PROGRAM_SHA_KEY: ""}
        exported = torch.export.load(str(program), extra_files=extra)
        self.contract = contract_from_metadata({k: v for k, v in extra.items() if v}, program)
        self.onnx_sha256 = extra[PROGRAM_SHA_KEY]
        on_gpu = self.device.type == "cuda"
        self.dtype = torch.float16 if (on_gpu if fp16 is None else fp16) else torch.float32
        self.net = move_to_device_pass(exported, self.device).module().to(self.dtype)
        self.graphs = on_gpu if graphs is None else graphs
        self._graphs: dict[int, tuple] = {}
        self._pool = torch.cuda.graph_pool_handle() if self.graphs else None
        self.name = f"torch-{self.device.type}-{'fp16' if self.dtype == torch.float16 else 'fp32'}"

    def _exact(self):
        """Inside: fp32 convolutions without TF32 on CUDA (PyTorch's default allows it; it moves results by ~1e-3)."""
        import torch

        if self.device.type != "cuda" or self.dtype != torch.float32:
            return contextlib.nullcontext()
        cudnn = torch.backends.cudnn
        return cudnn.flags(enabled=cudnn.enabled, benchmark=cudnn.benchmark, deterministic=cudnn.deterministic,
                           allow_tf32=False)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        import torch

        x = torch.from_numpy(np.ascontiguousarray(batch, np.float32))
        if not self.graphs:
            with torch.inference_mode(), self._exact():
                return self.net(x.to(self.device, self.dtype)).float().cpu().numpy()
        parts = []
        for i in range(0, len(x), MAX_BATCH):
            chunk = x[i:i + MAX_BATCH]
            graph, static_in, static_out = self._graph(1 << (len(chunk) - 1).bit_length())
            static_in[:len(chunk)].copy_(chunk)
            graph.replay()
            parts.append(static_out[:len(chunk)].float().cpu().numpy())
        return np.concatenate(parts) if parts else np.zeros((0, len(self.contract.classes)), np.float32)

    def _graph(self, size: int) -> tuple:
        """The CUDA graph for batches of up to ``size`` faces (a power of two), captured on first use."""
        import torch

        if size not in self._graphs:
            pre = self.contract.pre
            static_in = torch.zeros((size, pre.channels, pre.size, pre.size), dtype=self.dtype, device=self.device)
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.no_grad(), self._exact():
                with torch.cuda.stream(side):  # warm-up off the default stream, as capture requires
                    for _ in range(3):
                        self.net(static_in)
                torch.cuda.current_stream(self.device).wait_stream(side)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph, pool=self._pool):
                    static_out = self.net(static_in)
            self._graphs[size] = (graph, static_in, static_out)
        return self._graphs[size]


def open_tensorrt(model: Path, device: int = 0, fp16: bool = True) -> TensorRTBackend:
    """TensorRT for an emocam ONNX file: its engine is reused where it was built here from this file, else rebuilt."""
    import_tensorrt()
    from .trt_engine import engine_for

    return TensorRTBackend(engine_for(model, fp16=fp16, device=device), read_contract(model), device)


def open_torch(model: Path, device: int | str = 0) -> TorchBackend:
    """The torch program exported beside an emocam ONNX file (``model.pt2``); BackendError if it is from another."""
    backend = TorchBackend(Path(model).with_suffix(".pt2"), device)
    if backend.onnx_sha256 != sha256(model):
        raise BackendError(f"{Path(model).with_suffix('.pt2')} was not exported with {model}; export both again")
    return backend


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
    if backend == "auto":
        for name in BACKENDS[:-1] if device != "cpu" and nvidia_gpu_present() else ():
            try:
                return open_backend(model, name, device, threads)
            except BackendError:
                continue
        return OnnxRuntimeBackend(model, threads=threads)
    if backend == "onnxruntime":
        return OnnxRuntimeBackend(model, threads=threads)
    if backend == "torch":
        return open_torch(model, device)
    if device == "cpu" and backend in BACKENDS:
        raise BackendError(f"backend '{backend}' runs on a GPU only; choose torch or onnxruntime for the CPU")
    if backend == "tensorrt":
        return open_tensorrt(model, device)
    if backend in ("onnxruntime-tensorrt", "onnxruntime-cuda"):
        return OnnxRuntimeBackend(model, ort_gpu_providers(model, backend.split("-")[1], device), threads)
    raise BackendError(f"unknown backend '{backend}'; choose auto, {', '.join(BACKENDS)}")


def throughput(backend: Backend, batches: tuple[int, ...] = (1, 8, 64), seconds: float = 2.0) -> dict[int, float]:
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
