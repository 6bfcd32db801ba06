"""The torch backend: the torch.export program exported beside the ONNX file, on CPU or CUDA (fp16, CUDA graphs)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from ..contract import METADATA_KEY, contract_from_metadata
from .base import MAX_BATCH, BackendError, Runtime, cuda_device, sha256
from .registry import register_backend

# The key under which a torch program records the sha256 of the ONNX file it was exported with.
PROGRAM_SHA_KEY = "onnx_sha256"


class TorchBackend(Runtime):
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
        # A CUDA graph is captured per power-of-two batch up to MAX_BATCH; larger batches run in chunks.
        self.max_batch = MAX_BATCH if self.graphs else None
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

    def _run(self, chunk: np.ndarray) -> np.ndarray:
        import torch

        x = torch.from_numpy(np.ascontiguousarray(chunk, np.float32))
        if not self.graphs:
            with torch.inference_mode(), self._exact():
                return self.net(x.to(self.device, self.dtype)).float().cpu().numpy()
        graph, static_in, static_out = self._graph(1 << (len(x) - 1).bit_length())
        static_in[:len(x)].copy_(x)
        graph.replay()
        return static_out[:len(x)].float().cpu().numpy()

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


@register_backend("torch", rank=3)
def open_torch(model: Path, device: int | str = 0, threads: int = 1) -> TorchBackend:
    """The torch program exported beside an emocam ONNX file (``model.pt2``); BackendError if it is from another."""
    backend = TorchBackend(Path(model).with_suffix(".pt2"), device)
    if backend.onnx_sha256 != sha256(model):
        raise BackendError(f"{Path(model).with_suffix('.pt2')} was not exported with {model}; export both again")
    return backend
