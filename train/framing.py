"""FER-2013's own framing, seen through the live detector: where the eyes sit in its 48 px faces, how turned its
faces are, and FER-2013 faces cropped exactly as live faces are.

The live crop must frame a face the way the model was trained. ``measure`` finds FER-2013's framing (the crop margins,
in eye distances, around the eyes the live side finds), the head poses its training faces cover (the quality gate's
limits) and the constants of the keypoint-based pose; ``live_crops`` is the other way round: FER-2013's faces
re-cropped by the live side's landmarks and crop.
"""

from __future__ import annotations

import numpy as np

from emocam.align import Preprocess, crop_face
from emocam.detect import enlarge, enlargement
from emocam.gate import Gate
from emocam.landmarks import FaceMesh, Landmarker, keypoint_pose
from emocam.reading import READINGS, read_faces

FER_SIDE = 48
SCALE, BORDER = enlargement((FER_SIDE, FER_SIDE))  # how ``enlarge`` maps a 48 px face for the detector


def _to_fer(points: np.ndarray) -> np.ndarray:
    """Points in an enlarged FER-2013 face (``enlarge``) -> its 48 px coordinates."""
    return (points - BORDER) / SCALE


def _from_fer(points: np.ndarray) -> np.ndarray:
    return np.asarray(points) * SCALE + BORDER


def locate(images: np.ndarray, with_mesh: bool = False) -> dict[str, np.ndarray]:
    """The live side's view of 48 px faces: eye centres (N, 2, 2) in 48 px coordinates and pose (N, 3), NaN where the
    detector finds no face; with ``with_mesh`` also Face Mesh's pose of every face and BlazeFace's raw keypoints."""
    n = len(images)
    eyes = np.full((n, 2, 2), np.nan, np.float32)
    pose = np.full((n, 3), np.nan, np.float32)
    mesh_pose = np.full((n, 3), np.nan, np.float32)
    keypoints = np.full((n, 6, 2), np.nan, np.float32)
    mesh = FaceMesh() if with_mesh else None
    reading, gate = READINGS["fer"], Gate()
    with reading.open_detector() as detect, Landmarker() as landmarker:
        for i, face in enumerate(images):
            image, faces = read_faces(np.ascontiguousarray(face), reading, detect, landmarker, gate)
            if len(faces) == 0:
                continue
            eyes[i], pose[i] = _to_fer(faces.eyes[0]), faces.pose[0]
            keypoints[i] = _to_fer(faces.keypoints[0])
            if mesh is not None:
                found = mesh(image, faces.boxes[0])
                if found is not None:
                    mesh_pose[i] = found[1]
    out = {"eyes": eyes, "pose": pose}
    if with_mesh:
        mesh.close()
        out.update(mesh_pose=mesh_pose, keypoints=keypoints)
    return out


def margins(eyes: np.ndarray) -> np.ndarray:
    """(N, 3) side, top and bottom margins of each 48 px face around its eyes, in eye distances (CropSpec's units)."""
    e2e = np.linalg.norm(eyes[:, 1] - eyes[:, 0], axis=1)
    side = 0.5 * (eyes[:, 0, 0] + (FER_SIDE - eyes[:, 1, 0])) / e2e
    eye_y = eyes[:, :, 1].mean(1)
    return np.stack([side, eye_y / e2e, (FER_SIDE - eye_y) / e2e], 1)


def measure(images: np.ndarray) -> dict:
    """FER-2013's framing, pose range and keypoint-pose constants, measured on ``images`` (48 px faces)."""
    found = locate(images, with_mesh=True)
    hit = ~np.isnan(found["eyes"][:, 0, 0])
    m = np.median(margins(found["eyes"][hit]), axis=0)
    mesh = found["mesh_pose"]
    both = hit & ~np.isnan(mesh[:, 0])
    # The keypoint pose's constants, fitted to Face Mesh's pose: the nose's offset along the eye line is
    # KY * tan(yaw) eye distances, its depth between eye line and mouth Q0 - KP * tan(pitch).
    kp = found["keypoints"][both]
    mid = kp[:, :2].mean(1)
    e2e = np.linalg.norm(kp[:, 1] - kp[:, 0], axis=1)
    offset = np.abs(kp[:, 2, 0] - mid[:, 0]) / e2e
    depth = (kp[:, 2, 1] - mid[:, 1]) / (kp[:, 3, 1] - mid[:, 1])
    tan_yaw, tan_pitch = np.tan(np.radians(np.abs(mesh[both, 0]))), np.tan(np.radians(mesh[both, 1]))
    ky = float((offset * tan_yaw).sum() / (tan_yaw ** 2).sum())
    kp_slope, q0 = np.polyfit(tan_pitch, depth, 1)
    abs_pose = np.abs(mesh[both])
    return {
        "faces": int(len(images)), "found": int(hit.sum()), "mesh_found": int(both.sum()),
        "crop": {"side": round(float(m[0]), 3), "top": round(float(m[1]), 3), "bottom": round(float(m[2]), 3)},
        "abs_yaw_percentiles": {str(q): round(float(np.percentile(abs_pose[:, 0], q)), 1) for q in (50, 90, 95, 99)},
        "abs_pitch_percentiles": {str(q): round(float(np.percentile(abs_pose[:, 1], q)), 1) for q in (50, 90, 95, 99)},
        "keypoint_pose": {"KY": round(ky, 3), "Q0": round(float(q0), 3), "KP": round(float(-kp_slope), 3)},
        "keypoint_vs_mesh_yaw_corr": round(float(np.corrcoef(
            keypoint_pose(found["keypoints"][both])[:, 0], mesh[both, 0])[0, 1]), 3),
    }


def live_crops(images: np.ndarray, pre: Preprocess) -> np.ndarray:
    """48 px faces cropped as the live side crops a frame: through the detector, landmarks and eye-distance crop of
    ``pre`` (the enlarged face, as ``locate`` sees it). Faces the detector misses get the median eyes of the others."""
    found = locate(images)
    eyes, yaw = found["eyes"], found["pose"][:, 0]
    hit = ~np.isnan(eyes[:, 0, 0])
    fallback = np.median(eyes[hit], axis=0) if hit.any() else np.array([[16.0, 20.0], [32.0, 20.0]])
    out = np.empty((len(images), pre.size, pre.size), np.uint8)
    for i, face in enumerate(images):
        left, right = _from_fer(eyes[i] if hit[i] else fallback)
        out[i] = crop_face(enlarge(np.ascontiguousarray(face)), left, right, pre, yaw[i])  # NaN where missed: frontal
    return out
