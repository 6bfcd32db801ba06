"""The one value that flows through the live pipeline: the faces of one frame."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Faces:
    """Parallel arrays, one row per face; each pipeline stage fills in its own fields.

    boxes: (N, 4) float32 x, y, w, h in pixels. scores: (N,) detector confidence.
    eyes: (N, 2, 2) float32 eye centres, image-left eye first. track_ids: (N,) int64, -1 until tracked.
    crops: (N, S, S) uint8 aligned faces. probs / smoothed: (N, K) float32. labels: (N,) int64 class index.
    """

    boxes: np.ndarray
    scores: np.ndarray
    eyes: np.ndarray
    track_ids: np.ndarray = None
    crops: np.ndarray | None = None
    probs: np.ndarray | None = None
    smoothed: np.ndarray | None = None
    labels: np.ndarray | None = None
    data: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, np.float32).reshape(-1, 4)
        n = len(self.boxes)
        self.scores = np.asarray(self.scores, np.float32).reshape(-1)
        self.eyes = np.asarray(self.eyes, np.float32).reshape(-1, 2, 2)
        if self.track_ids is None:
            self.track_ids = np.full(n, -1, np.int64)
        for name in ("scores", "eyes", "track_ids", "crops", "probs", "smoothed", "labels"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise ValueError(f"Faces.{name} has {len(value)} rows, expected {n} (one per box)")

    def __len__(self) -> int:
        return len(self.boxes)

    @classmethod
    def empty(cls) -> "Faces":
        return cls(np.zeros((0, 4)), np.zeros(0), np.zeros((0, 2, 2)))

    def subset(self, keep: np.ndarray) -> "Faces":
        """The faces selected by an index or boolean array."""
        pick = lambda a: None if a is None else a[keep]  # noqa: E731
        return Faces(self.boxes[keep], self.scores[keep], self.eyes[keep], self.track_ids[keep],
                     pick(self.crops), pick(self.probs), pick(self.smoothed), pick(self.labels), dict(self.data))
