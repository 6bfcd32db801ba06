"""The quality gate: which faces get a label, from their pose, size and landmarks (the stage after ``landmarks``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .faces import Faces

VERDICTS = ("ok", "turned", "small", "landmarks")


@dataclass(frozen=True)
class Gate:
    """A face is labelled only when the model can be trusted on it: turned no more than ``max_yaw`` / ``max_pitch``
    degrees, eye centres at least ``min_e2e`` pixels apart, and landmarks that agree with the box (eyes ``e2e_box``
    box widths apart, their midpoint inside the box).

    The pose limits are the 99th percentiles of |yaw| and |pitch| over FER-2013's training faces (`emotrain measure`,
    docs/results/framing.json): beyond them the model has seen almost no faces. ``min_e2e``: a FER-2013 face has its
    eyes about 18 pixels apart; below 8 the crop is upsampled more than twice and carries little expression."""

    max_yaw: float = 45.0
    max_pitch: float = 33.0
    min_e2e: float = 8.0
    e2e_box: tuple[float, float] = (0.18, 0.75)

    def verdicts(self, faces: Faces) -> np.ndarray:
        """(N,) the verdict of each face: one of VERDICTS."""
        out = np.full(len(faces), "ok", object)
        if len(faces) == 0:
            return out
        e2e = np.linalg.norm(faces.eyes[:, 1] - faces.eyes[:, 0], axis=1)
        mid = faces.eyes.mean(1)
        x, y, w, h = faces.boxes.T
        inside = (mid[:, 0] >= x) & (mid[:, 0] <= x + w) & (mid[:, 1] >= y) & (mid[:, 1] <= y + h)
        ratio = e2e / np.maximum(w, 1e-6)
        bad_landmarks = ~inside | (ratio < self.e2e_box[0]) | (ratio > self.e2e_box[1]) | (faces.landmarks == "box")
        turned = (np.abs(faces.pose[:, 0]) > self.max_yaw) | (np.abs(faces.pose[:, 1]) > self.max_pitch)
        # Most specific reason first: without landmarks the pose is unknown; a small face's pose is unreliable.
        out[turned] = "turned"
        out[e2e < self.min_e2e] = "small"
        out[bad_landmarks] = "landmarks"
        return out

    def __call__(self, faces: Faces) -> Faces:
        """The same faces with ``quality`` filled in."""
        faces.quality = self.verdicts(faces)
        return faces
