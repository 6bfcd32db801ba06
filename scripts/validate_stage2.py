"""Compare stage-2 recipes on validation faces only: the persons carved out of each target set's train folder and
the tenth carved out of FER-2013's training faces (FER32), never a split that is reported as a test result.

Of FER-2013's carved faces only those from PublicTest are scored: a first stage on FER28 trained on all of Training,
so the carved Training faces were seen, while the PublicTest ones were seen by no stage (rehearsal leaves the carved
faces out). They are scored twice: as FER-2013 frames them, and re-cropped by the live side (``--fer-framing live``).

    python scripts/validate_stage2.py ../shared/data runs/e_base/best.pt runs/e_footage/best.pt ...

The carved persons' faces are also scored turned in depth by 30-45, 45-60 and 60-75 degrees of yaw (``emotrain
--turn``'s synthesis, cropped as the model's contract crops a turned face), beside the same faces frontal.

A model given as ``a/best.pt+b/best.pt`` is the ensemble of the two; ``--mirror`` scores each model with the mirror
average, as ``emotrain export --mirror`` makes it. ``--prior-correction 0,0.5,1`` scores each model once per TAU, its
probabilities divided by each class's share of FER-2013 Training to the power TAU, as ``emotrain export
--prior-correction TAU`` makes it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from emocam.align import Preprocess
from emocam.contract import ModelContract
from emocam.train.augment import turned_like
from emocam.train.data import CLASSES, FaceSet, fer_sets, read_fer_csv
from emocam.train.export import fer_prior, load_network
from emocam.train.fit import predict
from emocam.train.metrics import scores
from emocam.train.models import read_checkpoint
from emocam.train.targets import load_target


TURNS = ((30.0, 45.0), (45.0, 60.0), (60.0, 75.0))  # the yaws, in degrees, that the carved persons' faces are turned by


def turned(faces: FaceSet, pre: Preprocess, seed: int, lo: float, hi: float) -> FaceSet:
    """The faces turned in depth by ``lo`` to ``hi`` degrees of yaw, either way, and cropped again as the live side
    crops them."""
    x = torch.from_numpy(faces.images[:, None].astype(np.float32))
    x = turned_like(x, torch.Generator().manual_seed(seed), 1.0, pre.crop, max_yaw=hi, min_yaw=lo)
    return FaceSet(x[:, 0].round().clamp(0, 255).numpy().astype(np.uint8), faces.labels, f"{faces.name} turned")


def taus(text: str) -> list[float]:
    """``--prior-correction``'s comma-separated TAUs, each a number from 0 up."""
    try:
        values = [float(t) for t in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not comma-separated numbers: {text}") from None
    if not all(np.isfinite(v) and v >= 0 for v in values):
        raise argparse.ArgumentTypeError(f"each TAU is a number from 0 up: {text}")
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="the data folder (fer2013/, wild/, ckplus48/)")
    parser.add_argument("checkpoints", nargs="+",
                        help="stage-2 best.pt files that crop faces alike (size and framing); a+b: an ensemble")
    parser.add_argument("--mirror", action="store_true", help="average each face with its mirror image")
    parser.add_argument("--carve", type=float, default=0.15, help="as the stages were trained with")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--prior-correction", type=taus, default=[0.0], metavar="TAU,...",
                        help="score each model once per TAU (comma-separated)")
    args = parser.parse_args()
    pres = {ModelContract.from_json(read_checkpoint(p)["contract"]).pre for spec in args.checkpoints
            for p in spec.split("+")}
    if len(pres) > 1:  # the faces are cropped once for all of them
        parser.error("the checkpoints crop faces differently (size or framing); score each kind in a run of its own")
    pre = pres.pop()
    fer = args.data / "fer2013" / "fer2013.csv.gz"
    usage = read_fer_csv(fer)[2]
    sets = {}
    for framing in ("own", "live"):
        carved = fer_sets(fer, "fer32", pre, framing=framing, seed=args.seed)["val"]
        unseen = usage[carved.groups.astype(int)] == 1  # groups: the faces' rows in the csv
        sets[f"fer2013/carved-val PublicTest ({framing} framing)"] = carved.subset(unseen)
    for name in ("wild", "ckplus48"):
        train, _ = load_target(args.data / name / "train", pre)
        carved = train.carve(args.carve, args.seed)[1]
        sets[f"{name}/carved-val"] = carved
        for lo, hi in TURNS:
            sets[f"{name}/carved-val turned {lo:.0f}-{hi:.0f}"] = turned(carved, pre, args.seed, lo, hi)
    weights = {tau: np.array(fer_prior(fer, CLASSES, tau)["weights"]) for tau in args.prior_correction}
    for spec in args.checkpoints:
        net, _, _ = load_network([Path(p) for p in spec.split("+")], args.mirror)
        probs = {name: predict(net, faces.images, pre, torch.device("cpu"), softmax=False)
                 for name, faces in sets.items()}
        for tau, w in weights.items():
            row = {}
            for name, faces in sets.items():
                r = scores(faces.labels, (probs[name] * w).argmax(1))
                row[name] = {"accuracy": round(r["accuracy"], 4), "mean_recall": round(r["mean_recall"], 4)}
            print(json.dumps({"model": spec, "mirror": args.mirror, "prior_correction": tau, **row}))


if __name__ == "__main__":
    main()
