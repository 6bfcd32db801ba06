"""Compare stage-2 recipes on validation faces only: the persons carved out of each target set's train folder and
the tenth carved out of FER-2013's training faces (FER32), never a split that is reported as a test result.

Of FER-2013's carved faces only those from PublicTest are scored: a first stage on FER28 trained on all of Training,
so the carved Training faces were seen, while the PublicTest ones were seen by no stage (rehearsal leaves the carved
faces out). They are scored twice: as FER-2013 frames them, and re-cropped by the live side (``--fer-framing live``).

    python scripts/validate_stage2.py ../shared/data runs/e_base/best.pt runs/e_footage/best.pt ...

A model given as ``a/best.pt+b/best.pt`` is the ensemble of the two; ``--mirror`` scores each model with the mirror
average, as ``emotrain export --mirror`` makes it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from emocam.train.data import fer_sets, read_fer_csv
from emocam.train.export import load_checkpoint, load_network
from emocam.train.fit import predict
from emocam.train.metrics import scores
from emocam.train.targets import load_target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="the data folder (fer2013/, wild/, ckplus48/)")
    parser.add_argument("checkpoints", nargs="+", help="stage-2 best.pt files of the same input size; a+b: an ensemble")
    parser.add_argument("--mirror", action="store_true", help="average each face with its mirror image")
    parser.add_argument("--carve", type=float, default=0.15, help="as the stages were trained with")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    _, contract, _ = load_checkpoint(Path(args.checkpoints[0].split("+")[0]))
    pre = contract.pre
    fer = args.data / "fer2013" / "fer2013.csv.gz"
    usage = read_fer_csv(fer)[2]
    sets = {}
    for framing in ("own", "live"):
        carved = fer_sets(fer, "fer32", pre, framing=framing, seed=args.seed)["val"]
        unseen = usage[carved.groups.astype(int)] == 1  # groups: the faces' rows in the csv
        sets[f"fer2013/carved-val PublicTest ({framing} framing)"] = carved.subset(unseen)
    for name in ("wild", "ckplus48"):
        train, _ = load_target(args.data / name / "train", pre)
        sets[f"{name}/carved-val"] = train.carve(args.carve, args.seed)[1]
    for spec in args.checkpoints:
        net, _, _ = load_network([Path(p) for p in spec.split("+")], args.mirror)
        row = {}
        for name, faces in sets.items():
            probs = predict(net, faces.images, pre, torch.device("cpu"))  # a softmax again: the same argmax
            r = scores(faces.labels, probs.argmax(1))
            row[name] = {"accuracy": round(r["accuracy"], 4), "mean_recall": round(r["mean_recall"], 4)}
        print(json.dumps({"model": spec, "mirror": args.mirror, **row}))


if __name__ == "__main__":
    main()
