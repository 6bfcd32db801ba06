"""Temporal smoothing: frame-rate independence, hysteresis, bounded state, fewer label flips on a real clip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from emocam.detect import FaceDetector
from emocam.backends import open_backend
from emocam.faces import Faces
from emocam.pipeline import Pipeline
from emocam.sinks import Sink
from emocam.smooth import Smoother
from emocam.sources import open_source


def one_face(probs: list[float], track: int = 0) -> Faces:
    """One tracked face with the given class probabilities."""
    return Faces(np.zeros((1, 4)), np.ones(1), np.zeros((1, 2, 2)), np.array([track]), probs=np.array([probs]))


def test_smoothing_does_not_depend_on_the_frame_rate() -> None:
    final = []
    for fps in (10, 30, 120):
        smoother = Smoother(tau_s=0.3)
        smoother.update(one_face([1.0, 0.0]), 0.0)
        for i in range(1, fps // 2 + 1):
            faces = smoother.update(one_face([0.0, 1.0]), i / fps)
        final.append(faces.smoothed[0, 1])
    np.testing.assert_allclose(final, 1 - np.exp(-0.5 / 0.3), atol=1e-5)


def test_label_changes_only_past_the_hysteresis_margin() -> None:
    smoother = Smoother(tau_s=0.0, hysteresis=0.1)
    assert smoother.update(one_face([0.6, 0.4]), 0.0).labels.tolist() == [0]
    faces = smoother.update(one_face([0.46, 0.54]), 0.1)
    assert faces.labels.tolist() == [0]  # 0.54 does not beat 0.46 by 0.1
    assert faces.probs.tolist() == [[0.46, 0.54]]  # raw probabilities are kept
    assert smoother.update(one_face([0.44, 0.56]), 0.2).labels.tolist() == [1]


def test_tracks_are_forgotten_and_untracked_faces_pass_raw() -> None:
    smoother = Smoother(tau_s=1.0, forget_s=2.0, max_tracks=4)
    smoother.update(one_face([1.0, 0.0], track=7), 0.0)
    assert len(smoother) == 1
    fresh = smoother.update(one_face([0.0, 1.0], track=7), 2.5)  # unseen for longer than forget_s: starts afresh
    assert fresh.smoothed.tolist() == [[0.0, 1.0]]
    raw = smoother.update(one_face([0.3, 0.7], track=-1), 2.6)
    np.testing.assert_allclose(raw.smoothed, raw.probs)
    assert raw.labels.tolist() == [1]
    for k in range(10):
        smoother.update(one_face([0.5, 0.5], track=100 + k), 3.0 + k * 0.01)
    assert len(smoother) <= 4
    smoother.reset()
    assert len(smoother) == 0


def test_negative_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        Smoother(tau_s=-1)


class Labels(Sink):
    """Collects the raw argmax and the displayed label of the first face of each frame."""

    def __init__(self) -> None:
        self.raw: list[int] = []
        self.shown: list[int] = []

    def write(self, frame, faces) -> None:
        if len(faces):
            self.raw.append(int(faces.probs[0].argmax()))
            self.shown.append(int(faces.labels[0]))


def test_smoothing_reduces_label_changes_on_a_real_clip(shared: Path, tiny_model: Path) -> None:
    labels = Labels()
    with FaceDetector() as detector, open_source(shared / "videos" / "WolfgangLanger_Pexels.mp4") as source:
        Pipeline(detector, open_backend(tiny_model), smoother=Smoother(tau_s=0.3, hysteresis=0.1)).run(source, [labels])
    flips = lambda seq: int(np.count_nonzero(np.diff(seq)))  # noqa: E731
    assert len(labels.raw) > 400
    assert flips(labels.raw) >= 20
    assert flips(labels.shown) <= flips(labels.raw) // 5
