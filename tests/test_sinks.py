"""Sinks: CSV schema and flushing, a valid CSV after an interrupted run, video, summary, overlay, window."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import CLASSES
from emocam.faces import Faces
from emocam.records import columns
from emocam.faces import Frame
from emocam.outputs import SinkError, partial_name
from emocam.overlay import annotate
from emocam.sinks import CsvSink, VideoSink, Window
from emocam.summary import Summary


def frame_with_faces(index: int, n: int = 2, fps: float = 25.0) -> tuple[Frame, Faces]:
    """A grey frame and ``n`` tracked faces with probabilities, labels and smoothed values."""
    rng = np.random.default_rng(index)
    probs = rng.dirichlet(np.ones(len(CLASSES)), n).astype(np.float32)
    boxes = np.array([[40 + 150 * k, 50, 100, 100] for k in range(n)], np.float32)
    faces = Faces(boxes, np.full(n, 0.9), np.zeros((n, 2, 2)), np.arange(n), probs=probs, smoothed=probs,
                  labels=probs.argmax(1))
    return Frame(index, index / fps, np.full((240, 320, 3), 80, np.uint8)), faces


def read_rows(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_csv_header_and_rows_are_on_disk_while_running(tmp_path: Path) -> None:
    path = tmp_path / "faces.csv"
    with CsvSink(path, CLASSES) as sink:
        partial = partial_name(path)  # the rows stream here, and the file becomes ``path`` when the sink closes
        assert read_rows(partial) == [columns(CLASSES)] and not path.exists()
        sink.write(*frame_with_faces(0))
        rows = read_rows(partial)  # read before closing: already written
        assert len(rows) == 3
    assert read_rows(path) == rows and not partial.exists()
    assert rows[0] == ["frame", "timestamp_s", "face_id", "x", "y", "w", "h", "det_score", "yaw", "pitch", "roll",
                       "quality", "label",
                       *[f"p_{c}" for c in CLASSES], *[f"s_{c}" for c in CLASSES]]
    first = dict(zip(rows[0], rows[1]))
    assert first["frame"] == "0" and first["face_id"] == "0" and first["label"] in CLASSES
    assert abs(sum(float(first[f"p_{c}"]) for c in CLASSES) - 1) < 1e-3


def test_csv_stays_valid_after_an_error_mid_stream(tmp_path: Path) -> None:
    path = tmp_path / "faces.csv"
    with pytest.raises(RuntimeError):
        with CsvSink(path, CLASSES) as sink:
            for i in range(5):
                sink.write(*frame_with_faces(i))
            raise RuntimeError("the run broke here")
    rows = read_rows(path)
    assert len(rows) == 1 + 5 * 2 and all(len(r) == len(rows[0]) for r in rows)


def test_outputs_in_a_missing_folder_are_refused_up_front(tmp_path: Path) -> None:
    for make in (lambda p: CsvSink(p, CLASSES), lambda p: VideoSink(p, 25.0), lambda p: Summary(CLASSES, p)):
        with pytest.raises(SinkError, match="does not exist"):
            make(tmp_path / "missing" / "out.mp4")


def test_video_sink_writes_every_frame(tmp_path: Path) -> None:
    path = tmp_path / "out.mp4"
    with VideoSink(path, 25.0) as sink:
        for i in range(12):
            sink.write(*frame_with_faces(i))
    cap = cv2.VideoCapture(str(path))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 12
    assert (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (320, 240)


def test_summary_table_json_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with Summary(CLASSES, tmp_path / "s.json", tmp_path / "p.png") as summary:
        for i in range(50):
            frame, faces = frame_with_faces(i, n=2 if i < 25 else 1)
            faces.labels[:] = CLASSES.index("happy") if i % 5 else CLASSES.index("sad")
            summary.write(frame, faces)
    report = json.loads((tmp_path / "s.json").read_text())
    assert [f["face_id"] for f in report["faces"]] == [0, 1]
    face0, face1 = report["faces"]
    assert face0["seconds"] == pytest.approx(50 / 25.0) and face1["seconds"] == pytest.approx(25 / 25.0)
    assert face0["shares"]["happy"] == pytest.approx(0.8) and face0["dominant"] == "happy"
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    out = capsys.readouterr().out
    assert "50 frames, 2 face(s)" in out and "80%" in out


def test_annotate_draws_at_the_border_and_without_probabilities() -> None:
    frame, faces = frame_with_faces(0, n=2)
    faces.boxes[1] = [290, 200, 60, 60]  # partly outside the image
    before = frame.image.copy()
    out = annotate(frame.image, faces, CLASSES, fps=30.0)
    assert out is frame.image and (out != before).any()
    bare = Faces(faces.boxes, faces.scores, faces.eyes)
    annotate(before, bare, CLASSES)


def test_a_window_without_display_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(SinkError, match="no display"):
        Window()
