"""The pipeline end to end on real clips with the fixture model."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from realtime.align import to_tensor
from realtime.detect import FaceDetector
from realtime.engines import open_backend
from realtime.pipeline import STAGES, Pipeline, Timings
from realtime.sinks import CsvSink, Sink
from realtime.sources import Frame, SourceError, open_source


@pytest.fixture(scope="module")
def detector():
    with FaceDetector() as d:
        yield d


def test_a_clip_runs_through_every_stage(shared: Path, tiny_model: Path, detector: FaceDetector, tmp_path: Path) -> None:
    backend = open_backend(tiny_model)
    pipeline = Pipeline(detector, backend)
    with open_source(shared / "videos" / "single_face.mp4") as source, CsvSink(tmp_path / "f.csv", pipeline.classes) as sink:
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


def test_a_sink_can_stop_the_run(shared: Path, tiny_model: Path, detector: FaceDetector) -> None:
    stopper = StopAfter(10)
    with open_source(shared / "videos" / "WolfgangLanger_Pexels.mp4") as source:
        timings = Pipeline(detector, open_backend(tiny_model)).run(source, [stopper])
    assert timings.frames == 10 and stopper.seen == 10


def test_a_source_failing_mid_run_raises_after_the_frames_it_gave(shared: Path, tiny_model: Path,
                                                                   detector: FaceDetector, tmp_path: Path) -> None:
    pipeline = Pipeline(detector, open_backend(tiny_model))
    with pytest.raises(SourceError, match="disconnected"):
        with open_source(shared / "videos" / "single_face.mp4", live=True) as source, \
                CsvSink(tmp_path / "f.csv", pipeline.classes) as sink:
            pipeline.run(source, [sink])
    with open(tmp_path / "f.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert len(rows) > 1 and all(len(r) == len(rows[0]) for r in rows)
