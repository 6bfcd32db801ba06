"""Stream time: a network stream's frames carry the stream's own clock to the tracker, the smoother and timestamp_s,
whatever the bursts in which they arrive; a camera keeps its capture time; a skip to the next key frame says how far
it jumped (issue 19, stream time)."""

from __future__ import annotations

import csv
import http.server
import io
import socketserver
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

import emocam
from conftest import SAMPLE, stream_lag

FPS = 30
BURST_S = 0.25  # as ffmpeg's HTTP server sends an MPEG-TS: a burst of frames, then nothing for a quarter second


def transport_stream(fps: int = FPS, gop: int = FPS) -> tuple[bytes, list[tuple[float, int]]]:
    """The sample clip played forwards then backwards (one person, 142 frames, no seam), as H.264 in MPEG-TS with a
    key frame every ``gop`` frames; and (frame time, bytes muxed so far) after each frame."""
    with av.open(str(SAMPLE)) as clip:
        frames = [f.to_ndarray(format="rgb24") for f in clip.decode(video=0)]
    buf, marks = io.BytesIO(), []
    with av.open(buf, "w", format="mpegts") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        stream.options = {"preset": "ultrafast", "g": str(gop), "keyint_min": str(gop), "sc_threshold": "0", "bf": "0"}
        for i, image in enumerate(frames + frames[-2:0:-1]):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            for packet in stream.encode(frame):
                out.mux(packet)
            marks.append((i / fps, buf.tell()))
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue(), marks


class BurstyServer:
    """Serves ``data`` over HTTP on loopback in real time but in bursts: every ``BURST_S`` the bytes of the frames
    due by then, all at once. A context manager; ``url`` is where to read it."""

    def __init__(self, data: bytes, marks: list[tuple[float, int]]) -> None:
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "video/mp2t")
                self.end_headers()
                outer.send(self.wfile)

            def log_message(self, *args) -> None:
                pass

        self.data, self.marks = data, marks
        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/live.ts"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def send(self, wire) -> None:
        start, sent, burst = time.monotonic(), 0, 1
        while sent < len(self.data):
            due = burst * BURST_S
            upto = max([end for t, end in self.marks if t < due] + [sent])
            if due > self.marks[-1][0]:
                upto = len(self.data)
            time.sleep(max(0.0, start + due - time.monotonic()))
            try:
                wire.write(self.data[sent:upto])
                wire.flush()
            except OSError:
                return
            sent, burst = upto, burst + 1

    def __enter__(self) -> "BurstyServer":
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="module")
def ts() -> tuple[bytes, list[tuple[float, int]]]:
    return transport_stream()


def test_a_bursty_stream_keeps_one_face_id_and_the_videos_clock(tiny_model: Path, ts, tmp_path: Path) -> None:
    with emocam.Recognizer(tiny_model, backend="onnxruntime") as rec, BurstyServer(*ts) as server, \
            emocam.open_source(server.url) as source:
        with emocam.CsvSink(tmp_path / "f.csv", rec.classes) as sink:
            with pytest.raises(emocam.SourceError, match="disconnected"):  # the server ends the stream
                rec.run(source, [sink])
    with open(tmp_path / "f.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    frames = [int(r["frame"]) for r in rows]
    assert len(rows) > 20 and max(np.diff(frames)) > 3  # frames were dropped in the bursts: a real test of time
    assert {r["face_id"] for r in rows} == {"0"}  # one person, one id
    stamps = [float(r["timestamp_s"]) for r in rows]
    np.testing.assert_allclose(stamps, np.array(frames) / FPS, atol=1e-3)  # the video's own clock, in the CSV
    assert stamps[-1] - stamps[0] > 2.0


def test_a_camera_keeps_its_capture_time(clip: Path) -> None:
    # A file read as if live: the frames come as fast as it decodes, far faster than its 30 fps; each one's time is
    # when it was captured here, not its place in the file.
    with emocam.open_source(clip, live=True) as source:
        start = time.monotonic()
        got = []
        for frame in source:
            got.append((frame.timestamp_s, time.monotonic() - start))
            if len(got) == 10:
                break
    for stamp, seen in got:
        assert 0 <= stamp <= seen + 0.05


@pytest.mark.parametrize("case", ["pts", "bursts_without_pts", "pts_reset", "pts_jump"])
def test_the_stream_clock(case: str) -> None:
    from emocam.sources.live import StreamClock

    clock = StreamClock(fps=30.0)
    if case == "pts":  # the stream's own times, from its first frame
        got = [clock(10.0 + i / 30, arrival_s=0.3 * (i // 8)) for i in range(40)]
        np.testing.assert_allclose(got, np.arange(40) / 30, atol=1e-9)
    elif case == "bursts_without_pts":  # no times: frames spaced at the nominal rate, kept near their arrival
        got = [clock(None, arrival_s=0.25 * (i // 8) + 0.001 * (i % 8)) for i in range(80)]
        assert np.all(np.diff(got) > 0) and np.diff(got).min() > 0.5 / 30
        assert abs(got[-1] - 0.25 * 9) < 1.0
    elif case == "pts_reset":  # a restarted sender: its clock goes back; ours goes on
        got = [clock(5.0 + i / 30, arrival_s=i / 30) for i in range(30)]
        got += [clock(0.0 + i / 30, arrival_s=1 + i / 30) for i in range(30)]
        assert np.all(np.diff(got) > 0) and got[-1] == pytest.approx(59 / 30, abs=0.1)
    else:  # a jump of hours (a spliced broadcast) is not taken as hours of video
        got = [clock(i / 30, arrival_s=i / 30) for i in range(30)]
        got += [clock(7200.0 + i / 30, arrival_s=1 + i / 30) for i in range(30)]
        assert np.all(np.diff(got) > 0) and got[-1] < 5.0


def test_a_skip_to_the_next_key_frame_says_how_far_it_jumped(tmp_path: Path, capsys) -> None:
    from test_sources import SlowDecoder

    clip = stream_lag.make_clip(tmp_path / "gop30.mp4", 320, 180, 30, 2.0, 30, source=SAMPLE)
    with stream_lag.LoopServer(clip) as server, SlowDecoder(server.url) as source:
        start = time.monotonic()
        for frame in source:
            if time.monotonic() - start > 3.0:
                break
    told = [line for line in capsys.readouterr().err.splitlines() if "skipped" in line]
    assert told, "no skip was told"
    assert "to the next key frame" in told[0] and " s of video" in told[0] and "frames" in told[0]
