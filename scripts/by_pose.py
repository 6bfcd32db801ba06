"""How right the live side is on turned faces: a labelled folder's faces, grouped by how far each is turned.

Each image goes through the whole live pipeline (``Recognizer``: detector, landmarks, gate, crop, model), its faces
read by default as ``emotrain evaluate`` reads folders (the "stills" reading) but with images as they are, not
enlarged (as docs/results.md's figures were measured); its largest face is scored against the folder it is in.
Faces are grouped by |yaw|; in each group: how many, how many the gate passed (coverage), accuracy with gated faces
counted wrong, mean recall over the classes present, and the recall of happy (the label a laughing audience should
get).

    python scripts/by_pose.py ../shared/data/wild/val [--model engines/emocam.onnx] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from emocam import Recognizer
from emocam.reading import READINGS, resolve_reading

EDGES = (0.0, 15.0, 30.0, 45.0, 90.0)  # |yaw| groups, degrees; the gate refuses faces turned over 45


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="labelled image folder <class>/*")
    parser.add_argument("--model", type=Path, default=None, help="ONNX model (default: the shipped one)")
    parser.add_argument("--reading", default="stills", choices=list(READINGS),
                        help="face reading preset (default: stills)")
    parser.add_argument("--enlarge", action=argparse.BooleanOptionalAction, default=False,
                        help="enlarge images smaller than the detector needs (default: no)")
    parser.add_argument("--detector", default=None, help="detector range: short, full or both (default: the reading's)")
    parser.add_argument("--min-score", type=float, default=None,
                        help="detector score to keep a face (default: the reading's)")
    parser.add_argument("--json", type=Path, default=None, help="also write the table here")
    args = parser.parse_args()

    rows = []  # (|yaw|, true class, predicted class or -1 where gated)
    reading = resolve_reading(args.reading, detector=args.detector, min_score=args.min_score, enlarge=args.enlarge)
    with Recognizer(args.model, reading=reading) as rec:
        for k, name in enumerate(rec.classes):
            for path in sorted((args.folder / name).glob("*")):
                faces = rec(path)
                if len(faces) == 0:
                    continue
                i = int(np.argmax(faces.boxes[:, 2] * faces.boxes[:, 3]))
                rows.append((abs(float(faces.pose[i, 0])), k, int(faces.labels[i]) if faces.passed[i] else -1))
    yaw, truth, pred = (np.array(c) for c in zip(*rows))
    happy = rec.classes.index("happy")
    table = []
    print(f"{'|yaw|':>9} {'faces':>6} {'coverage':>9} {'accuracy':>9} {'mean recall':>12} {'happy recall':>13}")
    for lo, hi in zip(EDGES[:-1], EDGES[1:]):
        m = (yaw >= lo) & (yaw < hi)
        if not m.any():
            continue
        present = np.unique(truth[m])
        recall = {int(c): float((pred[m & (truth == c)] == c).mean()) for c in present}
        row = {"yaw": [lo, hi], "faces": int(m.sum()), "coverage": float((pred[m] >= 0).mean()),
               "accuracy": float((pred[m] == truth[m]).mean()), "mean_recall": float(np.mean(list(recall.values()))),
               "happy_faces": int((truth[m] == happy).sum()), "happy_recall": recall.get(happy)}
        table.append(row)
        happy_text = "-" if row["happy_recall"] is None else f"{row['happy_recall']:.3f} of {row['happy_faces']}"
        print(f"{lo:>4.0f}-{hi:<4.0f} {row['faces']:>6} {row['coverage']:>9.3f} {row['accuracy']:>9.3f} "
              f"{row['mean_recall']:>12.3f} {happy_text:>13}")
    if args.json:
        args.json.write_text(json.dumps({"folder": str(args.folder), "model": str(args.model or "shipped"),
                                         "reading": reading.to_dict(),
                                         "groups": table}, indent=1) + "\n")


if __name__ == "__main__":
    main()
