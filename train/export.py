"""Export a checkpoint to ONNX with a dynamic batch axis and the preprocessing contract in its metadata."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from emocam.backends import PROGRAM_SHA_KEY, sha256
from emocam.contract import METADATA_KEY, ModelContract, ModelError, read_contract

from .data import CLASSES, FER_USAGES, read_fer_csv
from .models import build_model, read_checkpoint

PARITY_TOLERANCE = 1e-4


class Probabilities(torch.nn.Module):
    """The classifier with its softmax, so that every backend returns probabilities.

    Several networks make an ensemble: their probabilities are averaged, and each one gets the face in its own
    normalisation (``norms``: mean, std per network), converted from the first network's, which is the model's
    contract. With ``mirror``, each face is also averaged with its mirror image (one batch of twice the size). With
    ``weights`` (``prior_weights``), the probabilities are scaled by them and summed to 1 again.
    """

    def __init__(self, models: list[torch.nn.Module], norms: list[tuple[float, float]], mirror: bool = False,
                 weights: np.ndarray | None = None) -> None:
        super().__init__()
        self.models = torch.nn.ModuleList(models)
        self.mirror = mirror
        self.register_buffer("weights", None if weights is None else torch.tensor(weights, dtype=torch.float32))
        m0, s0 = norms[0]
        # The contract's x = (v - m0) / s0 for a pixel v in [0, 1]; a network normalised by m, s wants
        # (v - m) / s = x * s0 / s + (m0 - m) / s.
        self.affine = [(s0 / s, (m0 - m) / s) for m, s in norms]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        if self.mirror:
            x = torch.cat([x, x.flip(3)])
        probs = [torch.softmax(model(x if (a, b) == (1.0, 0.0) else x * a + b), dim=1)
                 for model, (a, b) in zip(self.models, self.affine)]
        p = probs[0] if len(probs) == 1 else torch.stack(probs).mean(0)
        p = (p[:n] + p[n:]) * 0.5 if self.mirror else p
        if self.weights is None:
            return p
        p = p * self.weights
        return p / p.sum(1, keepdim=True)


def prior_weights(labels: np.ndarray, classes: int, tau: float) -> np.ndarray:
    """Each class's weight in a prior correction: its share of ``labels`` to the power -``tau``, the weights' mean 1.
    Scaling the probabilities by them is adding -tau log(share) to the logits, which leaves the classes a model saw
    most no head start (post-hoc logit adjustment, Menon et al., ICLR 2021); 0 leaves the model as it is."""
    if not np.isfinite(tau) or tau < 0:
        raise ValueError(f"a prior correction's TAU is a number from 0 up, not {tau}")
    if tau == 0:
        return np.ones(classes)
    share = np.bincount(labels, minlength=classes) / max(len(labels), 1)
    if not share.all():
        raise ValueError("a prior correction needs every class among the faces it is taken from")
    w = share ** -tau
    return w / w.mean()


def fer_prior(fer: Path, classes: Sequence[str], tau: float) -> dict:
    """The prior correction ``tau`` by the class shares of FER-2013's Training faces (``fer``, its csv), as
    ``export_onnx`` takes it and the contract records it."""
    if tuple(classes) != CLASSES:
        raise ValueError(f"a prior correction by FER-2013 needs a model of its classes, in its order: "
                         f"{', '.join(CLASSES)}")
    _, labels, usage = read_fer_csv(fer)
    weights = prior_weights(labels[usage == FER_USAGES.index("Training")], len(classes), tau)
    return {"tau": tau, "weights": weights.tolist()}


def load_checkpoint(path: Path) -> tuple[torch.nn.Module, ModelContract, dict]:
    """The model (eval mode, CPU), its contract and the raw checkpoint dict."""
    ckpt = read_checkpoint(path)
    contract = ModelContract.from_json(ckpt["contract"])
    model = build_model(ckpt["config"]["arch"], len(contract.classes), contract.pre.channels, "scratch")
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError:
        raise ModelError(f"{path}: its weights do not fit its architecture {ckpt['config']['arch']}") from None
    return model.eval(), contract, ckpt


def load_network(checkpoints: list[Path], mirror: bool = False,
                 prior: dict | None = None) -> tuple[Probabilities, ModelContract, list[dict]]:
    """One or more checkpoints as one probability network (an ensemble when several), with the first one's
    contract and the raw checkpoints. Every network must take the same faces (size, channels, crop) and predict the
    same classes; ``prior``: a prior correction (``fer_prior``), or None."""
    loaded = [load_checkpoint(c) for c in checkpoints]
    contract = loaded[0][1]
    same = lambda c: (c.classes, c.pre.size, c.pre.channels, c.pre.crop)  # noqa: E731
    for path, (_, other, _) in zip(checkpoints[1:], loaded[1:]):
        if same(other) != same(contract):
            raise ValueError(f"{path} takes other faces or predicts other classes than {checkpoints[0]}")
    weights = None if prior is None else np.array(prior["weights"])
    net = Probabilities([m for m, _, _ in loaded], [(c.pre.mean, c.pre.std) for _, c, _ in loaded], mirror, weights)
    return net.eval(), contract, [ckpt for _, _, ckpt in loaded]


def export_onnx(checkpoints: list[Path], out: Path, faces: np.ndarray | None = None,
                mirror: bool = False, prior: dict | None = None) -> Path:
    """Write ``out`` (.onnx) from one checkpoint, or several averaged as an ensemble, and check it against PyTorch
    on ``faces`` (uint8 crops; by default the validation faces stored in the first checkpoint). With ``mirror``
    the model averages each face with its mirror image; ``prior`` (``tau`` and ``weights``, recorded in the
    contract) corrects its probabilities by ``prior_weights``.

    Raises ValueError if ONNX Runtime and PyTorch differ by more than 1e-4 in any probability.
    """
    import onnx

    from emocam.align import to_tensor
    from emocam.backends import OnnxRuntimeBackend

    net, contract, ckpts = load_network(checkpoints, mirror, prior)
    pre = contract.pre
    dummy = torch.zeros(1, pre.channels, pre.size, pre.size)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.onnx")
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated, but needs no extra package
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(net, dummy, str(tmp), input_names=["faces"], output_names=["probs"],
                          dynamic_axes={"faces": {0: "batch"}, "probs": {0: "batch"}}, opset_version=17, dynamo=False)
    proto = onnx.load(str(tmp))
    members = [{"arch": c["config"]["arch"], "best_epoch": c.get("best_epoch"), "stage": c["config"].get("data"),
                "origin": c.get("origin")} for c in ckpts]
    made = members[0] if len(members) == 1 else {"arch": "+".join(m["arch"] for m in members), "members": members}
    info = dict(contract.info, output="probs", mirror=mirror, **made, **({"prior_correction": prior} if prior else {}))
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, ModelContract(contract.classes, pre, info).to_json()
    onnx.checker.check_model(proto)
    onnx.save(proto, str(tmp))

    if faces is None:
        faces = ckpts[0].get("sample_faces")
    if faces is None or not len(faces):
        raise ValueError(f"{checkpoints[0]} stores no sample faces; pass --fer to check the export on FER-2013 faces")
    x = to_tensor(faces, pre)
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    got = OnnxRuntimeBackend(tmp).predict(x)
    diff = float(np.abs(got - expected).max())
    if not diff <= PARITY_TOLERANCE:  # NaN too
        tmp.unlink()
        raise ValueError(f"ONNX export differs from PyTorch by {diff:.2e} (> {PARITY_TOLERANCE:g})")
    tmp.replace(out)
    out.with_suffix(".parity.json").write_text(json.dumps({"faces": len(faces), "max_abs_diff": diff}))
    return out


def export_program(checkpoints: list[Path], onnx_path: Path) -> Path:
    """Write the checkpoints' network (with its softmax; an ensemble when several) beside ``onnx_path`` as a
    torch.export program with a dynamic batch axis, carrying the ONNX file's contract and sha256, for the torch
    backend."""
    contract: ModelContract = read_contract(onnx_path)
    net, _, _ = load_network(checkpoints, bool(contract.info.get("mirror")), contract.info.get("prior_correction"))
    pre = contract.pre
    batch = torch.export.Dim("batch", min=1, max=4096)
    example = torch.zeros(2, pre.channels, pre.size, pre.size)
    program = torch.export.export(net, (example,), dynamic_shapes=({0: batch},))
    out = Path(onnx_path).with_suffix(".pt2")
    torch.export.save(program, str(out), extra_files={METADATA_KEY: contract.to_json(),
                                                      PROGRAM_SHA_KEY: sha256(onnx_path)})
    return out
