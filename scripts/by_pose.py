"""How right emocam is on a labelled folder through the path a user runs, overall and by how far faces are turned.

Each image goes through ``Recognizer`` with its default options (detector, landmarks, gate, crop, model); its
largest face is scored against the folder it is in. Overall: the images, the share where a face was found, and of
those faces the share labelled (the gate's coverage), accuracy (gated faces count as wrong) and mean recall. Then
the same by |yaw|, with the accuracy of the model's raw answer beside it (what it would say were nothing gated).

    python scripts/by_pose.py ../shared/data/wild/val [--model engines/emocam.onnx] [--json out.json] [--no-mesh]

``--no-mesh`` scores the faces as if Face Mesh found none of them, as on the dark, small turned faces of a real
audience where it finds few: turned faces then keep BlazeFace's eyes and pose.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from emocam import Recognizer
from emocam.landmarks import FaceMesh
from emocam.reading import DEFAULT_READING, READINGS
from emocam.train.metrics import scores

EDGES = (0.0, 15.0, 30.0, 45.0, 60.0, 90.0)  # |yaw| groups, degrees


def figures(truth: np.ndarray, label: np.ndarray, raw: np.ndarray) -> dict:
    """Faces, coverage, accuracy (gated faces, label -1, count as wrong), mean recall over the classes present, and
    the accuracy of the raw answer."""
    gated = scores(truth, label, passed=label >= 0)
    return {"faces": gated["n"], "coverage": gated["coverage"], "accuracy": gated["accuracy"],
            "mean_recall": gated["mean_recall"], "raw_accuracy": scores(truth, raw)["accuracy"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="labelled image folder <class>/*")
    parser.add_argument("--model", type=Path, default=None, help="ONNX model (default: the shipped one)")
    parser.add_argument("--reading", default=DEFAULT_READING, choices=list(READINGS),
                        help=f"face reading preset (default: {DEFAULT_READING}, as every command)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--no-mesh", action="store_true", help="as if Face Mesh found no face")
    args = parser.parse_args()
    if args.no_mesh:
        FaceMesh.__call__ = lambda self, image, box: None

    images, rows = 0, []  # rows: (|yaw|, true class, label or -1 where gated, raw answer)
    with Recognizer(args.model, reading=args.reading) as rec:
        for k, name in enumerate(rec.classes):
            for path in sorted((args.folder / name).glob("*")):
                images += 1
                faces = rec(path)
                if len(faces) == 0:
                    continue
                i = int(np.argmax(faces.boxes[:, 2] * faces.boxes[:, 3]))
                rows.append((abs(float(faces.pose[i, 0])), k, int(faces.labels[i]) if faces.passed[i] else -1,
                             int(np.argmax(faces.probs[i]))))
        reading = rec.reading.to_dict()
    reading["face_mesh"] = not args.no_mesh
    yaw, truth, pred, raw = (np.array(c) for c in zip(*rows))
    overall = {"images": images, "found": len(rows) / images, **figures(truth, pred, raw)}
    print(" ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in overall.items()))
    print(f"{'|yaw|':>9} {'faces':>6} {'coverage':>9} {'accuracy':>9} {'mean recall':>12} {'raw accuracy':>13}")
    groups = []
    for lo, hi in zip(EDGES[:-1], EDGES[1:]):
        m = (yaw >= lo) & (yaw < hi)
        if m.any():
            row = {"yaw": [lo, hi], **figures(truth[m], pred[m], raw[m])}
            groups.append(row)
            print(f"{lo:>4.0f}-{hi:<4.0f} {row['faces']:>6} {row['coverage']:>9.3f} {row['accuracy']:>9.3f} "
                  f"{row['mean_recall']:>12.3f} {row['raw_accuracy']:>13.3f}")
    if args.json:
        args.json.write_text(json.dumps({"folder": str(args.folder), "model": str(args.model or "shipped"),
                                         "reading": reading, "overall": overall, "groups": groups}, indent=1) + "\n")


if __name__ == "__main__":
    main()
