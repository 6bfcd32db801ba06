"""TensorRT: the backend that runs a serialised engine, and the deployment step that builds the engine for the GPU
at hand, reused only where its JSON sidecar says it was built for this machine, file and settings."""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..contract import ModelContract, read_contract
from .base import MAX_BATCH, OPT_BATCH, BackendError, Runtime, cuda_device, sha256
from .registry import register_backend

log = logging.getLogger(__name__)


def import_tensorrt():
    """The tensorrt module; BackendError saying how to install it where it is missing."""
    try:
        import tensorrt
    except (ImportError, OSError):
        raise BackendError("TensorRT is not installed; pip install tensorrt "
                           "(its libraries download from NVIDIA's package index)") from None
    return tensorrt


class TensorRTBackend(Runtime):
    """A serialised TensorRT engine run by tensor name on its own CUDA stream, through pinned host buffers."""

    name = "tensorrt"

    def __init__(self, engine: Path, contract: ModelContract, device: int = 0) -> None:
        trt = import_tensorrt()
        import torch

        self.contract = contract
        self.device = cuda_device(device)
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


@dataclass(frozen=True)
class Profile:
    """The optimisation profile on the batch axis: smallest, most common and largest batch."""

    min: int = 1
    opt: int = OPT_BATCH
    max: int = MAX_BATCH

    def __post_init__(self) -> None:
        if not 1 <= self.min <= self.opt <= self.max:
            raise ValueError(f"batch profile needs 1 <= min <= opt <= max, got {self.min}, {self.opt}, {self.max}")


def engine_path(onnx_path: Path, fp16: bool = True) -> Path:
    """Where the engine for ``onnx_path`` goes by default: beside it, named by precision (model.fp16.engine)."""
    return Path(onnx_path).with_suffix(".fp16.engine" if fp16 else ".fp32.engine")


def sidecar_path(engine: Path) -> Path:
    """The JSON that records what an engine was built from and for (model.fp16.engine.json)."""
    return Path(f"{engine}.json")


def machine_facts(device: int = 0) -> dict:
    """TensorRT's version and the GPU's name and compute capability; BackendError without TensorRT or a GPU."""
    trt = import_tensorrt()
    import torch

    dev = cuda_device(device)
    major, minor = torch.cuda.get_device_capability(dev)
    return {"tensorrt": trt.__version__, "gpu": torch.cuda.get_device_name(dev), "compute_capability": f"{major}.{minor}"}


def describe(onnx_path: Path, fp16: bool, profile: Profile, facts: dict) -> dict:
    """The sidecar an engine of ``onnx_path`` built with these settings on the machine of ``facts`` carries."""
    return {**facts, "profile": asdict(profile), "precision": "fp16" if fp16 else "fp32",
            "onnx_sha256": sha256(onnx_path)}


def stale_reason(recorded: dict | None, wanted: dict) -> str | None:
    """Why an engine whose sidecar says ``recorded`` cannot stand in for ``wanted``; None when every field matches."""
    if recorded is None:
        return "it has no readable sidecar"
    for key, want in wanted.items():
        if recorded.get(key) != want:
            if key == "onnx_sha256":
                return "the ONNX file changed since it was built"
            return f"it was built for {key} {recorded.get(key)!r}, here it is {want!r}"
    return None


def read_sidecar(engine: Path) -> dict | None:
    """An engine's sidecar, or None where it is missing or unreadable."""
    try:
        return json.loads(sidecar_path(engine).read_text())
    except (OSError, ValueError):
        return None


def fp16_onnx(onnx_path: Path) -> bytes:
    """The ONNX model with fp16 weights and arithmetic inside, float32 at its input and output."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    return convert_float_to_float16(onnx.load(str(onnx_path)), keep_io_types=True).SerializeToString()


def build_engine(onnx_path: Path, out: Path | None = None, min_batch: int = 1, opt_batch: int = OPT_BATCH,
                 max_batch: int = MAX_BATCH, fp16: bool = True, device: int = 0) -> Path:
    """Build a TensorRT engine for ``onnx_path`` with a min/opt/max batch profile; writes it and its JSON sidecar."""
    trt = import_tensorrt()
    import torch

    profile = Profile(min_batch, opt_batch, max_batch)
    facts = machine_facts(device)
    onnx_path = Path(onnx_path)
    out = Path(out) if out is not None else engine_path(onnx_path, fp16)
    version = tuple(int(p) for p in trt.__version__.split(".")[:2])
    # TensorRT 10.12 deprecated weak typing (the FP16 flag) and 11 removed it: the graph itself says fp16.
    typed = version >= (10, 12)
    model = fp16_onnx(onnx_path) if fp16 and typed else onnx_path.read_bytes()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if typed and version < (11, 0) else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(model):
        for i in range(parser.num_errors):
            print(parser.get_error(i), file=sys.stderr)
        raise BackendError(f"TensorRT could not parse {onnx_path} ({parser.num_errors} errors above)")
    config = builder.create_builder_config()
    if fp16 and not typed:
        config.set_flag(trt.BuilderFlag.FP16)
    if not fp16:
        config.clear_flag(trt.BuilderFlag.TF32)  # TF32 moves probabilities by ~1e-3; fp32 engines match ONNX Runtime
    faces = network.get_input(0)
    sample = tuple(faces.shape)[1:]
    batch_profile = builder.create_optimization_profile()
    batch_profile.set_shape(faces.name, (profile.min, *sample), (profile.opt, *sample), (profile.max, *sample))
    config.add_optimization_profile(batch_profile)
    with torch.cuda.device(cuda_device(device)):
        plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise BackendError(f"TensorRT could not build an engine for {onnx_path}; its log above says why")
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as f:
        f.write(plan)
    sidecar_path(out).write_text(json.dumps(describe(onnx_path, fp16, profile, facts), indent=1))
    return out


def engine_for(onnx_path: Path, fp16: bool = True, profile: Profile = Profile(), device: int = 0,
               build: bool = True) -> Path:
    """The engine beside ``onnx_path``, reused only if its sidecar matches this machine, file and settings; otherwise
    rebuilt, or with ``build=False`` a BackendError saying why it cannot be used."""
    onnx_path = Path(onnx_path)
    engine = engine_path(onnx_path, fp16)
    wanted = describe(onnx_path, fp16, profile, machine_facts(device))
    reason = stale_reason(read_sidecar(engine), wanted) if engine.is_file() else "none has been built"
    if reason is None:
        return engine
    if not build:
        raise BackendError(f"the TensorRT engine {engine} cannot be used: {reason}; run 'emotrain engine {onnx_path}'")
    log.warning("building a TensorRT engine for %s (%s); this takes a minute", onnx_path, reason)
    return build_engine(onnx_path, engine, profile.min, profile.opt, profile.max, fp16, device)


def open_tensorrt(model: Path, device: int = 0, fp16: bool = True) -> TensorRTBackend:
    """TensorRT for an emocam ONNX file: its engine is reused where it was built here from this file, else rebuilt."""
    import_tensorrt()
    return TensorRTBackend(engine_for(model, fp16=fp16, device=device), read_contract(model), device)


# Threads are onnxruntime's: TensorRT runs on the GPU.
register_backend("tensorrt", rank=0, gpu_only=True)(lambda model, device, threads: open_tensorrt(model, device))
