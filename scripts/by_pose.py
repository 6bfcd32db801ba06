"""How right emocam is on a labelled folder through the path a user runs, overall and by how far faces are turned.

Each image goes through ``Recognizer`` with its default options (detector, landmarks, gate, crop, model); its
largest face is scored against the folder it is in. Overall: the images, the share where a face was found, and of
those faces the share labelled (the gate's coverage), accuracy (gated faces count as wrong) and mean recall. Then
the same by |yaw|, with the accuracy of the model's raw answer beside it (what it would say were nothing gated).

    python scripts/by_pose.py ../shared/data/wild/val [--model engines/emocam.onnx] [--json out.json] [--no-mesh]
                                                      [--crops turned.png]

``--crops`` draws what the model is given for each face turned past 30 degrees (its crop, its |yaw|, the folder's
class and the raw answer), in |yaw| order.

``--no-mesh`` scores the faces as if Face Mesh found none of them, as on the dark, small turned faces of a real
audience where it finds few: turned faces then keep BlazeFace's eyes and pose.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from emocam import Recognizer
from emocam.landmarks import FaceMesh
from emocam.reading import DEFAULT_READING, READINGS
from emocam.train.metrics import scores

EDGES = (0.0, 15.0, 30.0, 45.0, 60.0, 90.0)  # |yaw| groups, degrees
TURNED = 30.0  # --crops draws the faces turned at least this far


def figures(truth: np.ndarray, label: np.ndarray, raw: np.ndarray) -> dict:
    """Faces, coverage, accuracy (gated faces, label -1, count as wrong), mean recall over the classes present, and
    the accuracy of the raw answer."""
    gated = scores(truth, label, passed=label >= 0)
    return {"faces": gated["n"], "coverage": gated["coverage"], "accuracy": gated["accuracy"],
            "mean_recall": gated["mean_recall"], "raw_accuracy": scores(truth, raw)["accuracy"]}


def contact_sheet(faces: list[tuple[float, np.ndarray, str]], out: Path, side: int = 96, columns: int = 8) -> None:
    """The crops, each ``side`` px with its caption, in rows of ``columns``."""
    tiles = []
    for _, crop, caption in faces:
        tile = cv2.cvtColor(cv2.resize(crop, (side, side), interpolation=cv2.INTER_NEAREST), cv2.COLOR_GRAY2BGR)
        cv2.rectangle(tile, (0, 0), (side, 12), (0, 0, 0), -1)
        cv2.putText(tile, caption, (2, 9), cv2.FONT_HERSHEY_SIMPLEX, 0.33, (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(tile)
    tiles += [np.zeros_like(tiles[0])] * (-len(tiles) % columns)
    rows = [np.hstack(tiles[r:r + columns]) for r in range(0, len(tiles), columns)]
    cv2.imwrite(str(out), np.vstack(rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="labelled image folder <class>/*")
    parser.add_argument("--model", type=Path, default=None, help="ONNX model (default: the shipped one)")
    parser.add_argument("--reading", default=DEFAULT_READING, choices=list(READINGS),
                        help=f"face reading preset (default: {DEFAULT_READING}, as every command)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--no-mesh", action="store_true", help="as if Face Mesh found no face")
    parser.add_argument("--crops", type=Path, default=None, help="draw the crops of faces turned past 30 degrees here")
    args = parser.parse_args()
    if args.no_mesh:
        FaceMesh.__call__ = lambda self, image, box: None

    images, rows, turned = 0, [], []  # rows: (|yaw|, true class, label or -1 where gated, raw answer)
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
                yaw, answer = rows[-1][0], rec.classes[rows[-1][3]]
                if yaw >= TURNED:
                    turned.append((yaw, faces.crops[i], f"{yaw:.0f} {name[:3]}>{answer[:3]}"))
        reading = rec.reading.to_dict()
    if args.crops and turned:
        contact_sheet(sorted(turned, key=lambda t: t[0]), args.crops)
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
