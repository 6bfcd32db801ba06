"""The timeline plot: titled with its input, axes labelled, legend outside the data, y a little beyond 0-1, the whole
video on x, faces in id order, gated stretches shaded."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import CLASSES
from emocam import Summary
from emocam.faces import Faces
from emocam.sources import Frame

FPS = 10.0


def feed(summary: Summary) -> None:
    """100 frames (10 s): face 3 all along, certain of happy (exactly 1.0) except frames 40-59, where the quality gate
    turns it down; face 1 only from 5 s to 8 s."""
    happy = np.eye(len(CLASSES), dtype=np.float32)[CLASSES.index("happy")]
    for i in range(100):
        ids = [3] + ([1] if 50 <= i < 80 else [])
        n = len(ids)
        probs = np.tile(happy, (n, 1))
        quality = ["turned" if 40 <= i < 60 else "ok"] + ["ok"] * (n - 1)
        labels = np.array([-1 if q != "ok" else CLASSES.index("happy") for q in quality])
        smoothed = probs.copy()
        smoothed[labels < 0] = np.nan
        faces = Faces(np.tile([10, 10, 50, 50], (n, 1)), np.full(n, 0.9), np.zeros((n, 2, 2)), np.array(ids),
                      quality=np.array(quality, object), probs=probs, smoothed=smoothed, labels=labels)
        summary.write(Frame(i, i / FPS, np.zeros((8, 8, 3), np.uint8)), faces)


@pytest.fixture
def figure(tmp_path: Path):
    summary = Summary(CLASSES, tmp_path / "s.json", tmp_path / "p.png", about={"input": "/videos/interview.mp4"})
    feed(summary)
    return summary.figure(summary.report())


def test_the_plot_axes(figure) -> None:
    axes = figure.axes
    assert len(axes) == 2
    assert [ax.get_title(loc="left") for ax in axes] == ["face 1", "face 3"]  # id order, not time on screen
    for ax in axes:
        low, high = ax.get_ylim()
        assert -0.1 <= low < 0 and 1 < high <= 1.1  # a line at exactly 0 or 1 stays clear of the frame
        assert ax.get_xlim()[0] <= 0.0 and ax.get_xlim()[1] >= 9.9  # the whole video, for every face
        assert ax.get_ylabel() == "probability"
    assert axes[-1].get_xlabel() == "time (s)"
    assert "interview.mp4" in figure.get_suptitle()


def test_the_legend_is_outside_the_data(figure) -> None:
    figure.draw_without_rendering()  # lays the figure out, as saving it does
    [legend] = figure.legends
    box = legend.get_window_extent()
    for ax in figure.axes:
        assert not box.overlaps(ax.get_window_extent())
    assert [t.get_text() for t in legend.get_texts()][:len(CLASSES)] == list(CLASSES)


def test_gated_stretches_are_shaded(figure) -> None:
    face3 = figure.axes[1]
    spans = [p.get_x() for p in face3.patches], [p.get_x() + p.get_width() for p in face3.patches]
    assert len(face3.patches) == 1
    (start,), (end,) = spans
    assert start == pytest.approx(4.0, abs=0.15) and end == pytest.approx(6.0, abs=0.15)
    assert not figure.axes[0].patches  # face 1 was never gated


def test_the_plot_is_written(tmp_path: Path) -> None:
    with Summary(CLASSES, tmp_path / "s.json", tmp_path / "p.png", about={"input": "x.mp4"}) as summary:
        feed(summary)
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((tmp_path / "s.json").read_text())["input"] == "x.mp4"
