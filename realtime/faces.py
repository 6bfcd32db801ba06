"""The values that flow through the live pipeline: a decoded frame, and the faces found in it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def left_first(pairs: np.ndarray) -> np.ndarray:
    """(N, 2, 2) point pairs with the point of smaller image x first in each pair."""
    order = np.argsort(pairs[:, :, 0], axis=1, kind="stable")
    return np.take_along_axis(pairs, order[:, :, None], axis=1)


@dataclass(frozen=True)
class Frame:
    """One decoded BGR frame; ``timestamp_s`` is the container time for files, the stream's own clock from its first
    frame for a network stream, the capture time since it opened for a camera; ``stream_s`` (live) the frame's time
    on the camera's or stream's own clock as it came, where it has one."""

    index: int
    timestamp_s: float
    image: np.ndarray
    stream_s: float | None = None


@dataclass
class Faces:
    """Parallel arrays, one row per face; each pipeline stage fills in its own fields.

    boxes: (N, 4) float32 x, y, w, h in pixels. scores: (N,) detector confidence.
    eyes: (N, 2, 2) float32 eye centres, image-left eye first. track_ids: (N,) int64, -1 until tracked.
    pose: (N, 3) float32 yaw, pitch, roll in degrees (yaw > 0: the face turns to the image's right; pitch > 0: it
    looks up). keypoints: (N, 6, 2) float32 the detector's keypoints (eyes, nose tip, mouth, ears), or None.
    quality: (N,) str, "ok" or why the face is not labelled (see ``emocam.gate``).
    landmarks: (N,) str, where the eye centres come from: "detector" (its keypoints, also where they were in doubt
    and Face Mesh found nothing), "mesh" (Face Mesh, where the keypoints were in doubt) or "box" (the keypoints'
    eyes collapsed onto one and Face Mesh found nothing: placed from the box, so the face can still be drawn).
    crops: (N, S, S) uint8 aligned faces. probs / smoothed: (N, K) float32. labels: (N,) int64 class index;
    a face whose quality is not "ok" keeps its raw probs but has smoothed NaN and label -1.
    """

    boxes: np.ndarray
    scores: np.ndarray
    eyes: np.ndarray
    track_ids: np.ndarray = None
    pose: np.ndarray = None
    quality: np.ndarray = None
    keypoints: np.ndarray | None = None
    crops: np.ndarray | None = None
    probs: np.ndarray | None = None
    smoothed: np.ndarray | None = None
    labels: np.ndarray | None = None
    landmarks: np.ndarray = None

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, np.float32).reshape(-1, 4)
        n = len(self.boxes)
        self.scores = np.asarray(self.scores, np.float32).reshape(-1)
        self.eyes = np.asarray(self.eyes, np.float32).reshape(-1, 2, 2)
        if self.track_ids is None:
            self.track_ids = np.full(n, -1, np.int64)
        self.pose = np.full((n, 3), np.nan, np.float32) if self.pose is None else np.asarray(self.pose, np.float32)
        self.quality = np.full(n, "ok", object) if self.quality is None else np.asarray(self.quality, object)
        self.landmarks = (np.full(n, "detector", object) if self.landmarks is None
                          else np.asarray(self.landmarks, object))
        for name in ("scores", "eyes", "track_ids", "pose", "quality", "keypoints", "crops", "probs", "smoothed",
                     "labels", "landmarks"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise ValueError(f"Faces.{name} has {len(value)} rows, expected {n} (one per box)")

    def __len__(self) -> int:
        return len(self.boxes)

    @property
    def passed(self) -> np.ndarray:
        """(N,) bool: the faces that passed the quality gate and are labelled."""
        return self.quality == "ok"

    @classmethod
    def empty(cls) -> "Faces":
        return cls(np.zeros((0, 4)), np.zeros(0), np.zeros((0, 2, 2)))

    def subset(self, keep: np.ndarray) -> "Faces":
        """The faces selected by an index or boolean array."""
        pick = lambda a: None if a is None else a[keep]  # noqa: E731
        return Faces(self.boxes[keep], self.scores[keep], self.eyes[keep], self.track_ids[keep], self.pose[keep],
                     self.quality[keep], pick(self.keypoints), pick(self.crops), pick(self.probs), pick(self.smoothed),
                     pick(self.labels), self.landmarks[keep])
