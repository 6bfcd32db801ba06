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
    the detector needs is upsampled first (``emocam.detect.enlarge``); ``keep`` says which faces stay (KEEPS);
    ``video_min_score``, where set, is the lowest score in the frames of a video or stream, where a false face
    would come back frame after frame as a track, while a still image keeps ``min_score``. The defaults are the
    detector's own: the "live" reading."""

    detector: str = RANGE
    min_score: float = MIN_SCORE
    enlarge: bool = False
    keep: str = "all"
    video_min_score: float | None = None

    def __post_init__(self) -> None:
        if self.detector not in RANGES:
            raise ValueError(f"unknown detector '{self.detector}'; choose one of {', '.join(RANGES)}")
        for score in (self.min_score, self.video_min_score):
            if score is not None and not 0 <= score <= 1:
                raise ValueError(f"min_score must be in [0, 1], got {score}")
        if self.keep not in KEEPS:
            raise ValueError(f"unknown keep '{self.keep}'; choose one of {', '.join(KEEPS)}")

    def to_dict(self) -> dict:
        return asdict(self)

    def score(self, still: bool) -> float:
        """The lowest detector score taken as a face in a still image (``still``) or in a video's frames."""
        return self.min_score if still or self.video_min_score is None else self.video_min_score

    def open_detector(self) -> FaceDetector:
        """The face detector this reading runs (a context manager), at the lower of its two scores."""
        return FaceDetector(self.detector, min(self.score(True), self.score(False)))

    def choose(self, faces: Faces) -> Faces:
        """The faces this reading keeps of those detected in one image."""
        if self.keep == "all" or len(faces) < 2:
            return faces
        rank = faces.boxes[:, 2] * faces.boxes[:, 3] if self.keep == "largest" else faces.scores
        return faces.subset([int(np.argmax(rank))])


# Chosen by measurement (scripts/readings.py, docs/results.md): both ranges find close portraits and far faces
# alike (the short range at 0.7 finds none of multi_face.jpg's five, the full range alone a fifth of wild/val's
# portraits); in photos a score of 0.5 finds a face in 98.9% of wild/val's (0.7: 84.5%); in video 0.5 and 0.6 let
# clouds in no_face.mp4 through as faces (4 and 1), 0.7 none.
AUTO = FaceReading("both", 0.5, enlarge=True, keep="all", video_min_score=0.7)
READINGS = {
    # Every input, the default: stills at 0.5, video and streams at 0.7.
    "auto": AUTO,
    # The short range alone at 0.7: one detector model a frame, for a close webcam face where speed matters most.
    "live": FaceReading(),
    # Labelled stills (target sets, `emotrain evaluate --folder`): read as auto reads them, keeping the largest
    # face, since each image is labelled for one face.
    "stills": replace(AUTO, keep="largest", video_min_score=None),
    # FER-2013's 48 px faces as the live side sees them (``emotrain measure``, --fer-framing live).
    "fer": FaceReading("short", 0.5, enlarge=True, keep="best"),
}
# The reading the commands and the API use unless told otherwise.
DEFAULT_READING = "auto"


def resolve_reading(reading: str | FaceReading | None = None, **overrides: object) -> FaceReading:
    """The preset ``reading`` names (None: DEFAULT_READING), or the FaceReading given, with the fields in
    ``overrides`` that are not None replaced (``detector``, ``min_score``, ``enlarge``, ``keep``); a ``min_score``
    given holds for video too."""
    if reading is None:
        reading = DEFAULT_READING
    if not isinstance(reading, FaceReading):
        if reading not in READINGS:
            raise ValueError(f"unknown face reading '{reading}'; choose one of {', '.join(READINGS)}")
        reading = READINGS[reading]
    given = {k: v for k, v in overrides.items() if v is not None}
    if "min_score" in given:
        given["video_min_score"] = None
    return replace(reading, **given) if given else reading


def read_faces(image: np.ndarray, reading: FaceReading, detect: FaceDetector,
               landmarks: Callable[[np.ndarray, Faces], Faces],
               gate: Callable[[Faces], Faces], still: bool = True) -> tuple[np.ndarray, Faces]:
    """The faces of a BGR image (``still``, or a frame of a video) as ``reading`` says, with landmarks, pose and the
    gate's verdict: (the image they were read in, which is ``image`` or its enlarged copy, and the faces in that
    image's pixels)."""
    seen = enlarge(image) if reading.enlarge else image
    found = detect(seen, still=still, min_score=reading.score(still))
    # Which face is kept depends only on the detector's boxes and scores, so the others skip the landmarks.
    return seen, gate(landmarks(seen, reading.choose(found)))


def crop_source(image: np.ndarray, eyes: np.ndarray, reading: FaceReading) -> tuple[np.ndarray, np.ndarray]:
    """The image to crop faces from and their eye centres in it: a small image's enlarged copy where ``reading``
    enlarges, so that its faces are cropped as training and ``emotrain evaluate`` crop them; else ``image``."""
    scale, border = enlargement(image.shape)
    if not reading.enlarge or border == 0:
        return image, eyes
    return enlarge(image), eyes * scale + border


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
    def line(r: FaceReading) -> str:
        video = f" in stills, {r.video_min_score:g} in video" if r.video_min_score is not None else ""
        return (f"{r.detector} range, score {r.min_score:g}{video}, "
                f"{'small images enlarged' if r.enlarge else 'not enlarged'}, {r.keep} faces")

    return "; ".join(f"{name} ({line(r)})" for name, r in READINGS.items()) + f"; default {DEFAULT_READING}"
