"""The summary sink's memory: its timelines stay bounded however long the run."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from conftest import CLASSES
from emocam.summary import Summary, Timeline


# --- memory: the summary's timelines are bounded -----------------------------------------------------------------------

def test_a_timeline_keeps_a_bounded_number_of_points() -> None:
    timeline = Timeline(len(CLASSES), points=64)
    probs = np.eye(len(CLASSES))[np.arange(10_000) // 5_000 * 3]  # class 0 for the first half, then class 3
    for i, p in enumerate(probs):
        timeline.add(i / 25.0, p)
    times, means = timeline.points()
    assert 32 <= len(times) <= 64 and timeline._sums.shape[0] == 64  # bounded, whatever the length
    assert np.all(np.diff(times) > 0) and times[0] < 10.0 and times[-1] > 390.0  # each point: its frames' mean time
    assert means[:10, 0].min() == 1.0 and means[-10:, 3].min() == 1.0  # each point averages its own frames


def test_the_summary_plot_of_a_long_run_uses_bounded_points(tmp_path: Path) -> None:
    from test_sinks import frame_with_faces

    with Summary(CLASSES, plot_path=tmp_path / "p.png") as summary:
        for i in range(3000):
            summary.write(*frame_with_faces(i, n=1))
        assert summary._faces[0]["timeline"].n <= summary._faces[0]["timeline"].points_max
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
