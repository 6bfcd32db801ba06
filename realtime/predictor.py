"""Cross-frame batching for files: one model call for the faces of several consecutive frames."""

from __future__ import annotations

from typing import Generic, TypeVar

import numpy as np

from .backends import MAX_BATCH, OPT_BATCH, Backend

T = TypeVar("T")


class BatchedPredictor(Generic[T]):
    """Queues frames' face batches until ``max_faces`` faces or ``max_frames`` frames, predicts them in one call and
    hands the frames back in the order they came, each with its own (N, K) probabilities.

    For files only: a live source should not wait for later frames.
    """

    def __init__(self, backend: Backend, max_faces: int = MAX_BATCH, max_frames: int = OPT_BATCH) -> None:
        if max_faces < 1 or max_frames < 1:
            raise ValueError(f"max_faces and max_frames must be at least 1, got {max_faces} and {max_frames}")
        self.backend = backend
        self.max_faces = max_faces
        self.max_frames = max_frames
        self._items: list[T] = []
        self._batches: list[np.ndarray] = []
        self._faces = 0

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: T, batch: np.ndarray) -> list[tuple[T, np.ndarray]]:
        """Queue one frame (``item``, passed back untouched) with its (N, C, S, S) faces; returns the frames this call
        completed, oldest first (none while the queue is filling)."""
        self._items.append(item)
        self._batches.append(batch)
        self._faces += len(batch)
        if self._faces >= self.max_faces or len(self._items) >= self.max_frames:
            return self.flush()
        return []

    def flush(self) -> list[tuple[T, np.ndarray]]:
        """Predict whatever is queued and return those frames in order (call it when the file ends)."""
        items, batches = self._items, self._batches
        self._items, self._batches, self._faces = [], [], 0
        if not items:
            return []
        k = len(self.backend.contract.classes)
        faces = [b for b in batches if len(b)]
        probs = self.backend.predict(np.concatenate(faces)) if faces else np.zeros((0, k), np.float32)
        ends = np.cumsum([len(b) for b in batches])
        return [(item, probs[end - len(b):end]) for item, b, end in zip(items, batches, ends)]
