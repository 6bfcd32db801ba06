"""Landmarks, head pose and the quality gate on real photos, and what the gate does downstream."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from emocam.detect import FaceDetector, enlarge
from emocam.faces import Faces
from emocam.gate import Gate
from emocam.landmarks import FaceMesh, Landmarker, drawn_face, keypoint_pose
from emocam.smooth import Smoother


@pytest.fixture(scope="module")
def find(shared: Path):
    """The live chain on one image: detector, landmarks, gate (as Pipeline.detect runs them)."""
    landmarker, gate = Landmarker(), Gate()
    detectors = {}

    def run(name: str, detector: str = "both", min_score: float = 0.5) -> Faces:
        if (detector, min_score) not in detectors:
            detectors[detector, min_score] = FaceDetector(detector, min_score)
        image = enlarge(cv2.imread(str(shared / name)))
        return gate(landmarker(image, detectors[detector, min_score](image)))

    yield run
    landmarker.close()
    for d in detectors.values():
        d.close()


def test_frontal_faces_pass_without_face_mesh(find) -> None:
    faces = find("images/single_face.jpg", "short", 0.7)
    assert len(faces) == 1 and list(faces.quality) == ["ok"]
    assert (faces.landmarks == "detector").all()  # BlazeFace's keypoints are trusted on a frontal face: no extra cost
    assert abs(faces.pose[0, 0]) < 20 and abs(faces.pose[0, 1]) < 25


def test_every_face_of_a_group_photo_passes(find) -> None:
    faces = find("images/multi_face.jpg", "full")
    assert len(faces) >= 4
    assert faces.passed.all(), list(zip(faces.quality, faces.pose.round(1).tolist()))


@pytest.mark.parametrize("name", ["wild/val/sad/Jayamadhuri_91.jpg", "wild/val/disgust/Jayamadhuri_117.jpg"])
def test_turned_faces_get_face_mesh_and_no_label(find, name: str) -> None:
    faces = find(name)
    k = int(np.argmax(faces.boxes[:, 2] * faces.boxes[:, 3]))
    assert faces.landmarks[k] == "mesh"
    assert faces.quality[k] == "turned" and abs(faces.pose[k, 0]) > Gate().max_yaw


def test_collapsed_eye_keypoints_are_replaced_by_face_mesh_eyes(shared: Path) -> None:
    image = cv2.imread(str(shared / "images" / "single_face.jpg"))
    with FaceDetector("short") as detect:
        good = detect(image)
        broken = detect(image)
    # What BlazeFace does on a turned face: both eye keypoints on one eye.
    broken.keypoints[0, 1] = broken.keypoints[0, 0] + 2
    broken.eyes[0] = broken.keypoints[0, :2]
    landmarker = Landmarker()
    try:
        fixed = landmarker(image, broken)
    finally:
        landmarker.close()
    assert fixed.landmarks[0] == "mesh"
    e2e = np.linalg.norm(fixed.eyes[0, 1] - fixed.eyes[0, 0])
    assert 0.3 * good.boxes[0, 2] < e2e < 0.6 * good.boxes[0, 2]
    # Face Mesh's eye centres (eye-corner midpoints) lie within a few pixels of BlazeFace's on this frontal face.
    assert np.abs(fixed.eyes[0] - good.eyes[0]).max() < 0.1 * e2e
    assert Gate().verdicts(fixed)[0] == "ok"


def test_keypoint_pose_turns_sign_in_a_mirror(shared: Path) -> None:
    image = cv2.imread(str(shared / "images" / "single_face.jpg"))
    with FaceDetector("short") as detect:
        pose = keypoint_pose(detect(image).keypoints)[0]
        mirrored = keypoint_pose(detect(np.ascontiguousarray(image[:, ::-1])).keypoints)[0]
    assert np.sign(pose[0]) == -np.sign(mirrored[0]) and abs(pose[0] + mirrored[0]) < 6
    assert abs(pose[1] - mirrored[1]) < 3 and abs(pose[2] + mirrored[2]) < 3


def test_face_mesh_finds_the_warm_up_face() -> None:
    mesh = FaceMesh()
    try:
        found = mesh(*drawn_face())
    finally:
        mesh.close()
    assert found is not None
    eyes, pose = found
    np.testing.assert_allclose(eyes, [[75, 90], [125, 90]], atol=6)  # where the eyes were drawn
    assert abs(pose[0]) < 15 and abs(pose[2]) < 5


def test_the_gate_names_small_and_implausible_faces() -> None:
    box = np.array([[100, 100, 100, 100]], np.float32)
    frontal = np.array([[[130, 140], [170, 140]]], np.float32)
    faces = Faces(np.repeat(box, 4, 0), np.ones(4), np.repeat(frontal, 4, 0), pose=np.zeros((4, 3)))
    faces.eyes[1] = [[130, 140], [134, 140]]  # 4 px apart: too small to classify
    faces.eyes[2] += 200  # landmarks outside the box
    faces.pose[3] = [60, 0, 0]
    assert list(Gate().verdicts(faces)) == ["ok", "landmarks", "landmarks", "turned"]
    faces.boxes[1] = [128, 134, 8, 10]  # a tiny face whose eyes fit its box
    assert Gate().verdicts(faces)[1] == "small"
    faces.landmarks[0] = "box"  # eyes placed from the box: plausible, but nothing found them
    assert Gate().verdicts(faces)[0] == "landmarks"


def test_a_doubtful_face_without_landmarks_keeps_box_eyes_and_is_gated() -> None:
    blank = np.full((240, 240, 3), 128, np.uint8)  # a "face" Face Mesh cannot find
    keypoints = np.array([[[100, 100], [104, 100], [102, 120], [102, 140], [80, 100], [124, 100]]], np.float32)
    faces = Faces([[60, 60, 100, 100]], [0.9], keypoints[:, :2], keypoints=keypoints)
    with Landmarker() as landmarker:
        faces = Gate()(landmarker(blank, faces))
    assert faces.landmarks[0] == "box" and faces.quality[0] == "landmarks"
    assert np.allclose(faces.eyes[0], [[90, 100], [130, 100]])


def test_a_turned_face_that_face_mesh_misses_keeps_its_keypoints_and_a_label() -> None:
    """Face Mesh finds few dark or small turned faces; BlazeFace's eyes and pose hold on them unless the eyes collapsed
    onto one, so such a face is still cropped, posed and labelled."""
    blank = np.full((240, 240, 3), 128, np.uint8)  # Face Mesh finds nothing here
    keypoints = np.array([[[85, 100], [125, 100], [120, 120], [105, 140], [70, 100], [130, 100]]], np.float32)
    faces = Faces([[60, 60, 100, 100]], [0.9], keypoints[:, :2].copy(), keypoints=keypoints)
    with Landmarker() as landmarker:
        faces = Gate()(landmarker(blank, faces))
    assert faces.landmarks[0] == "detector" and faces.quality[0] == "ok"
    assert np.array_equal(faces.eyes[0], keypoints[0, :2]) and 30 < faces.pose[0, 0] < 40


def test_gated_faces_do_not_move_the_smoother() -> None:
    smoother = Smoother(tau_s=1.0, hysteresis=0.0)
    happy, sad = np.eye(7, dtype=np.float32)[[3, 4]]

    def step(t: float, probs: np.ndarray, quality: str) -> Faces:
        faces = Faces(np.zeros((1, 4)), np.ones(1), np.zeros((1, 2, 2)), np.array([7]), probs=probs[None],
                      quality=np.array([quality], object))
        return smoother.update(faces, t)

    step(0.0, happy, "ok")
    gated = step(0.1, sad, "turned")
    assert gated.labels[0] == -1 and np.isnan(gated.smoothed).all()
    assert np.array_equal(gated.probs[0], sad)  # the raw answer stays
    after = step(0.2, happy, "ok")
    # Unchanged by the gated frame: still purely happy, as if the sad frame had never come.
    assert after.labels[0] == 3 and after.smoothed[0, 3] == pytest.approx(1.0)


def test_a_gated_face_in_the_csv_keeps_its_raw_probabilities_and_says_why(tmp_path: Path) -> None:
    import csv

    from emocam.records import columns, records
    from emocam.faces import Frame
    from emocam.sinks import CsvSink

    classes = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
    probs = np.full((2, 7), 1 / 7, np.float32)
    faces = Faces(np.zeros((2, 4)), np.ones(2), np.zeros((2, 2, 2)), np.array([0, 1]), pose=[[5, 1, 0], [60, 2, 3]],
                  quality=np.array(["ok", "turned"], object), probs=probs)
    Smoother().update(faces, 0.0)
    path = tmp_path / "f.csv"
    with CsvSink(path, classes) as sink:
        sink.write(Frame(0, 0.0, np.zeros((4, 4, 3), np.uint8)), faces)
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == columns(classes) and {"yaw", "pitch", "roll", "quality"} <= set(rows[0])
    ok, gated = rows
    assert ok["quality"] == "ok" and ok["label"] and ok["s_happy"]
    assert gated["quality"] == "turned" and gated["yaw"] == "60.0"
    assert gated["label"] == "" and all(gated[f"s_{c}"] == "" for c in classes)
    assert all(float(gated[f"p_{c}"]) == pytest.approx(1 / 7, abs=1e-4) for c in classes)
    assert records(Frame(0, 0.0, None), faces, classes)[1]["label"] is None


def test_the_summary_counts_gated_seconds_apart() -> None:
    import io

    from emocam.faces import Frame
    from emocam.summary import Summary

    classes = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
    summary = Summary(classes, out=io.StringIO())
    for i in range(10):  # one face, happy for 6 frames, turned away for 4
        quality = "turned" if i >= 6 else "ok"
        faces = Faces(np.zeros((1, 4)), np.ones(1), np.zeros((1, 2, 2)), np.array([0]),
                      quality=np.array([quality], object), probs=np.eye(7, dtype=np.float32)[[3]])
        Smoother().update(faces, i * 0.1)
        summary.write(Frame(i, i * 0.1, None), faces)
    [face] = summary.report()["faces"]
    assert face["frames"] == 10 and face["uncertain_frames"] == 4
    assert face["uncertain_s"] == pytest.approx(0.4) and face["seconds"] == pytest.approx(1.0)
    assert face["shares"]["happy"] == 1.0 and face["dominant"] == "happy"


@pytest.fixture(scope="module")
def recognizer():
    """emocam.Recognizer with its defaults (the shipped model), as a user makes it."""
    from emocam import Recognizer

    with Recognizer() as rec:
        yield rec


@pytest.mark.parametrize("name, mesh", [("happy/Tony_Blair_0060.jpg", "mesh"),
                                        ("happy/Mahathir_Mohamad_0001.jpg", "detector"),
                                        ("sad/Jayamadhuri_171.jpg", "detector")])
def test_real_faces_turned_past_30_degrees_pass_the_gate_and_get_a_label(recognizer, shared: Path, name: str,
                                                                         mesh: str) -> None:
    """Through the defaults, faces of wild/val turned by 30-45 degrees are labelled, whether Face Mesh finds them or
    (the last two) not."""
    faces = recognizer(shared / "wild" / "val" / name)
    i = int(np.argmax(faces.boxes[:, 2] * faces.boxes[:, 3]))
    assert 30 < abs(faces.pose[i, 0]) < 45 and faces.landmarks[i] == mesh
    assert faces.passed[i] and faces.labels[i] >= 0
