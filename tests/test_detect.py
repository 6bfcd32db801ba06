"""The detector on real clips and photos."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from emocam.detect import PROBE_EVERY, FaceDetector, nms
from emocam.sources import open_source


def face_counts(video: Path, detector: FaceDetector) -> np.ndarray:
    """Number of faces found in each frame of ``video``."""
    with open_source(video) as source:
        return np.array([len(detector(frame.image)) for frame in source])


@pytest.mark.parametrize("name", ["WolfgangLanger_Pexels.mp4", "single_face.mp4"])
def test_faces_found_in_nearly_every_frame(shared: Path, name: str) -> None:
    with FaceDetector() as detector:
        counts = face_counts(shared / "videos" / name, detector)
    assert (counts > 0).mean() >= 0.95
    assert counts.max() == 1


def test_no_face_in_a_clip_without_faces(shared: Path) -> None:
    with FaceDetector() as detector:
        counts = face_counts(shared / "videos" / "no_face.mp4", detector)
    assert len(counts) > 80 and counts.sum() == 0


def test_video_frames_run_the_full_range_where_it_adds_faces(shared: Path) -> None:
    """With both ranges, a video's frames run the full range on its first frame, every PROBE_EVERY-th frame and,
    once it found faces the short range misses, on every frame while they are there: a group that comes into view
    after a close face is found at the next probe and kept; a still image always runs both ranges."""
    close = cv2.imread(str(shared / "images" / "single_face.jpg"))
    group = cv2.imread(str(shared / "images" / "multi_face.jpg"))  # five small faces the short range misses at 0.7
    frames = [close] * 20 + [group] * 40
    with FaceDetector("both", 0.5) as detector:
        counts = [len(detector(frame, still=False, min_score=0.7)) for frame in frames]
        assert len(detector(group, min_score=0.7)) == 5
        detector.reset()
        assert len(detector(group, still=False, min_score=0.7)) == 5  # a new video's first frame runs both
    assert counts[:20] == [1] * 20
    probe = 2 * PROBE_EVERY  # the first probe after the group comes into view at frame 20
    assert counts[20:probe] == [0] * (probe - 20) and counts[probe:] == [5] * (60 - probe)


@pytest.mark.parametrize("range", ["full", "both"])
def test_several_faces_in_a_group_photo(shared: Path, range: str) -> None:
    image = cv2.imread(str(shared / "images" / "multi_face.jpg"))
    with FaceDetector(range) as detector:
        faces = detector(image)
    assert len(faces) == 5  # five people, each boxed once even when both models see them
    assert (faces.eyes[:, 0, 0] < faces.eyes[:, 1, 0]).all()  # image-left eye first
    inside = (faces.eyes >= 0).all() and (faces.eyes[..., 0] < image.shape[1]).all()
    assert inside


def test_nms_drops_a_box_nested_in_a_better_one() -> None:
    boxes = np.array([[100, 100, 100, 100], [80, 70, 160, 160], [400, 100, 100, 100]], np.float32)
    assert nms(boxes, np.array([0.9, 0.6, 0.8])).tolist() == [0, 2]


def test_unknown_range_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="short, full, both"):
        FaceDetector("far")
