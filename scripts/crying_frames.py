"""What the model sees on the crying frames of WolfgangLanger_Pexels.mp4: each chosen frame's face as the model takes
it (the aligned 48 px crop, enlarged for viewing) with its two likeliest classes, through ``Recognizer``'s defaults;
and how often each label (the smoothed one, as the CSV's ``label``) is given over the crying frames, 10 to 60.

    python scripts/crying_frames.py ../shared/data/videos/WolfgangLanger_Pexels.mp4 docs/crying-frames.png
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

from emocam import Recognizer

FRAMES = (12, 24, 36, 48, 60, 300)  # crying from about frame 10, the hand at the mouth from 60, laughing at 300
CRYING = range(10, 61)
SIDE = 192


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("video", type=Path)
    parser.add_argument("out", type=Path, help="PNG to write")
    parser.add_argument("--model", type=Path, default=None, help="ONNX model (default: the shipped one)")
    args = parser.parse_args()
    seen, labels = {}, Counter()
    with Recognizer(args.model) as rec:
        for frame, faces in rec.stream(args.video, max_frames=max(FRAMES) + 1):
            if frame.index in FRAMES and len(faces):
                seen[frame.index] = (faces.crops[0], faces.probs[0])
            if frame.index in CRYING and len(faces):
                k = faces.labels[0]
                labels[rec.classes[k] if k >= 0 else "no label"] += 1
        classes = rec.classes
    tiles = []
    for index, (crop, probs) in sorted(seen.items()):
        tile = cv2.cvtColor(cv2.resize(crop, (SIDE, SIDE), interpolation=cv2.INTER_NEAREST), cv2.COLOR_GRAY2BGR)
        tile = cv2.copyMakeBorder(tile, 0, 44, 0, 0, cv2.BORDER_CONSTANT, value=(255, 255, 255))
        top = ", ".join(f"{classes[k]} {probs[k]:.2f}" for k in np.argsort(-probs)[:2])
        cv2.putText(tile, f"frame {index}", (4, SIDE + 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(tile, top, (4, SIDE + 36), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        tiles.append(tile)
        print(f"frame {index}: " + ", ".join(f"{c} {p:.2f}" for c, p in zip(classes, probs)))
    cv2.imwrite(str(args.out), np.hstack(tiles))
    counts = ", ".join(f"{c} {n}" for c, n in labels.most_common())
    print(f"label over frames {CRYING.start}-{CRYING.stop - 1}: {counts}")


if __name__ == "__main__":
    main()
