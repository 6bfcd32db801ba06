"""Sources: every frame of a file with container timestamps, newest-frame-only live reading, one-line errors."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from emocam.sources import SourceError, open_source


def test_a_file_gives_every_frame_with_its_timestamp(shared: Path) -> None:
    with open_source(shared / "videos" / "WolfgangLanger_Pexels.mp4") as source:
        assert not source.live and source.frame_count == 472
        frames = list(source)
    assert [f.index for f in frames] == list(range(472))
    t = np.array([f.timestamp_s for f in frames])
    assert t[0] == 0.0 and (np.diff(t) > 0).all()
    np.testing.assert_allclose(np.diff(t), 1 / 23.976, rtol=0.02)
    assert frames[-1].image.shape == (360, 640, 3) and frames[-1].image.dtype == np.uint8
    assert source.decode_s > 0


def test_closing_a_file_early_stops_its_decoder(shared: Path) -> None:
    before = threading.active_count()
    source = open_source(shared / "videos" / "WolfgangLanger_Pexels.mp4")
    first = [f.index for _, f in zip(range(5), source)]
    source.close()
    assert first == [0, 1, 2, 3, 4]
    assert threading.active_count() == before


def test_a_live_source_keeps_only_the_newest_frame_then_reports_the_end(clip: Path) -> None:
    got = []
    with open_source(clip, live=True) as source:
        assert source.live
        with pytest.raises(SourceError, match="disconnected"):
            for frame in source:
                got.append(frame.index)
                time.sleep(0.05)  # a slow consumer: the grabber runs ahead and stale frames are dropped
    assert 0 < len(got) < 72
    assert np.all(np.diff(got) > 0) and max(np.diff(got)) > 1


@pytest.mark.parametrize("spec, message", [
    ("no/such/clip.mp4", "video file not found: no/such/clip.mp4"),
    ("99", "camera 99 cannot be opened"),
    ("/dev/video99", "camera device /dev/video99 does not exist"),
    ("rtsp://127.0.0.1:9/none", "stream rtsp://127.0.0.1:9/none cannot be opened"),
])
def test_sources_that_cannot_be_opened(spec: str, message: str) -> None:
    with pytest.raises(SourceError, match=message):
        open_source(spec)


def test_a_file_that_is_not_a_video(tmp_path: Path) -> None:
    fake = tmp_path / "clip.mp4"
    fake.write_text("not a video\n")
    with pytest.raises(SourceError, match=r"clip.mp4 is not a decodable video"):
        open_source(fake)
    with pytest.raises(SourceError, match="is not a file"):
        open_source(tmp_path)
