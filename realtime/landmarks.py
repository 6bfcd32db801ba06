"""Landmarks that hold on turned faces, and head pose: the landmarks stage of the pipeline.

BlazeFace gives six keypoints per face. On a frontal face its eye points are good enough for the eye-distance crop,
but on a turned face they collapse onto one eye and the crop becomes a magnified patch of cheek. So each face's
keypoints are checked first (cheap); only a face whose geometry is in doubt goes through mediapipe's Face Mesh,
run on the face's box, which gives eye corners and a 3-D head pose that hold on turned faces.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .faces import Faces, left_first

# BlazeFace's keypoints, in its order (the subject's right eye is the image-left one on a frontal face).
RIGHT_EYE, LEFT_EYE, NOSE, MOUTH = 0, 1, 2, 3
# Face Mesh landmark indices: eye corners (outer, inner) of each eye, the cheek edges and forehead / chin.
MESH_EYES = ((33, 133), (362, 263))
MESH_CHEEKS = (234, 454)
MESH_FOREHEAD_CHIN = (10, 152)

# How the keypoint-based pose is read (``keypoint_pose``): the nose tip's offset from the eye midpoint along the eye
# line is KY * tan(yaw) eye distances, and its depth along the eye-to-mouth axis is Q0 - KP * tan(pitch).
# Fitted against Face Mesh's pose on FER-2013 faces by `emotrain measure` (docs/results/framing.json).
KY, Q0, KP = 0.523, 0.469, 0.416


def keypoint_pose(keypoints: np.ndarray) -> np.ndarray:
    """(N, 6, 2) BlazeFace keypoints -> (N, 3) yaw, pitch, roll in degrees, read from eyes, nose and mouth.

    yaw > 0: the face turns towards the image's right; pitch > 0: it looks up; roll: the eye line's angle."""
    kp = np.asarray(keypoints, np.float64).reshape(-1, 6, 2)
    eyes = left_first(kp[:, [RIGHT_EYE, LEFT_EYE]])
    along = eyes[:, 1] - eyes[:, 0]
    e2e = np.maximum(np.linalg.norm(along, axis=1), 1e-6)
    along /= e2e[:, None]
    down = np.stack([-along[:, 1], along[:, 0]], 1)  # the eye line turned 90 degrees, towards the mouth
    mid = eyes.mean(1)
    nose, mouth = kp[:, NOSE] - mid, kp[:, MOUTH] - mid
    yaw = np.degrees(np.arctan((nose * along).sum(1) / e2e / KY))
    depth = (nose * down).sum(1) / np.maximum((mouth * down).sum(1), 1e-6)
    pitch = np.degrees(np.arctan((Q0 - depth) / KP))
    roll = np.degrees(np.arctan2(along[:, 1], along[:, 0]))
    return np.stack([yaw, pitch, roll], 1).astype(np.float32)


@dataclass(frozen=True)
class Doubt:
    """When BlazeFace's keypoints are not trusted: a face that seems turned beyond ``yaw`` or ``pitch`` degrees,
    or whose eyes are closer than ``e2e_box`` box widths (they collapse onto one eye on turned faces)."""

    yaw: float = 20.0
    pitch: float = 25.0
    e2e_box: float = 0.3

    def __call__(self, faces: Faces) -> np.ndarray:
        """(N,) bool: the faces whose landmarks should come from Face Mesh."""
        return (np.abs(faces.pose[:, 0]) > self.yaw) | (np.abs(faces.pose[:, 1]) > self.pitch) | self.collapsed(faces)

    def collapsed(self, faces: Faces) -> np.ndarray:
        """(N,) bool: the faces whose eye keypoints are too close to be two eyes."""
        return np.linalg.norm(faces.eyes[:, 1] - faces.eyes[:, 0], axis=1) < self.e2e_box * faces.boxes[:, 2]


class FaceMesh:
    """mediapipe's Face Mesh run on one face's box: eye centres and head pose, or None where it finds no face."""

    SIDE = 192  # the square crop given to Face Mesh: the face's box, enlarged by CONTEXT
    CONTEXT = 1.6

    def __init__(self) -> None:
        import mediapipe as mp

        self._mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1,
                                                     min_detection_confidence=0.3)

    def __call__(self, image: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """(eyes (2, 2) in image pixels, image-left first; pose (3,) yaw, pitch, roll in degrees) for one face."""
        x, y, w, h = (float(v) for v in box)
        scale = self.SIDE / max(self.CONTEXT * max(w, h), 1.0)
        shift = np.array([self.SIDE / 2 - (x + w / 2) * scale, self.SIDE / 2 - (y + h / 2) * scale])
        m = np.array([[scale, 0, shift[0]], [0, scale, shift[1]]])
        patch = cv2.warpAffine(image, m, (self.SIDE, self.SIDE), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REPLICATE)
        rgb = cv2.cvtColor(patch, cv2.COLOR_GRAY2RGB if patch.ndim == 2 else cv2.COLOR_BGR2RGB)
        found = self._mesh.process(rgb).multi_face_landmarks
        if not found:
            return None
        points = found[0].landmark
        point = lambda i: np.array((points[i].x, points[i].y, points[i].z)) * self.SIDE  # noqa: E731
        eyes = np.array([(point(outer)[:2] + point(inner)[:2]) / 2 for outer, inner in MESH_EYES])
        eyes = (eyes[np.argsort(eyes[:, 0])] - shift) / scale
        across = point(MESH_CHEEKS[1]) - point(MESH_CHEEKS[0])
        vertical = point(MESH_FOREHEAD_CHIN[1]) - point(MESH_FOREHEAD_CHIN[0])
        return eyes.astype(np.float32), mesh_pose(across, vertical, eyes)

    def close(self) -> None:
        self._mesh.close()


def mesh_pose(across: np.ndarray, vertical: np.ndarray, eyes: np.ndarray) -> np.ndarray:
    """Yaw, pitch (from the depth of Face Mesh's cheek-to-cheek and forehead-to-chin vectors) and roll (the eye line),
    in degrees."""
    yaw = math.atan2(across[2], math.hypot(across[0], across[1]))
    pitch = math.atan2(-vertical[2], math.hypot(vertical[0], vertical[1]))
    d = eyes[1] - eyes[0]
    return np.degrees([yaw, pitch, math.atan2(d[1], d[0])]).astype(np.float32)


class Landmarker:
    """Fills ``faces.pose`` and, where BlazeFace's keypoints are in doubt, replaces the eyes by Face Mesh's
    (``faces.landmarks`` says which faces: "mesh"). Where Face Mesh finds nothing (most dark or small turned faces), a
    turned face keeps BlazeFace's eyes and pose, which hold on such faces; only eyes collapsed onto one are placed from
    the box ("box")."""

    def __init__(self, doubt: Doubt = Doubt()) -> None:
        self.doubt = doubt
        self._mesh: FaceMesh | None = None  # loaded by warmup() or on the first doubtful face

    def warmup(self) -> None:
        """Load Face Mesh and run it once on a face it finds, so that the first doubtful face of a stream neither
        stalls it nor brings mediapipe's log line about its first landmarks (the warm-up runs silenced)."""
        self._face_mesh()(*drawn_face())

    def _face_mesh(self) -> FaceMesh:
        if self._mesh is None:
            self._mesh = FaceMesh()
        return self._mesh

    def __call__(self, image: np.ndarray, faces: Faces) -> Faces:
        """The same faces with pose and trusted eye centres."""
        if len(faces) == 0:
            return faces
        if faces.keypoints is not None:
            faces.pose = keypoint_pose(faces.keypoints)
        doubtful = np.flatnonzero(self.doubt(faces))
        if len(doubtful) == 0:
            return faces
        collapsed = self.doubt.collapsed(faces) | (faces.keypoints is None)  # before Face Mesh replaces any eyes
        for i in doubtful:
            found = self._face_mesh()(image, faces.boxes[i])
            if found is not None:
                faces.landmarks[i] = "mesh"
                faces.eyes[i], faces.pose[i] = found
            elif collapsed[i]:
                faces.landmarks[i] = "box"
                faces.eyes[i] = box_eyes(faces.boxes[i])
        return faces

    def close(self) -> None:
        if self._mesh is not None:
            self._mesh.close()
            self._mesh = None

    def __enter__(self) -> "Landmarker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def drawn_face() -> tuple[np.ndarray, np.ndarray]:
    """A face drawn in a few strokes (oval, eyes, brows, nose, mouth) on a 200 px image, and its box: enough for Face
    Mesh to find its landmarks."""
    image = np.full((200, 200, 3), 200, np.uint8)
    cv2.ellipse(image, (100, 105), (60, 78), 0, 0, 360, (170, 190, 220), -1)
    for x in (75, 125):
        cv2.ellipse(image, (x, 90), (12, 6), 0, 0, 360, (255, 255, 255), -1)
        cv2.circle(image, (x, 90), 5, (40, 30, 20), -1)
        cv2.line(image, (x - 14, 74), (x + 14, 72), (60, 50, 40), 3)
    cv2.line(image, (100, 95), (95, 125), (120, 130, 160), 2)
    cv2.ellipse(image, (100, 145), (22, 8), 0, 0, 180, (60, 60, 150), 3)
    return image, np.array([40, 27, 120, 156])


def box_eyes(box: np.ndarray) -> np.ndarray:
    """Where the eyes of an upright frontal face in this box would be: a stand-in so that any face can be cropped."""
    x, y, w, h = (float(v) for v in box)
    return np.array([[x + 0.3 * w, y + 0.4 * h], [x + 0.7 * w, y + 0.4 * h]], np.float32)
