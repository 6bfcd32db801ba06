"""How faces are read from an image, declared once: the detector's range and lowest score, whether a small image is
enlarged first, and which faces are kept. Named presets cover the ways emocam reads faces; every caller (the
commands, the API, ``emocam batch``, ``emotrain evaluate``, training's target sets, the scripts) resolves its
reading here, as timm's ``resolve_data_config`` resolves a model's input."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Callable

import numpy as np

from .detect import MIN_SCORE, RANGE, RANGES, FaceDetector, enlarge, enlargement
from .faces import Faces

# Which faces of an image are kept: every face, the one with the largest box, or the one the detector is surest of.
KEEPS = ("all", "largest", "best")


@dataclass(frozen=True)
class FaceReading:
    """How faces are read: BlazeFace ``detector`` range and ``min_score``; with ``enlarge``, an image smaller than
    the detector needs is upsampled first (``emocam.detect.enlarge``); ``keep`` says which faces stay (KEEPS).
    The defaults are the detector's own: the "live" reading."""

    detector: str = RANGE
    min_score: float = MIN_SCORE
    enlarge: bool = False
    keep: str = "all"

    def __post_init__(self) -> None:
        if self.detector not in RANGES:
            raise ValueError(f"unknown detector '{self.detector}'; choose one of {', '.join(RANGES)}")
        if not 0 <= self.min_score <= 1:
            raise ValueError(f"min_score must be in [0, 1], got {self.min_score}")
        if self.keep not in KEEPS:
            raise ValueError(f"unknown keep '{self.keep}'; choose one of {', '.join(KEEPS)}")

    def to_dict(self) -> dict:
        return asdict(self)

    def open_detector(self) -> FaceDetector:
        """The face detector this reading runs (a context manager)."""
        return FaceDetector(self.detector, self.min_score)

    def choose(self, faces: Faces) -> Faces:
        """The faces this reading keeps of those detected in one image."""
        if self.keep == "all" or len(faces) < 2:
            return faces
        rank = faces.boxes[:, 2] * faces.boxes[:, 3] if self.keep == "largest" else faces.scores
        return faces.subset([int(np.argmax(rank))])


READINGS = {
    # Video and cameras: frames are large, and a false face would become a track.
    "live": FaceReading(),
    # Labelled stills (target sets, `emotrain evaluate --folder`): one face per image, often a small gray photo
    # (CK+'s are 48 px), so the detector may be less strict; at 0.7 a fifth of the wild set's photos find no face.
    "stills": FaceReading("both", 0.5, enlarge=True, keep="largest"),
    # FER-2013's 48 px faces as the live side sees them (``emotrain measure``, --fer-framing live).
    "fer": FaceReading("short", 0.5, enlarge=True, keep="best"),
}
# The reading the commands and the API use unless told otherwise.
DEFAULT_READING = "live"


def resolve_reading(reading: str | FaceReading | None = None, **overrides: object) -> FaceReading:
    """The preset ``reading`` names (None: DEFAULT_READING), or the FaceReading given, with the fields in
    ``overrides`` that are not None replaced (``detector``, ``min_score``, ``enlarge``, ``keep``)."""
    if reading is None:
        reading = DEFAULT_READING
    if not isinstance(reading, FaceReading):
        if reading not in READINGS:
            raise ValueError(f"unknown face reading '{reading}'; choose one of {', '.join(READINGS)}")
        reading = READINGS[reading]
    given = {k: v for k, v in overrides.items() if v is not None}
    return replace(reading, **given) if given else reading


def read_faces(image: np.ndarray, reading: FaceReading, detect: Callable[[np.ndarray], Faces],
               landmarks: Callable[[np.ndarray, Faces], Faces],
               gate: Callable[[Faces], Faces]) -> tuple[np.ndarray, Faces]:
    """The faces of a BGR image as ``reading`` says, with landmarks, pose and the gate's verdict: (the image they were
    read in, which is ``image`` or its enlarged copy, and the faces in that image's pixels)."""
    seen = enlarge(image) if reading.enlarge else image
    # Which face is kept depends only on the detector's boxes and scores, so the others skip the landmarks.
    return seen, gate(landmarks(seen, reading.choose(detect(seen))))


def in_original(faces: Faces, shape: tuple[int, ...]) -> Faces:
    """Faces read in the enlarged copy of an image of ``shape`` (``enlarge``) moved back to the image's own pixels."""
    scale, border = enlargement(shape)
    if border == 0:
        return faces
    faces.boxes[:, :2] = (faces.boxes[:, :2] - border) / scale
    faces.boxes[:, 2:] /= scale
    faces.eyes = (faces.eyes - border) / scale
    if faces.keypoints is not None:
        faces.keypoints = (faces.keypoints - border) / scale
    return faces


def reading_presets() -> str:
    """The presets in a line, for help texts: each with its range, score, enlarging and the faces it keeps."""
    return "; ".join(f"{name} ({r.detector} range, score {r.min_score:g}, "
                     f"{'small images enlarged' if r.enlarge else 'not enlarged'}, {r.keep} faces)"
                     for name, r in READINGS.items()) + f"; default {DEFAULT_READING}"
