"""How much of a source a run takes (--max-frames, --duration) and how a live stream's run reads and ends: a progress
line when headless, exit 0 with a note when the stream ends, an error when the connection drops."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

from conftest import csv_rows, run_here, says, stream_lag


def frames_in(path: Path) -> list[int]:
    """The frame numbers of a CSV's rows."""
    header, *rows = csv_rows(path)
    return [int(r[header.index("frame")]) for r in rows]


def test_max_frames_and_duration_cut_a_file(clip: Path, tiny_model: Path, tmp_path: Path) -> None:
    base = ("--video", clip, "--model", tiny_model, "--no-display", "--every-frame")
    ran = run_here("emocam", *base, "--csv", tmp_path / "n.csv", "--max-frames", 10)
    assert ran.returncode == 0 and frames_in(tmp_path / "n.csv") == list(range(10)) and "10 frames" in ran.stdout
    # The clip runs at 30 fps: its first second is frames 0-29, by their timestamps.
    ran = run_here("emocam", *base, "--csv", tmp_path / "d.csv", "--duration", 1)
    assert ran.returncode == 0 and frames_in(tmp_path / "d.csv") == list(range(30))
    says(run_here("emocam", *base, "--duration", 0), "--duration must be more than 0 seconds")


def test_max_frames_on_an_image_and_on_a_stream(shared: Path, live_clip: Path, tiny_model: Path,
                                                tmp_path: Path) -> None:
    model = ("--model", tiny_model, "--no-display", "--every-frame")
    ran = run_here("emocam", "--video", shared / "images" / "single_face.jpg", *model, "--csv", tmp_path / "i.csv",
                   "--max-frames", 3)
    assert ran.returncode == 0 and frames_in(tmp_path / "i.csv") == [0]
    with stream_lag.LoopServer(live_clip) as server:  # a live stream that would go on for ever
        ran = run_here("emocam", "--source", server.url, *model, "--csv", tmp_path / "s.csv", "--max-frames", 12)
    assert ran.returncode == 0, ran.stderr
    assert len(frames_in(tmp_path / "s.csv")) == 12


def test_duration_on_a_stream(live_clip: Path, tiny_model: Path, tmp_path: Path) -> None:
    with stream_lag.LoopServer(live_clip) as server:
        ran = run_here("emocam", "--source", server.url, "--model", tiny_model, "--no-display", "--jsonl",
                       tmp_path / "s.jsonl", "--every-frame", "--duration", 1.5)
    assert ran.returncode == 0, ran.stderr
    times = [json.loads(line)["timestamp_s"] for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert 10 < len(times) and 1.0 < times[-1] - times[0] <= 1.5  # counted from the first frame's time


def test_a_batch_takes_max_frames_of_each_input(clip: Path, tiny_model: Path, tmp_path: Path) -> None:
    ran = run_here("emocam", "batch", clip, "--out-dir", tmp_path / "out", "--model", tiny_model, "--max-frames", 7)
    assert ran.returncode == 0, ran.stderr
    [csv_file] = (tmp_path / "out").glob("single_face-*.csv")
    assert frames_in(csv_file) == list(range(7))


PROGRESS = r"(\d+) frames, [\d.]+ fps, lag [\d.]+ s, (\d+) dropped"


def test_a_headless_stream_shows_its_progress(live_clip: Path, tiny_model: Path) -> None:
    with stream_lag.LoopServer(live_clip) as server:
        ran = run_here("emocam", "--source", server.url, "--model", tiny_model, "--no-display", "--max-frames", 45)
    assert ran.returncode == 0, ran.stderr
    lines = [m for m in (re.search(PROGRESS, line) for line in ran.stderr.splitlines()) if m]
    assert lines and lines[-1].group(1) == "45" and lines[-1].group(2) == "0"


def test_a_stream_that_ends_exits_0_with_a_note(live_clip: Path, tiny_model: Path, tmp_path: Path) -> None:
    with stream_lag.LoopServer(live_clip, loops=1) as server:  # sends the 2 s clip once, then closes the connection
        ran = run_here("emocam", "--source", server.url, "--model", tiny_model, "--no-display", "--csv",
                       tmp_path / "s.csv")
    assert ran.returncode == 0, ran.stderr
    err = ran.stderr
    assert "error" not in err and [line for line in err.splitlines() if f"stream {server.url} ended" in line]
    assert len(frames_in(tmp_path / "s.csv")) > 20


def test_a_dropped_connection_is_an_error(live_clip: Path, tiny_model: Path, tmp_path: Path) -> None:
    server = stream_lag.LoopServer(live_clip)
    threading.Timer(1.5, server.close).start()  # the server goes away mid-stream: its connections are reset
    ran = run_here("emocam", "--source", server.url, "--model", tiny_model, "--no-display", "--csv",
                   tmp_path / "s.csv")
    says(ran, f"stream {server.url} disconnected")
    assert len(frames_in(tmp_path / "s.csv")) > 10  # what came before is kept
