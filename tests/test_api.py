"""emocam as a library: the README's examples, Recognizer, the one record schema, --jsonl and --every-frame."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

import emocam
from emocam.faces import Faces
from emocam.records import columns, csv_cells, read_csv, records
from emocam.faces import Frame

ROOT = Path(__file__).parents[1]


def run(*args: object, cwd: Path | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=cwd)


@pytest.mark.slow
def test_the_readme_python_examples_run(tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert blocks, "the README has no Python example"
    (tmp_path / "samples").symlink_to(ROOT / "samples")  # the examples name samples/ as seen from the repository
    for code in blocks:
        result = run("-c", code, cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-2000:]
    assert "face_id" in result.stdout  # the table printed by the last example


@pytest.mark.slow
def test_a_turned_face_brings_no_mediapipe_log_line(tiny_model: Path, shared: Path) -> None:
    # The first face Face Mesh finds makes mediapipe log a line on stderr; the warm-up, which runs silenced, takes it.
    code = "import sys, emocam; print(list(emocam.Recognizer(sys.argv[1])(sys.argv[2]).landmarks))"
    result = run("-c", code, tiny_model, shared / "wild" / "val" / "sad" / "Jayamadhuri_91.jpg")
    assert result.returncode == 0 and "mesh" in result.stdout, result.stderr[-2000:]
    assert result.stderr == ""


@pytest.fixture(scope="module")
def rec(tiny_model: Path):
    with emocam.Recognizer(tiny_model, backend="onnxruntime") as r:
        yield r


def test_an_image_gives_its_faces_on_their_own(rec: emocam.Recognizer, shared: Path) -> None:
    path = shared / "images" / "multi_face.jpg"
    with emocam.Recognizer(rec.options.model, detector="full", backend="onnxruntime") as full:
        faces = full(path)
        again = full(cv2.imread(str(path)))  # an array, and nothing carried over from the first call
    assert len(faces) == 5 and faces.probs.shape == (5, 7) and sorted(faces.track_ids.tolist()) == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(faces.track_ids, again.track_ids)
    np.testing.assert_allclose(faces.smoothed, again.smoothed, atol=1e-6)
    assert len(rec(path)) == 0  # the default short-range detector misses these small faces


def test_stream_gives_every_frame_in_order_tracked_and_smoothed(rec: emocam.Recognizer, clip: Path) -> None:
    frames = [(frame.index, faces.track_ids.tolist(), faces.smoothed is not None) for frame, faces in rec.stream(clip)]
    assert frames == [(i, [0], True) for i in range(72)]
    assert [f.index for f, _ in rec.stream(clip, max_frames=5)] == list(range(5))  # a new stream starts afresh


@pytest.mark.slow
def test_analyze_equals_the_csv_of_the_command(rec: emocam.Recognizer, clip: Path, tmp_path: Path) -> None:
    result = run("-m", "emocam.cli", "--video", clip, "--model", rec.options.model, "--backend", "onnxruntime",
                 "--no-display", "--csv", tmp_path / "f.csv")
    assert result.returncode == 0, result.stderr
    table = rec.analyze(clip)
    assert list(table.columns) == columns(rec.classes) and len(table) == 72
    assert str(table["face_id"].dtype) == "Int64" and str(table["p_happy"].dtype) == "float64"
    import pandas.testing

    pandas.testing.assert_frame_equal(table, read_csv(tmp_path / "f.csv"))


def test_analyze_without_pandas_says_which_extra_to_install(rec: emocam.Recognizer, clip: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)  # makes "import pandas" fail, as where it is not installed
    with pytest.raises(emocam.MissingExtra, match=r"pandas is not installed; pip install 'emocam\[table\]'"):
        rec.analyze(clip)


def test_api_errors_are_the_commands_one_line_errors(tiny_model: Path, tmp_path: Path) -> None:
    with pytest.raises(emocam.ModelError, match="model file not found"):
        emocam.Recognizer(tmp_path / "missing.onnx")
    with pytest.raises(emocam.UsageProblem, match="unknown detector 'far'"):
        emocam.Recognizer(tiny_model, detector="far")
    with emocam.Recognizer(tiny_model, backend="onnxruntime") as r:
        with pytest.raises(emocam.SourceError, match="not found"):
            list(r.stream(tmp_path / "missing.mp4"))
        (tmp_path / "bad.png").write_bytes(b"not an image")
        with pytest.raises(emocam.SourceError, match="is not a decodable image"):
            r(tmp_path / "bad.png")
    assert all(issubclass(e, Exception) for e in emocam.USER_ERRORS)


def test_a_face_that_fails_the_quality_gate_keeps_raw_probabilities_only() -> None:
    classes = ("a", "b")
    probs = np.array([[0.2, 0.8], [0.6, 0.4]], np.float32)
    faces = Faces(np.array([[1, 2, 30, 40], [50, 60, 30, 40]]), np.array([0.9, 0.8]), np.zeros((2, 2, 2)),
                  np.array([3, 4]), pose=np.array([[10, -5, 2], [np.nan] * 3]), quality=np.array(["ok", "profile"]),
                  probs=probs, smoothed=np.array([[0.3, 0.7], [np.nan, np.nan]]), labels=np.array([1, -1]))
    ok, gated = records(Frame(7, 0.25, np.zeros((1, 1, 3), np.uint8)), faces, classes)
    assert ok["label"] == "b" and ok["s_b"] == 0.7 and ok["yaw"] == 10.0 and ok["quality"] == "ok"
    assert gated["quality"] == "profile" and gated["label"] is None and gated["s_a"] is None and gated["s_b"] is None
    assert gated["p_a"] == 0.6 and gated["yaw"] is None and gated["face_id"] == 4
    assert csv_cells(gated, classes)[columns(classes).index("label"):] == ["", "0.6000", "0.4000", "", ""]


def read_csv_rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_every_frame_adds_a_row_for_each_frame_without_a_face(tiny_model: Path, shared: Path, tmp_path: Path) -> None:
    video = shared / "videos" / "no_face.mp4"
    for flag, name in (((), "plain"), (("--every-frame",), "every")):
        result = run("-m", "emocam.cli", "--video", video, "--model", tiny_model, "--backend", "onnxruntime",
                     "--no-display", "--csv", tmp_path / f"{name}.csv", "--jsonl", tmp_path / f"{name}.jsonl", *flag)
        assert result.returncode == 0, result.stderr
    assert read_csv_rows(tmp_path / "plain.csv") == [] and (tmp_path / "plain.jsonl").read_text() == ""
    rows = read_csv_rows(tmp_path / "every.csv")
    lines = [json.loads(line) for line in (tmp_path / "every.jsonl").read_text().splitlines()]
    assert [int(r["frame"]) for r in rows] == [line["frame"] for line in lines] == list(range(95))
    assert all(r["face_id"] == "" and r["p_happy"] == "" for r in rows) and lines[1]["face_id"] is None
    assert float(rows[1]["timestamp_s"]) == pytest.approx(lines[1]["timestamp_s"]) and lines[1]["timestamp_s"] > 0


@pytest.mark.slow
def test_jsonl_on_stdout_is_read_live_and_everything_else_goes_to_stderr(tiny_model: Path, shared: Path,
                                                                         tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "emocam.cli", "--video", shared / "videos" / "WolfgangLanger_Pexels.mp4",
                             "--model", tiny_model, "--backend", "onnxruntime", "--no-display",
                             "--jsonl", "-", "--csv", tmp_path / "f.csv"],
                            stdout=subprocess.PIPE, stderr=open(tmp_path / "stderr.txt", "w"), text=True)
    first = json.loads(proc.stdout.readline())
    still_running = proc.poll() is None  # the first line came while the video was still being processed
    rest = proc.stdout.read()
    proc.wait(timeout=180)
    stderr = (tmp_path / "stderr.txt").read_text()
    assert proc.returncode == 0, stderr
    assert still_running and first["frame"] == 0
    assert list(first) == columns(c[2:] for c in first if c.startswith("p_"))  # the schema's columns, in order
    lines = [first] + [json.loads(line) for line in rest.splitlines()]  # every line on stdout is a JSON object
    csv_rows = read_csv_rows(tmp_path / "f.csv")
    assert len(lines) == len(csv_rows) > 400
    assert [(line["frame"], line["face_id"], line["label"]) for line in lines] == \
        [(int(r["frame"]), int(r["face_id"]), r["label"]) for r in csv_rows]
    assert "face(s)" in stderr  # the summary table went to stderr


@pytest.mark.slow
def test_a_reader_that_goes_away_ends_the_run_quietly(tiny_model: Path, clip: Path) -> None:
    cmd = [sys.executable, "-m", "emocam.cli", "--video", str(clip), "--model", str(tiny_model), "--backend",
           "onnxruntime", "--no-display", "--jsonl", "-"]
    result = subprocess.run(f"{' '.join(cmd)} | head -n 2", shell=True, capture_output=True, text=True, timeout=120)
    assert len(result.stdout.splitlines()) == 2 and "Traceback" not in result.stderr


@pytest.mark.slow
def test_images_are_first_class_inputs(tiny_model: Path, clip: Path, tmp_path: Path) -> None:
    cap = cv2.VideoCapture(str(clip))
    image = cap.read()[1]
    cap.release()
    for suffix in (".png", ".webp", ".jpg"):
        path = tmp_path / f"face{suffix}"
        cv2.imwrite(str(path), image)
        result = run("-m", "emocam.cli", "--video", path, "--model", tiny_model, "--backend", "onnxruntime",
                     "--no-display", "--csv", tmp_path / f"{suffix[1:]}.csv")
        assert result.returncode == 0, result.stderr
        rows = read_csv_rows(tmp_path / f"{suffix[1:]}.csv")
        assert len(rows) == 1 and rows[0]["frame"] == "0" and rows[0]["label"], suffix
