"""Sources: every frame of a file with container timestamps, newest-frame-only live reading, streams that stay live
when they decode slower than they arrive, one-line errors."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest

from conftest import stream_lag
from emocam.sources import LiveStream, SourceError, open_source



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


# --- live streams --------------------------------------------------------------------------------------------------

class SlowDecoder(LiveStream):
    """A stream reader whose decoder takes 0.1 s more for each packet: a 30 fps stream arrives three times faster
    than it decodes, as a 4K stream does on a small machine."""

    def _decode(self, packet: av.Packet) -> list[av.VideoFrame]:
        time.sleep(0.1)
        return super()._decode(packet)


def read_lags(source, started: list[float], seconds: float) -> list[tuple[float, float]]:
    """(seconds read, lag) for each frame taken within ``seconds``: the lag is the server's wall time since it began
    sending minus the frame's stream time."""
    got, t0 = [], time.monotonic()
    for frame in source:
        now = time.monotonic()
        got.append((now - t0, now - started[-1] - frame.stream_s))
        if now - t0 >= seconds:
            return got
    raise AssertionError("the stream ended")


def test_a_stream_is_read_at_its_live_edge(live_clip: Path) -> None:
    with stream_lag.LoopServer(live_clip) as server, open_source(server.url) as source:
        assert source.live and source.fps == 30.0
        frame = next(iter(source))
        assert frame.image.shape == (180, 320, 3) and frame.image.dtype == np.uint8
        lags = read_lags(source, server.started, 2.0)
    assert len(lags) > 30 and max(lag for _, lag in lags) < 0.5  # the stream loops past its 2 s without a seam
    assert source.dropped == 0 and source.decode_s > 0


def test_a_stream_that_decodes_slower_than_it_arrives_stays_live(live_clip: Path, capsys) -> None:
    with stream_lag.LoopServer(live_clip) as server, SlowDecoder(server.url) as source:
        lags = read_lags(source, server.started, 4.0)
    assert max(lag for t, lag in lags if t > 0.5) < 1.0
    assert source.dropped > 30  # skipped undecoded to the next key frame
    told = [line for line in capsys.readouterr().err.splitlines() if "frames are dropped" in line]
    assert len(told) == 1 and told[0].startswith(f"emocam: stream {server.url} decodes slower than it arrives")


def test_without_skipping_a_slow_stream_falls_further_and_further_behind(live_clip: Path) -> None:
    # The case above with skipping turned off, as OpenCV's grabber read every frame: the lag only grows.
    with stream_lag.LoopServer(live_clip) as server, SlowDecoder(server.url, max_lag_s=None) as source:
        lags = read_lags(source, server.started, 3.0)
    assert lags[-1][1] > 1.5 and lags[-1][1] > lags[0][1] + 1.0 and source.dropped == 0


def test_a_stream_that_goes_quiet_is_given_up_after_the_timeout(live_clip: Path) -> None:
    with stream_lag.LoopServer(live_clip, quiet_after_s=1.5) as server, open_source(server.url, timeout_s=1.0) as source:
        frames = 0
        with pytest.raises(SourceError, match=f"stream {server.url} sent no frame for 1 s"):
            for _ in source:
                frames += 1
        quiet_for = time.monotonic() - server.started[-1] - 1.5
    assert frames > 10 and quiet_for < 3.0


def test_a_stream_whose_server_goes_away_says_so_at_once(live_clip: Path) -> None:
    server = stream_lag.LoopServer(live_clip)
    with open_source(server.url) as source:
        with pytest.raises(SourceError, match=f"stream {server.url} disconnected"):
            for frame in source:
                if frame.timestamp_s > 0.5 and server.started:
                    server.close()
                    closed = time.monotonic()
        assert time.monotonic() - closed < 1.0
