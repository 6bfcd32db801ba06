"""Sources: every frame of a file with container timestamps, newest-frame-only live reading, streams that stay live
when they decode slower than they arrive, one-line errors."""

from __future__ import annotations

import os
import shutil
import socket
import struct
import threading
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from conftest import SAMPLE, csv_rows, run_command, run_here, says, stream_lag
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


@pytest.mark.slow
def test_a_stream_that_decodes_slower_than_it_arrives_stays_live(live_clip: Path, capsys) -> None:
    with stream_lag.LoopServer(live_clip) as server, SlowDecoder(server.url) as source:
        lags = read_lags(source, server.started, 4.0)
    assert max(lag for t, lag in lags if t > 0.5) < 1.0
    assert source.dropped > 30  # skipped undecoded to the next key frame
    told = [line for line in capsys.readouterr().err.splitlines() if "frames are dropped" in line]
    assert len(told) == 1 and told[0].startswith(f"emocam: stream {server.url} decodes slower than it arrives")


@pytest.mark.slow
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


# --- 16: a URL where a file is expected -------------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["video", "bench"])
def test_a_url_given_as_a_file_says_to_use_source(tiny_model: Path, command: str) -> None:
    url = "http://example.com/live/stream.mp4"
    args = ("--video", url, "--no-display") if command == "video" else ("bench", url)
    says(run_here("emocam", *args, "--model", tiny_model), f"streams are live: use --source {url}")


# --- 10: a stream server that accepts and never answers -----------------------------------------------------------------

def test_a_silent_stream_server_is_given_up_after_timeout(tiny_model: Path) -> None:
    server = socket.create_server(("127.0.0.1", 0))
    held = []  # accepted connections, kept open and never answered
    threading.Thread(target=lambda: [held.append(server.accept()) for _ in range(4)], daemon=True).start()
    url = f"http://127.0.0.1:{server.getsockname()[1]}/live"
    try:
        start = time.monotonic()
        result = run_command("emocam", "--source", url, "--timeout", "1.5", "--model", tiny_model, "--no-display")
        elapsed = time.monotonic() - start
    finally:
        server.close()
    says(result, f"stream {url} did not answer within 1.5 s")
    assert elapsed < 8.0  # the default, 10 s, would wait longer: the option reached the capture


# --- 4: a video file under /dev ---------------------------------------------------------------------------------------

def test_a_video_file_under_dev_is_a_file_not_a_camera(tiny_model: Path, tmp_path: Path) -> None:
    if not Path("/dev/shm").is_dir():
        pytest.skip("no /dev/shm here")
    video = Path(shutil.copy(SAMPLE, f"/dev/shm/emocam-test-{os.getpid()}.mp4"))
    try:
        with open_source(str(video)) as source:  # --source with a path: a camera only if it is a capture device
            assert not source.live
        result = run_here("emocam", "--video", video, "--model", tiny_model, "--no-display", "--csv", tmp_path / "f.csv")
        assert result.returncode == 0, result.stderr
        rows = csv_rows(tmp_path / "f.csv")
        assert len(rows) == 1 + 72 and float(rows[-1][1]) == pytest.approx(71 / 30, abs=0.01)  # container times
    finally:
        video.unlink()


# --- 8: a truncated video ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("share, frames", [(2, 228), (5, 87)], ids=["half", "fifth"])
def test_a_cut_video_says_it_ended_early(tiny_model: Path, shared: Path, tmp_path: Path, share: int,
                                         frames: int) -> None:
    whole = (shared / "videos" / "WolfgangLanger_Pexels.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole[:len(whole) // share])
    result = run_here("emocam", "--video", cut, "--model", tiny_model, "--no-display", "--csv", tmp_path / "f.csv")
    says(result, f"cut.mp4 ended early: frames stopped at frame {frames} of 472", code=3)
    assert "skipped" not in result.stderr  # nothing after the cut is taken for a frame
    rows = csv_rows(tmp_path / "f.csv")
    assert int(rows[-1][0]) == frames - 1  # the frames before the cut are all there


def test_a_video_damaged_in_the_middle_goes_on_after_the_damage(tiny_model: Path, shared: Path,
                                                                tmp_path: Path) -> None:
    data = bytearray((shared / "videos" / "WolfgangLanger_Pexels.mp4").read_bytes())
    middle = len(data) // 2
    data[middle:middle + 200_000] = np.random.default_rng(0).bytes(200_000)
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    result = run_here("emocam", "--video", damaged, "--model", tiny_model, "--no-display", "--csv", tmp_path / "f.csv")
    says(result, "could not be decoded (the file is damaged there) and were skipped", code=3)
    frames = sorted({int(r[0]) for r in csv_rows(tmp_path / "f.csv")[1:]})
    assert frames[0] == 0 and frames[-1] == 471  # read up to the damage, and again from after it to the end
    assert 200 < len(frames) < 472


def test_a_whole_video_is_not_reported_as_ended_early(tiny_model: Path, shared: Path) -> None:
    # no_face.mp4's container lists 98 frames, of which 95 decode: a few frames short is not a cut file.
    result = run_here("emocam", "--video", shared / "videos" / "no_face.mp4", "--model", tiny_model, "--no-display")
    assert result.returncode == 0 and "ended early" not in result.stderr, result.stderr


# --- 13: the container's rotation -------------------------------------------------------------------------------------

def sideways_clip(path: Path) -> Path:
    """The sample clip stored turned 90 degrees clockwise, with an mp4 rotation tag that turns it back upright."""
    cap = cv2.VideoCapture(str(SAMPLE))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (360, 640))
    while True:
        ok, image = cap.read()
        if not ok:
            break
        writer.write(cv2.rotate(image, cv2.ROTATE_90_CLOCKWISE))
    writer.release()
    data = bytearray(path.read_bytes())
    tkhd = data.find(b"tkhd")
    assert data[tkhd + 4] == 0  # version 0: the matrix sits 40 bytes after the box's flags
    matrix = tkhd + 4 + 4 + 20 + 8 + 8
    data[matrix:matrix + 36] = struct.pack(">9i", 0, -0x10000, 0, 0x10000, 0, 0, 0, 0, 0x40000000)
    path.write_bytes(bytes(data))
    return path


def test_a_rotation_tag_is_honoured(tiny_model: Path, tmp_path: Path) -> None:
    video = sideways_clip(tmp_path / "phone.mp4")
    with open_source(str(video)) as source:
        assert next(iter(source)).image.shape == (360, 640, 3)  # upright, as a player shows it
    result = run_here("emocam", "--video", video, "--model", tiny_model, "--no-display", "--csv", tmp_path / "f.csv")
    assert result.returncode == 0, result.stderr
    rows = csv_rows(tmp_path / "f.csv")
    assert len(rows) - 1 >= 60  # the upright face is found in (nearly) every frame
    assert max(float(dict(zip(rows[0], r))["x"]) for r in rows[1:]) > 150  # boxes in the landscape frame


def test_a_cut_video_is_probed_a_few_times_not_once_for_every_missing_second(shared: Path, tmp_path: Path,
                                                                               monkeypatch) -> None:
    from emocam.sources import files

    whole = (shared / "videos" / "WolfgangLanger_Pexels.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole[:len(whole) // 5])
    opened = []
    real_open = files.open_capture
    # Where VideoFile looks it up: the module that reads files.
    monkeypatch.setattr(files, "open_capture", lambda target: opened.append(target) or real_open(target))
    with files.VideoFile(cut) as video:
        frames = sum(1 for _ in video)
    assert frames == 87 and "ended early" in str(video.ended_early)
    # The first open, then 1, 2, 4 and 8 seconds past the cut and the last frame; one a second would be 16 in all.
    assert len(opened) <= 6, opened
