"""Face detection with mediapipe's bundled BlazeFace models (short range, full range, or both merged)."""

from __future__ import annotations

import cv2
import numpy as np

from .faces import Faces, left_first

RANGES = ("short", "full", "both")
# The detector's own defaults (the "live" face reading): the short-range model, faces within 2 m; real faces score
# 0.84+ with it on our close-up clips, cloud shapes in no_face.mp4 up to 0.69.
RANGE = "short"
MIN_SCORE = 0.7


def box_intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise intersection areas of x, y, w, h boxes: (N, 4) x (M, 4) -> (N, M)."""
    ax2, ay2 = a[:, 0] + a[:, 2], a[:, 1] + a[:, 3]
    bx2, by2 = b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.clip(np.minimum(ax2[:, None], bx2[None]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(ay2[:, None], by2[None]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    return iw * ih


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of x, y, w, h boxes: (N, 4) x (M, 4) -> (N, M)."""
    inter = box_intersection(a, b)
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None] - inter
    return inter / np.maximum(union, 1e-9)


# BlazeFace finds faces of about 20% of the image side or more: smaller images are enlarged to this side.
MIN_SIDE = 192


def enlargement(shape: tuple[int, ...], side: int = MIN_SIDE) -> tuple[float, int]:
    """How ``enlarge`` maps an image of this shape: (scale, border), a point p going to p * scale + border."""
    h, w = shape[:2]
    return (1.0, 0) if min(h, w) >= side else (side / min(h, w), side // 4)


def enlarge(image: np.ndarray, side: int = MIN_SIDE) -> np.ndarray:
    """An image smaller than ``side`` pixels upsampled (bilinear) to it, with a replicated border of a quarter of it
    around, so that a tight face crop still looks like a face in a frame to the detector; larger ones as they are."""
    scale, pad = enlargement(image.shape, side)
    if pad == 0:
        return image
    h, w = image.shape[:2]
    big = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_LINEAR)
    return cv2.copyMakeBorder(big, pad, pad, pad, pad, cv2.BORDER_REPLICATE)


# With both ranges, the frames of a video run the full range only where it adds faces: on every PROBE_EVERY-th
# frame, and on every frame for FULL_HOLD frames after the full range found a face that the short range missed. A
# close face alone then costs the short range's time; a far face that comes into view is found within
# PROBE_EVERY frames and kept while it is there.
PROBE_EVERY = 15
FULL_HOLD = 30


class FaceDetector:
    """Every face in a BGR frame, with its box, score and the two eye centres from BlazeFace's keypoints."""

    def __init__(self, range: str = RANGE, min_score: float = MIN_SCORE) -> None:
        if range not in RANGES:
            raise ValueError(f"unknown detector range '{range}'; choose one of {', '.join(RANGES)}")
        import mediapipe as mp

        self.min_score = min_score
        selections = {"short": [0], "full": [1], "both": [0, 1]}[range]
        self._models = [mp.solutions.face_detection.FaceDetection(model_selection=s, min_detection_confidence=min_score)
                        for s in selections]
        self.reset()

    def reset(self) -> None:
        """Start a new video: its first frame runs both ranges."""
        self._frame = 0  # the next video frame's index, and the last one on which the full range runs regardless
        self._full_until = -1

    def __call__(self, frame: np.ndarray, still: bool = True, min_score: float | None = None) -> Faces:
        """Faces in a BGR uint8 frame: a still image, or (``still`` False) a frame of a video, for which both ranges
        run the full range only where it adds faces (PROBE_EVERY, FULL_HOLD). ``min_score`` (default: the
        detector's) is the lowest score kept; it cannot be lower than the detector's."""
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        least = self.min_score if min_score is None else max(min_score, self.min_score)
        found = self._detect(self._models[0], rgb, least)
        if len(self._models) == 1:
            return found
        if not still:
            index, self._frame = self._frame, self._frame + 1
            if index > self._full_until and index % PROBE_EVERY:
                return found
        far = self._detect(self._models[1], rgb, least)
        both = Faces(np.concatenate([found.boxes, far.boxes]), np.concatenate([found.scores, far.scores]),
                     np.concatenate([found.eyes, far.eyes]), keypoints=np.concatenate([found.keypoints, far.keypoints]))
        both = both.subset(nms(both.boxes, both.scores))
        if not still and len(both) > len(found):
            self._full_until = index + FULL_HOLD
        return both

    @staticmethod
    def _detect(model, rgb: np.ndarray, min_score: float) -> Faces:
        """The faces one BlazeFace model finds in an RGB frame, at ``min_score`` or above."""
        h, w = rgb.shape[:2]
        boxes, scores, keypoints = [], [], []
        for det in model.process(rgb).detections or ():
            rb = det.location_data.relative_bounding_box
            boxes.append((rb.xmin * w, rb.ymin * h, rb.width * w, rb.height * h))
            scores.append(det.score[0])
            keypoints.append([(p.x * w, p.y * h) for p in det.location_data.relative_keypoints])
        keypoints = np.array(keypoints, np.float32).reshape(-1, 6, 2)
        faces = Faces(np.array(boxes), np.array(scores), left_first(keypoints[:, :2]), keypoints=keypoints)
        # mediapipe's own min_detection_confidence does not filter these graphs, so filter here.
        return faces.subset(faces.scores >= min_score)

    def close(self) -> None:
        for model in self._models:
            model.close()

    def __enter__(self) -> "FaceDetector":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float = 0.4, inside: float = 0.7) -> np.ndarray:
    """Indices of the boxes kept by greedy non-maximum suppression, best first.

    Besides IoU, a box whose area lies mostly (``inside``) within a kept box, or the other way round, is dropped:
    the short- and full-range models box the same face at quite different sizes.
    """
    order = np.argsort(-scores)
    area = boxes[:, 2] * boxes[:, 3]
    keep: list[int] = []
    for i in order:
        if keep:
            inter = box_intersection(boxes[i:i + 1], boxes[keep])[0]
            union = area[i] + area[keep] - inter
            smaller = np.maximum(np.minimum(area[i], area[keep]), 1e-9)
            if (inter / np.maximum(union, 1e-9) >= iou).any() or (inter / smaller >= inside).any():
                continue
        keep.append(int(i))
    return np.array(keep, np.int64)
