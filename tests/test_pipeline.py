"""The pipeline end to end on real clips with the fixture model."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from emocam.align import to_tensor
from emocam.detect import FaceDetector
from emocam.faces import Frame
from emocam.backends import Backend, open_backend
from emocam.pipeline import STAGES, Pipeline, Timings
from emocam.sinks import CsvSink, Sink
from emocam.sources import SourceError, open_source


@pytest.fixture(scope="module")
def detector():
    with FaceDetector() as d:
        yield d


def test_a_clip_runs_through_every_stage(clip: Path, tiny_model: Path, detector: FaceDetector, tmp_path: Path) -> None:
    backend = open_backend(tiny_model)
    pipeline = Pipeline(detector, backend)
    with open_source(clip) as source, CsvSink(tmp_path / "f.csv", pipeline.classes) as sink:
        timings = pipeline.run(source, [sink])
    assert timings.frames == 72 and timings.faces == 72
    assert set(timings.seconds) == set(STAGES) and all(v > 0 for v in timings.seconds.values())
    assert timings.fps > 0 and timings.to_dict()["ms_per_frame"].keys() == set(STAGES)
    with open(tmp_path / "f.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["frame"]) for r in rows] == list(range(72)) and {r["face_id"] for r in rows} == {"0"}


def test_all_faces_of_a_frame_go_through_the_model_as_one_batch(shared: Path, tiny_model: Path) -> None:
    backend = open_backend(tiny_model)
    image = cv2.imread(str(shared / "images" / "multi_face.jpg"))
    with FaceDetector("full") as detector:
        pipeline = Pipeline(detector, backend)
        faces = pipeline.process(Frame(0, 0.0, image), pipeline.detect(image), Timings())
    assert len(faces) == 5 and faces.crops.shape == (5, 48, 48) and faces.probs.shape == (5, 7)
    assert sorted(faces.track_ids.tolist()) == [0, 1, 2, 3, 4]
    one_by_one = np.concatenate([backend.predict(to_tensor(c[None], backend.contract.pre)) for c in faces.crops])
    np.testing.assert_allclose(faces.probs, one_by_one, atol=1e-5)
    np.testing.assert_allclose(faces.probs.sum(1), 1, atol=1e-5)


class StopAfter(Sink):
    """Asks the pipeline to stop after ``n`` frames, as a window's q key does."""

    def __init__(self, n: int) -> None:
        self.n, self.seen = n, 0

    def write(self, frame, faces) -> None:
        self.seen += 1
        self.stop = self.seen >= self.n


@pytest.mark.parametrize("batch_frames", [1, 8])
def test_a_sink_can_stop_the_run(shared: Path, tiny_model: Path, detector: FaceDetector, batch_frames: int) -> None:
    stopper = StopAfter(10)
    with open_source(shared / "videos" / "WolfgangLanger_Pexels.mp4") as source:
        timings = Pipeline(detector, open_backend(tiny_model)).run(source, [stopper], batch_frames=batch_frames)
    assert timings.frames == 10 and stopper.seen == 10


class Record(Sink):
    """Keeps what each frame came out with: its index, face ids, raw and smoothed probabilities."""

    def __init__(self) -> None:
        self.frames: list[tuple] = []

    def write(self, frame, faces) -> None:
        self.frames.append((frame.index, faces.track_ids.tolist(), faces.probs.copy(), faces.smoothed.copy()))


class BatchSizes:
    """The real backend, noting how many faces each model call gets."""

    def __init__(self, backend: Backend) -> None:
        self.backend, self.name, self.contract, self.sizes = backend, backend.name, backend.contract, []

    def predict(self, batch: np.ndarray) -> np.ndarray:
        self.sizes.append(len(batch))
        return self.backend.predict(batch)


def test_batching_the_frames_of_a_file_changes_no_answer(clip: Path, tiny_model: Path, detector: FaceDetector,
                                                          tmp_path: Path) -> None:
    runs = {}
    for n in (1, 8):
        backend = BatchSizes(open_backend(tiny_model))
        pipeline, record = Pipeline(detector, backend), Record()
        with open_source(clip) as source, \
                CsvSink(tmp_path / f"{n}.csv", pipeline.classes) as sink:
            pipeline.run(source, [sink, record], batch_frames=n)
        with open(tmp_path / f"{n}.csv", newline="") as f:
            runs[n] = backend.sizes, record.frames, list(csv.DictReader(f))
    (sizes_1, frames_1, rows_1), (sizes_8, frames_8, rows_8) = runs[1], runs[8]
    assert sizes_1 == [1] * 72 and sizes_8 == [8] * 9  # one face a frame: 72 calls, then 9
    assert [f[:2] for f in frames_8] == [f[:2] for f in frames_1] == [(i, [0]) for i in range(72)]
    for (_, _, probs_1, smoothed_1), (_, _, probs_8, smoothed_8) in zip(frames_1, frames_8):
        np.testing.assert_allclose(probs_8, probs_1, atol=1e-5)
        np.testing.assert_allclose(smoothed_8, smoothed_1, atol=1e-5)
    assert len(rows_8) == len(rows_1) == 72
    for row_1, row_8 in zip(rows_1, rows_8):
        for column, value in row_1.items():
            if column[:2] in ("p_", "s_"):  # written to 4 decimals: equal up to one rounding step
                assert abs(float(row_8[column]) - float(value)) <= 1e-4, column
            else:
                assert row_8[column] == value, column


def test_a_live_source_sends_one_frame_at_a_time(clip: Path, tiny_model: Path, detector: FaceDetector) -> None:
    backend = BatchSizes(open_backend(tiny_model))
    with pytest.raises(SourceError, match="disconnected"):  # a file read as a stream ends as a lost stream
        with open_source(clip, live=True) as source:
            Pipeline(detector, backend).run(source, batch_frames=8)
    assert backend.sizes and set(backend.sizes) == {1}


def test_a_source_failing_mid_run_raises_after_the_frames_it_gave(clip: Path, tiny_model: Path,
                                                                   detector: FaceDetector, tmp_path: Path) -> None:
    pipeline = Pipeline(detector, open_backend(tiny_model))
    with pytest.raises(SourceError, match="disconnected"):
        with open_source(clip, live=True) as source, \
                CsvSink(tmp_path / "f.csv", pipeline.classes) as sink:
            pipeline.run(source, [sink])
    with open(tmp_path / "f.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert len(rows) > 1 and all(len(r) == len(rows[0]) for r in rows)
