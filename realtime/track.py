"""Stable face ids across frames: IoU + centre-distance matching against constant-velocity predictions."""

from __future__ import annotations

import numpy as np

from .detect import box_iou
from .faces import Faces


class Tracker:
    """Gives each face a track id that survives detector misses up to ``max_age_s`` and faces crossing.

    A detection matches a track when their IoU is at least ``min_iou`` or their centres are within
    ``max_shift`` track sizes of each other; pairs are taken greedily, cheapest cost first.
    """

    def __init__(self, max_age_s: float = 0.5, min_iou: float = 0.1, max_shift: float = 0.6,
                 max_tracks: int = 64) -> None:
        if max_age_s <= 0 or max_tracks < 1:
            raise ValueError(f"max_age_s must be > 0 and max_tracks >= 1, got {max_age_s} and {max_tracks}")
        self.max_age_s = max_age_s
        self.min_iou = min_iou
        self.max_shift = max_shift
        self.max_tracks = max_tracks
        self.reset()

    def reset(self) -> None:
        """Forget every track (ids restart at 0)."""
        self._ids = np.zeros(0, np.int64)
        self._boxes = np.zeros((0, 4))
        self._velocity = np.zeros((0, 2))  # centre velocity in pixels per second
        self._seen = np.zeros(0)
        self._next_id = 0

    def __len__(self) -> int:
        return len(self._ids)

    def predict(self, timestamp_s: float) -> np.ndarray:
        """Where each live track's box is expected at ``timestamp_s`` (x, y, w, h)."""
        dt = np.clip(timestamp_s - self._seen, 0.0, self.max_age_s)
        boxes = self._boxes.copy()
        boxes[:, :2] += self._velocity * dt[:, None]
        return boxes

    def update(self, faces: Faces, timestamp_s: float) -> Faces:
        """Fill ``faces.track_ids``; unmatched faces start new tracks, unseen tracks expire after ``max_age_s``."""
        if len(self._seen) and timestamp_s < self._seen.max():
            self.reset()  # time went backwards: a new clip or a restarted stream
        self._keep((timestamp_s - self._seen) <= self.max_age_s)
        boxes = faces.boxes.astype(np.float64)
        track_of = self._match(self.predict(timestamp_s), boxes)
        ids = np.empty(len(faces), np.int64)
        for j, i in enumerate(track_of):
            if i >= 0:
                dt = timestamp_s - self._seen[i]
                if dt > 0:
                    moved = (centres(boxes[j:j + 1]) - centres(self._boxes[i:i + 1]))[0] / dt
                    self._velocity[i] = 0.5 * self._velocity[i] + 0.5 * moved
                self._boxes[i] = boxes[j]
                self._seen[i] = timestamp_s
                ids[j] = self._ids[i]
            else:
                ids[j] = self._next_id
                self._next_id += 1
                self._ids = np.append(self._ids, ids[j])
                self._boxes = np.vstack([self._boxes, boxes[j]])
                self._velocity = np.vstack([self._velocity, np.zeros(2)])
                self._seen = np.append(self._seen, timestamp_s)
        if len(self._ids) > self.max_tracks:
            self._keep(np.argsort(-self._seen, kind="stable")[:self.max_tracks])
        faces.track_ids = ids
        return faces

    def _match(self, predicted: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """For each detection, the index of its track or -1."""
        track_of = np.full(len(boxes), -1, np.int64)
        if not len(predicted) or not len(boxes):
            return track_of
        iou = box_iou(predicted, boxes)
        size = np.sqrt(np.maximum(predicted[:, 2] * predicted[:, 3], 1.0))
        shift = np.linalg.norm(centres(predicted)[:, None] - centres(boxes)[None], axis=2) / size[:, None]
        cost = (1.0 - iou) + shift
        cost[(iou < self.min_iou) & (shift > self.max_shift)] = np.inf
        used = np.zeros(len(predicted), bool)
        for flat in np.argsort(cost, axis=None):
            i, j = divmod(int(flat), len(boxes))
            if not np.isfinite(cost[i, j]):
                break
            if not used[i] and track_of[j] < 0:
                used[i] = True
                track_of[j] = i
        return track_of

    def _keep(self, keep: np.ndarray) -> None:
        self._ids, self._boxes = self._ids[keep], self._boxes[keep]
        self._velocity, self._seen = self._velocity[keep], self._seen[keep]


def centres(boxes: np.ndarray) -> np.ndarray:
    """Centres (N, 2) of x, y, w, h boxes."""
    return boxes[:, :2] + boxes[:, 2:] / 2
