"""Export a checkpoint to ONNX with a dynamic batch axis and the preprocessing contract in its metadata."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch

from realtime.contract import METADATA_KEY, ModelContract

from .models import build_model

PARITY_TOLERANCE = 1e-4


class Probabilities(torch.nn.Module):
    """The classifier with its softmax, so that every backend returns probabilities; with ``mirror``, the mean of
    the probabilities for each face and its mirror image (one batch of twice the size)."""

    def __init__(self, model: torch.nn.Module, mirror: bool = False) -> None:
        super().__init__()
        self.model = model
        self.mirror = mirror

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.mirror:
            return torch.softmax(self.model(x), dim=1)
        n = x.shape[0]
        p = torch.softmax(self.model(torch.cat([x, x.flip(3)])), dim=1)
        return (p[:n] + p[n:]) * 0.5


def load_checkpoint(path: Path) -> tuple[torch.nn.Module, ModelContract, dict]:
    """The model (eval mode, CPU), its contract and the raw checkpoint dict."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    contract = ModelContract.from_json(ckpt["contract"])
    model = build_model(ckpt["config"]["arch"], len(contract.classes), contract.pre.channels, "scratch")
    model.load_state_dict(ckpt["model"])
    return model.eval(), contract, ckpt


def export_onnx(checkpoint: Path, out: Path, faces: np.ndarray | None = None, mirror: bool = False) -> Path:
    """Write ``out`` (.onnx) and check it against PyTorch on ``faces`` (uint8 crops; by default the validation
    faces stored in the checkpoint). With ``mirror`` the model averages each face with its mirror image.

    Raises ValueError if ONNX Runtime and PyTorch differ by more than 1e-4 in any probability.
    """
    import onnx

    from realtime.align import to_tensor
    from realtime.engines import OnnxRuntimeBackend

    model, contract, ckpt = load_checkpoint(checkpoint)
    pre = contract.pre
    net = Probabilities(model, mirror).eval()
    dummy = torch.zeros(1, pre.channels, pre.size, pre.size)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.onnx")
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated, but needs no extra package
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(net, dummy, str(tmp), input_names=["faces"], output_names=["probs"],
                          dynamic_axes={"faces": {0: "batch"}, "probs": {0: "batch"}}, opset_version=17, dynamo=False)
    proto = onnx.load(str(tmp))
    info = dict(contract.info, output="probs", mirror=mirror, best_epoch=ckpt.get("best_epoch"),
                stage=ckpt["config"].get("data"), origin=ckpt.get("origin"))
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, ModelContract(contract.classes, pre, info).to_json()
    onnx.checker.check_model(proto)
    onnx.save(proto, str(tmp))

    if faces is None:
        faces = ckpt.get("sample_faces")
    if faces is None or not len(faces):
        raise ValueError(f"{checkpoint} stores no sample faces; pass --fer to check the export on FER-2013 faces")
    x = to_tensor(faces, pre)
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    got = OnnxRuntimeBackend(tmp).predict(x)
    diff = float(np.abs(got - expected).max())
    if diff > PARITY_TOLERANCE:
        tmp.unlink()
        raise ValueError(f"ONNX export differs from PyTorch by {diff:.2e} (> {PARITY_TOLERANCE:g})")
    tmp.replace(out)
    out.with_suffix(".parity.json").write_text(json.dumps({"faces": len(faces), "max_abs_diff": diff}))
    return out
