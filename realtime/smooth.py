"""Per-track temporal smoothing of class probabilities, with a hysteresis on the displayed label."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .faces import Faces

# Smoothing time constant in seconds, and the margin another class's smoothed probability needs to take the label.
TAU_S = 0.3
HYSTERESIS = 0.1


@dataclass
class _TrackState:
    smoothed: np.ndarray
    label: int
    seen_s: float


class Smoother:
    """Exponential smoothing with time constant ``tau_s`` (alpha = 1 - exp(-dt / tau), so frame-rate independent).

    The label switches only when another class's smoothed probability beats the current one by ``hysteresis``.
    Tracks unseen for ``forget_s`` are dropped; at most ``max_tracks`` are kept.
    """

    def __init__(self, tau_s: float = TAU_S, hysteresis: float = HYSTERESIS, forget_s: float = 2.0,
                 max_tracks: int = 64) -> None:
        if tau_s < 0 or hysteresis < 0:
            raise ValueError(f"tau_s and hysteresis must be >= 0, got {tau_s} and {hysteresis}")
        self.tau_s = tau_s
        self.hysteresis = hysteresis
        self.forget_s = forget_s
        self.max_tracks = max_tracks
        self._tracks: dict[int, _TrackState] = {}

    def reset(self) -> None:
        """Forget every track."""
        self._tracks.clear()

    def __len__(self) -> int:
        return len(self._tracks)

    def alpha(self, dt: float) -> float:
        """Weight of a new observation arriving ``dt`` seconds after the previous one."""
        return 1.0 if self.tau_s == 0 else 1.0 - math.exp(-max(dt, 0.0) / self.tau_s)

    def update(self, faces: Faces, timestamp_s: float) -> Faces:
        """Fill ``faces.smoothed`` and ``faces.labels`` from ``faces.probs`` (kept raw); untracked faces (id -1)
        get their raw probabilities. Faces that failed the quality gate get no label (-1, smoothed NaN) and leave
        their track's state as it was."""
        if faces.probs is None:
            raise ValueError("Smoother.update needs faces.probs; run the model first")
        self._tracks = {k: s for k, s in self._tracks.items() if 0 <= timestamp_s - s.seen_s <= self.forget_s}
        smoothed = faces.probs.astype(np.float32, copy=True)
        labels = smoothed.argmax(axis=1)
        passed = faces.passed
        smoothed[~passed], labels[~passed] = np.nan, -1
        for row, track in enumerate(faces.track_ids.tolist()):
            if track < 0 or not passed[row]:
                continue
            state = self._tracks.get(track)
            if state is None:
                self._tracks[track] = _TrackState(smoothed[row].copy(), int(labels[row]), timestamp_s)
                continue
            state.smoothed += self.alpha(timestamp_s - state.seen_s) * (smoothed[row] - state.smoothed)
            state.seen_s = timestamp_s
            best = int(state.smoothed.argmax())
            if state.smoothed[best] > state.smoothed[state.label] + self.hysteresis:
                state.label = best
            smoothed[row], labels[row] = state.smoothed, state.label
        if len(self._tracks) > self.max_tracks:
            newest = sorted(self._tracks.items(), key=lambda kv: kv[1].seen_s)[-self.max_tracks:]
            self._tracks = dict(newest)
        faces.smoothed, faces.labels = smoothed, labels.astype(np.int64)
        return faces
