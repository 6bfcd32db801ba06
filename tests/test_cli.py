"""The emocam command as a user runs it: outputs, the benchmark, Ctrl-C, and one-line errors."""

from __future__ import annotations

import csv
import importlib.util
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import onnx
import pytest

from conftest import run_command, run_here, says
from emocam.cli import default_model
from emocam.outputs import partial_name


@pytest.fixture(scope="module")
def bad_models(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> dict[str, Path]:
    """A corrupt model and one without the emocam metadata."""
    folder = tmp_path_factory.mktemp("bad")
    corrupt = folder / "corrupt.onnx"
    corrupt.write_bytes(tiny_model.read_bytes()[:2000])
    bare = onnx.load(str(tiny_model))
    del bare.metadata_props[:]
    onnx.save(bare, str(folder / "bare.onnx"))
    return {"corrupt": corrupt, "bare": folder / "bare.onnx"}


def test_a_video_gives_csv_video_summary_and_plot(clip: Path, tiny_model: Path, tmp_path: Path) -> None:
    result = run_here("emocam", "--video", clip, "--model", tiny_model, "--no-display",
                    "--csv", tmp_path / "f.csv", "--out", tmp_path / "a.mp4", "--summary", tmp_path / "s.json",
                    "--plot", tmp_path / "p.png", "--tau", "0.2")
    assert result.returncode == 0, result.stderr
    assert "72 frames, 1 face(s)" in result.stdout
    with open(tmp_path / "f.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 72
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["frames"] == 72 and summary["faces"][0]["seconds"] == pytest.approx(2.4, abs=0.05)
    assert (tmp_path / "a.mp4").stat().st_size > 10_000 and (tmp_path / "p.png").stat().st_size > 10_000


def test_bench_prints_and_saves_stage_and_classifier_timings(clip: Path, tiny_model: Path, tmp_path: Path) -> None:
    result = run_here("emocam", "bench", clip, "--model", tiny_model, "--json",
                    tmp_path / "b.json", "--backend", "onnxruntime", "--device", "0", "--batch-frames", "4")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "b.json").read_text())
    assert report["frames"] == 72 and report["fps"] > 0
    assert report["backend"] == "onnxruntime" and report["batch_frames"] == 4
    assert set(report["ms_per_frame"]) == {"decode", "detect", "track", "align", "infer", "smooth", "write"}
    classifier = report["classifier"]
    assert set(classifier["faces_per_s"]) == {"1", "8", "64"} and all(r > 0 for r in classifier["faces_per_s"].values())
    assert classifier["ms_per_face_batch1"] == pytest.approx(1e3 / classifier["faces_per_s"]["1"], rel=1e-2)
    assert "fps" in result.stdout and "detect" in result.stdout and "classifier alone (onnxruntime)" in result.stdout


@pytest.mark.slow
def test_ctrl_c_leaves_a_valid_csv(shared: Path, tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "f.csv"
    # The slower detector and the video output keep the run going long enough to interrupt it.
    # Run as from a terminal: a shell that starts a job in the background (as CI may start this suite) makes it ignore
    # SIGINT, and every process it starts inherits that, so Ctrl-C would never reach the run.
    proc = subprocess.Popen([sys.executable, "-m", "emocam.cli", "--video", shared / "videos" / "WolfgangLanger_Pexels.mp4",
                             "--model", tiny_model, "--no-display", "--csv", out, "--detector", "both",
                             "--out", tmp_path / "a.mp4"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    partial = partial_name(out)  # rows stream here until the run ends
    while time.monotonic() < deadline and (not partial.exists() or partial.read_text().count("\n") < 20):
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    with open(out, newline="") as f:
        rows = list(csv.reader(f))
    assert 10 <= len(rows) - 1 < 472 and all(len(r) == len(rows[0]) for r in rows)
    assert "face(s)" in stdout  # the summary was still printed


def test_user_errors_are_one_line(clip: Path, tiny_model: Path, bad_models: dict[str, Path], tmp_path: Path) -> None:
    video = clip
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("not a video\n")
    model = ("--model", tiny_model, "--no-display")
    cases = [
        (("--video", tmp_path / "missing.mp4", *model), "video file not found"),
        (("--video", not_video, *model), "is not a decodable video"),
        (("--source", "7", *model), "camera 7 cannot be opened"),
        (("--video", video, "--no-display", "--model", tmp_path / "missing.onnx"), "model file not found"),
        (("--video", video, "--no-display", "--model", bad_models["corrupt"]), "is not a readable ONNX model"),
        (("--video", video, "--no-display", "--model", bad_models["bare"]), "has no 'emocam' metadata"),
        (("--video", video, *model, "--backend", "nosuch"), "unknown backend 'nosuch'"),
        (("--video", video, *model, "--batch-frames", "0"), "--batch-frames"),
        (("--video", video, *model, "--device", "-1"), "--device"),
        (("--video", video, *model, "--detector", "far"), "unknown detector 'far'"),
        (("--video", video, *model, "--csv", tmp_path / "no" / "f.csv"), "does not exist"),
        (("--video", video, *model, "--tau", "-1"), "--tau"),
        (model, "give exactly one of --source"),
        (("bench",), "Missing argument"),
        (("bench", tmp_path / "missing.mp4", "--model", tiny_model), "video file not found"),
    ]
    for args, message in cases:
        # A camera is opened through native code, whose own warnings only a process of its own shows.
        run = run_command if args[0] == "--source" else run_here
        says(run("emocam", *args), message, code=None, alone=True)


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_a_backend_that_is_not_installed_says_so(clip: Path, tiny_model: Path) -> None:
    video = clip
    for args in (("--video", video, "--no-display"), ("bench", video, "--device", "1")):
        result = run_here("emocam", *args, "--model", tiny_model, "--backend", "tensorrt")
        says(result, "TensorRT is not installed; pip install tensorrt", code=None, alone=True)
        assert result.returncode == 2


@pytest.mark.skipif(default_model().is_file(), reason="a model is shipped")
def test_a_missing_shipped_model_says_to_pass_one(clip: Path) -> None:
    says(run_here("emocam", "--video", clip, "--no-display"), "--model PATH", code=None, alone=True)


def _csv_rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_tau_and_hysteresis_reach_the_smoother(tmp_path: Path) -> None:
    clip = Path(__file__).parents[1] / "samples" / "single_face.mp4"
    runs = {"default": (), "tau0": ("--tau", 0), "sticky": ("--hysteresis", 2)}
    rows = {}
    for name, extra in runs.items():
        # The shipped model.
        result = run_here("emocam", "--video", clip, "--no-display", "--csv", tmp_path / f"{name}.csv", *extra)
        assert result.returncode == 0, result.stderr
        rows[name] = _csv_rows(tmp_path / f"{name}.csv")
    probs = [c for c in rows["default"][0] if c.startswith("p_")]
    smoothed = ["s_" + c[2:] for c in probs]
    unsmoothed = lambda r: all(abs(float(r[p]) - float(r[s])) < 1e-5 for p, s in zip(probs, smoothed))  # noqa: E731
    # With tau 0 every smoothed value is the raw one; by default they differ after the first frame.
    assert all(unsmoothed(r) for r in rows["tau0"])
    assert sum(not unsmoothed(r) for r in rows["default"]) > len(rows["default"]) // 2
    # A margin of 2 can never be beaten: every face keeps its first label.
    first = {}
    assert all(first.setdefault(r["face_id"], r["label"]) == r["label"] for r in rows["sticky"])
    assert len({r["label"] for r in rows["default"]}) > 1
