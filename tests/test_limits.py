"""How much of a source a run takes (--max-frames, --duration) and how a live stream's run reads and ends: a progress
line when headless, exit 0 with a note when the stream ends, an error when the connection drops."""

from __future__ import annotations

import csv
import json
import re
import threading
from pathlib import Path

import pytest

from conftest import emocam, stream_lag


def frames_in(path: Path) -> list[int]:
    with open(path, newline="") as f:
        return [int(r["frame"]) for r in csv.DictReader(f)]


def test_max_frames_and_duration_cut_a_file(clip: Path, tiny_model: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture) -> None:
    base = ("--video", clip, "--model", tiny_model, "--no-display", "--every-frame")
    code, out, _ = emocam(capsys, *base, "--csv", tmp_path / "n.csv", "--max-frames", 10)
    assert code == 0 and frames_in(tmp_path / "n.csv") == list(range(10)) and "10 frames" in out
    # The clip runs at 30 fps: its first second is frames 0-29, by their timestamps.
    code, out, _ = emocam(capsys, *base, "--csv", tmp_path / "d.csv", "--duration", 1)
    assert code == 0 and frames_in(tmp_path / "d.csv") == list(range(30))
    code, _, err = emocam(capsys, *base, "--duration", 0)
    assert code == 2 and "--duration must be more than 0 seconds" in err


def test_max_frames_on_an_image_and_on_a_stream(shared: Path, live_clip: Path, tiny_model: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture) -> None:
    model = ("--model", tiny_model, "--no-display", "--every-frame")
    code, _, _ = emocam(capsys, "--video", shared / "images" / "single_face.jpg", *model, "--csv", tmp_path / "i.csv",
                        "--max-frames", 3)
    assert code == 0 and frames_in(tmp_path / "i.csv") == [0]
    with stream_lag.LoopServer(live_clip) as server:  # a live stream that would go on for ever
        code, _, err = emocam(capsys, "--source", server.url, *model, "--csv", tmp_path / "s.csv", "--max-frames", 12)
    assert code == 0, err
    assert len(frames_in(tmp_path / "s.csv")) == 12


def test_duration_on_a_stream(live_clip: Path, tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with stream_lag.LoopServer(live_clip) as server:
        code, _, err = emocam(capsys, "--source", server.url, "--model", tiny_model, "--no-display", "--jsonl",
                              tmp_path / "s.jsonl", "--every-frame", "--duration", 1.5)
    assert code == 0, err
    times = [json.loads(line)["timestamp_s"] for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert 10 < len(times) and 1.0 < times[-1] - times[0] <= 1.5  # counted from the first frame's time


def test_a_batch_takes_max_frames_of_each_input(clip: Path, tiny_model: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    code, _, err = emocam(capsys, "batch", clip, "--out-dir", tmp_path / "out", "--model", tiny_model,
                          "--max-frames", 7)
    assert code == 0, err
    [csv_file] = (tmp_path / "out").glob("single_face-*.csv")
    assert frames_in(csv_file) == list(range(7))


PROGRESS = r"(\d+) frames, [\d.]+ fps, lag [\d.]+ s, (\d+) dropped"


def test_a_headless_stream_shows_its_progress(live_clip: Path, tiny_model: Path, capsys: pytest.CaptureFixture) -> None:
    with stream_lag.LoopServer(live_clip) as server:
        code, _, err = emocam(capsys, "--source", server.url, "--model", tiny_model, "--no-display",
                              "--max-frames", 45)
    assert code == 0, err
    lines = [m for m in (re.search(PROGRESS, line) for line in err.splitlines()) if m]
    assert lines and lines[-1].group(1) == "45" and lines[-1].group(2) == "0"


def test_a_stream_that_ends_exits_0_with_a_note(live_clip: Path, tiny_model: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture) -> None:
    with stream_lag.LoopServer(live_clip, loops=1) as server:  # sends the 2 s clip once, then closes the connection
        code, _, err = emocam(capsys, "--source", server.url, "--model", tiny_model, "--no-display", "--csv",
                              tmp_path / "s.csv")
    assert code == 0, err
    assert "error" not in err and [line for line in err.splitlines() if f"stream {server.url} ended" in line]
    assert len(frames_in(tmp_path / "s.csv")) > 20


def test_a_dropped_connection_is_an_error(live_clip: Path, tiny_model: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture) -> None:
    server = stream_lag.LoopServer(live_clip)
    threading.Timer(1.5, server.close).start()  # the server goes away mid-stream: its connections are reset
    code, _, err = emocam(capsys, "--source", server.url, "--model", tiny_model, "--no-display", "--csv",
                          tmp_path / "s.csv")
    assert code == 2 and f"emocam: error: stream {server.url} disconnected" in err
    assert len(frames_in(tmp_path / "s.csv")) > 10  # what came before is kept
