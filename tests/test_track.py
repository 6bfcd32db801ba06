"""The tracker on synthetic motion (crossing, misses) and on a real clip."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from emocam.detect import FaceDetector
from emocam.faces import Faces
from emocam.sources import open_source
from emocam.track import Tracker


def faces_at(*boxes: tuple[float, float, float, float]) -> Faces:
    """Faces with the given x, y, w, h boxes (eyes and scores do not matter to the tracker)."""
    return Faces(np.array(boxes, np.float32).reshape(-1, 4), np.ones(len(boxes)), np.zeros((len(boxes), 2, 2)))


def test_crossing_faces_keep_their_ids_through_a_miss() -> None:
    tracker, fps = Tracker(), 30.0
    ids: dict[str, set] = {"a": set(), "b": set()}
    for i in range(60):
        t = i / fps
        a = (100 + 10 * i, 200, 80, 80)  # moving right
        b = (690 - 10 * i, 215, 80, 80)  # moving left, crossing a around frame 30
        if 27 <= i <= 32:
            continue  # the detector loses both while they overlap
        order = (a, b) if i % 2 else (b, a)
        ids_now = tracker.update(faces_at(*order), t).track_ids
        ida, idb = (ids_now[0], ids_now[1]) if i % 2 else (ids_now[1], ids_now[0])
        ids["a"].add(int(ida))
        ids["b"].add(int(idb))
    assert len(ids["a"]) == 1 and len(ids["b"]) == 1 and ids["a"] != ids["b"]


def test_a_face_gone_longer_than_max_age_comes_back_with_a_new_id() -> None:
    tracker = Tracker(max_age_s=0.5)
    assert tracker.update(faces_at((10, 10, 50, 50)), 0.0).track_ids.tolist() == [0]
    assert tracker.update(faces_at((12, 10, 50, 50)), 0.4).track_ids.tolist() == [0]
    assert tracker.update(faces_at((12, 10, 50, 50)), 1.0).track_ids.tolist() == [1]


def test_new_faces_get_new_ids_and_reset_restarts_them() -> None:
    tracker = Tracker()
    assert tracker.update(faces_at((10, 10, 50, 50)), 0.0).track_ids.tolist() == [0]
    got = tracker.update(faces_at((300, 10, 50, 50), (11, 10, 50, 50)), 0.04).track_ids.tolist()
    assert got == [1, 0]
    assert len(tracker.update(Faces.empty(), 0.08)) == 0
    tracker.reset()
    assert len(tracker) == 0
    assert tracker.update(faces_at((300, 10, 50, 50)), 0.1).track_ids.tolist() == [0]


def test_state_stays_bounded() -> None:
    tracker = Tracker(max_tracks=8)
    for i in range(50):
        tracker.update(faces_at(*[(100 * k + 1000 * i, 0, 20, 20) for k in range(5)]), i * 0.01)
        assert len(tracker) <= 8


def test_one_id_over_the_whole_real_clip(shared: Path) -> None:
    tracker, seen = Tracker(), set()
    with FaceDetector() as detector, open_source(shared / "videos" / "WolfgangLanger_Pexels.mp4") as source:
        for frame in source:
            seen.update(tracker.update(detector(frame.image), frame.timestamp_s).track_ids.tolist())
    assert seen == {0}
