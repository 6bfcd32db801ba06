"""The overlay stays legible with many faces: labels on a solid background, full class names, colours told apart,
and per-class panels that cover no face."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import cv2
import numpy as np
import pytest

import emocam
from conftest import CLASSES
from emocam.faces import Faces
from emocam.overlay import GATED, PALETTE, PANEL, Overlay, layout


def overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def face_rects(faces: Faces) -> list[tuple[int, int, int, int]]:
    return [(int(round(x)), int(round(y)), int(round(x + w)), int(round(y + h))) for x, y, w, h in faces.boxes.tolist()]


def assert_legible(placements, faces: Faces, shape: tuple[int, ...]) -> None:
    """No panel covers a face, no two labels or panels cover each other, all lie inside the image."""
    height, width = shape[:2]
    rects = face_rects(faces)
    drawn = [p.label for p in placements] + [p.panel for p in placements if p.panel is not None]
    for r in drawn:
        assert 0 <= r[0] < r[2] <= width and 0 <= r[1] < r[3] <= height, r
    for p in placements:
        if p.panel is not None:
            assert not any(overlap(p.panel, f) for f in rects), (p.face, p.panel)
    for a, b in combinations(drawn, 2):
        assert not overlap(a, b), (a, b)


@pytest.fixture(scope="module")
def group(shared: Path, tiny_model: Path) -> tuple[np.ndarray, Faces]:
    """The five-face photo and its faces, found by the far-range detector and labelled by the tiny model."""
    image = cv2.imread(str(shared / "images" / "multi_face.jpg"))
    with emocam.Recognizer(tiny_model, detector="full", backend="onnxruntime") as rec:
        return image, rec(image)


def test_panels_cover_no_face_in_the_group_photo(group) -> None:
    image, faces = group
    placements = layout(faces, CLASSES, image.shape)
    assert len(faces) == 5 and sorted(p.face for p in placements) == list(range(5))
    assert_legible(placements, faces, image.shape)
    # Each face has a panel: every class, full names, where there is room; else its likeliest three, likeliest first.
    for p in placements:
        names = [name for name, _ in p.rows]
        probs = [prob for _, prob in p.rows]
        assert p.panel is not None and (names == list(CLASSES) or (len(names) == 3 and probs == sorted(probs)[::-1]))
    assert sum(len(p.rows) == len(CLASSES) for p in placements) >= 4


def test_a_crowd_gets_compact_panels_or_none_but_never_covers_a_face() -> None:
    # 4 x 3 faces of 100 px with 30 px between them: no room for a panel of seven classes anywhere.
    boxes = np.array([[20 + 130 * c, 20 + 130 * r, 100, 100] for r in range(3) for c in range(4)], np.float32)
    n = len(boxes)
    probs = np.random.default_rng(0).dirichlet(np.ones(7), n).astype(np.float32)
    faces = Faces(boxes, np.full(n, 0.9), np.zeros((n, 2, 2)), np.arange(n), probs=probs, smoothed=probs,
                  labels=probs.argmax(1))
    shape = (420, 560, 3)
    placements = layout(faces, CLASSES, shape)
    assert_legible(placements, faces, shape)
    assert all(p.panel is None or len(p.rows) < len(CLASSES) for p in placements)


def test_labels_and_panels_sit_on_a_solid_background(group) -> None:
    image, faces = group
    drawn = emocam.annotate(image.copy(), faces, CLASSES)
    for p in layout(faces, CLASSES, image.shape):
        x0, y0, x1, y1 = p.label
        pixels = drawn[y0:y1, x0:x1].reshape(-1, 3)
        background = (pixels == np.array(p.colour, np.uint8)).all(axis=1).mean()
        assert background > 0.5, (p.face, background)  # the label's colour fills its box; the photo is gone there
        if p.panel is not None:  # the panel is drawn on its own solid colour too
            x0, y0, x1, y1 = p.panel
            assert (drawn[y0 + 2:y1 - 2, x0 + 2:x1 - 2].reshape(-1, 3) == PANEL).all(axis=1).mean() > 0.5


def test_colours_are_told_apart() -> None:
    lab = cv2.cvtColor(np.array([list(PALETTE) + [GATED]], np.uint8), cv2.COLOR_BGR2LAB)[0].astype(float)
    lab[:, 0] *= 100 / 255  # OpenCV scales L to 0-255
    lab[:, 1:] -= 128
    distances = [np.linalg.norm(a - b) for a, b in combinations(lab, 2)]
    assert len(PALETTE) >= 8 and min(distances) > 20


def panned(photo: Path, path: Path, frames: int = 90, size: tuple[int, int] = (640, 360)) -> Path:
    """A clip that pans and zooms slowly over ``photo``, so that its faces move as in footage."""
    image = cv2.imread(str(photo))
    h, w = image.shape[:2]
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, size)
    for i in range(frames):
        s = 1.0 + 0.15 * i / (frames - 1)
        cw, ch = w / s, h / s
        x0, y0 = (w - cw) * i / (frames - 1), (h - ch) * 0.5
        m = np.array([[size[0] / cw, 0, -x0 * size[0] / cw], [0, size[1] / ch, -y0 * size[1] / ch]])
        out.write(cv2.warpAffine(image, m, size, flags=cv2.INTER_LINEAR))
    out.release()
    return path


def test_panels_stay_put_from_frame_to_frame(shared: Path, tiny_model: Path, tmp_path: Path) -> None:
    clip = panned(shared / "images" / "multi_face.jpg", tmp_path / "group.mp4")
    with emocam.Recognizer(tiny_model, detector="full", backend="onnxruntime") as rec:
        overlay, moves = Overlay(rec.classes), {"each frame anew": 0, "overlay": 0}
        last: dict[str, dict] = {"each frame anew": {}, "overlay": {}}
        for frame, faces in rec.stream(clip):
            fresh = layout(faces, rec.classes, frame.image.shape)
            kept = layout(faces, rec.classes, frame.image.shape, overlay._spots)
            overlay(frame.image, faces)
            for name, placements in (("each frame anew", fresh), ("overlay", kept)):
                spots = {int(faces.track_ids[p.face]): p.spot for p in placements}
                moves[name] += sum(t in last[name] and last[name][t] != s for t, s in spots.items())
                last[name] = spots
                assert_legible(placements, faces, frame.image.shape)
    assert moves["each frame anew"] > 5 and moves["overlay"] <= moves["each frame anew"] / 3, moves
