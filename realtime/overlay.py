"""The overlay: each face's box, id, label and per-class bars drawn on a frame (an annotator the sinks that show
or write frames ask for; not a pipeline stage)."""

from __future__ import annotations

import cv2
import numpy as np

from .faces import Faces


GATED = (128, 128, 128)  # faces the quality gate does not label
PALETTE = [(66, 135, 245), (80, 200, 120), (0, 165, 255), (220, 80, 200), (40, 200, 230), (230, 120, 60)]


def annotate(image: np.ndarray, faces: Faces, classes: tuple[str, ...], fps: float | None = None) -> np.ndarray:
    """Draw, in place, each face's box, id, label with confidence and per-class bars, and the fps; returns ``image``.
    A face that failed the quality gate is drawn grey, with the reason instead of a label and no bars."""
    font, height, width = cv2.FONT_HERSHEY_SIMPLEX, image.shape[0], image.shape[1]
    probs = faces.smoothed if faces.smoothed is not None else faces.probs
    verdicts = faces.passed
    for i in range(len(faces)):
        x, y, w, h = (int(round(v)) for v in faces.boxes[i].tolist())
        track = int(faces.track_ids[i])
        passed = verdicts[i]
        colour = GATED if not passed else PALETTE[track % len(PALETTE)] if track >= 0 else (200, 200, 200)
        cv2.rectangle(image, (x, y), (x + w, y + h), colour, 1 if not passed else 2)
        text = f"#{track}" if track >= 0 else "face"
        if not passed:
            text += f" ({faces.quality[i]})"
        elif probs is not None:
            k = int(faces.labels[i]) if faces.labels is not None else int(probs[i].argmax())
            text += f" {classes[k]} {probs[i][k]:.0%}"
        cv2.putText(image, text, (x, max(y - 6, 14)), font, 0.55, colour, 2, cv2.LINE_AA)
        if probs is None or not passed:
            continue
        # Bars beside the box: on the right if they fit, else on the left.
        bar_w, row = 60, 14
        bx = x + w + 6 if x + w + 6 + bar_w + 58 < width else max(x - bar_w - 64, 0)
        for k, name in enumerate(classes):
            by = y + k * row
            if by + row > height:
                break
            cv2.putText(image, name[:7], (bx, by + 10), font, 0.35, (255, 255, 255), 1, cv2.LINE_AA)
            cv2.rectangle(image, (bx + 56, by + 2), (bx + 56 + int(bar_w * float(probs[i][k])), by + row - 3),
                          colour, -1)
    if fps is not None:
        cv2.putText(image, f"{fps:.0f} fps", (8, 20), font, 0.6, (0, 255, 0), 2, cv2.LINE_AA)
    return image
