"""Target sets: labelled image folders (``<class>/*``) read the way the live side reads a frame (detector,
landmarks, quality gate, eye-distance crop), cached so that it is done once."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emocam.align import Preprocess, crop_face
from emocam.reading import FaceReading, read_faces, resolve_reading
from emocam.sources import SourceError, read_image

from .data import LANDMARKS_GATE, DataError, FaceSet, cache_dir, file_key, image_files

# How training and `emotrain evaluate --folder` read the faces of labelled stills (a preset of emocam.reading).
TARGET_READING = "stills"


@dataclass
class TargetReport:
    """How a target folder went through the detector: how many images, which had no face, which could not be read."""

    images: int
    no_face: list[str]
    unreadable: list[str] = field(default_factory=list)


def person(path: Path) -> str:
    """Who a target image shows, from its file name: the name without its trailing numbers
    (``George_W_Bush_0001.jpg`` -> George_W_Bush, CK+'s ``S005_001_00000011.png`` -> S005)."""
    return re.sub(r"(_\d+)+$", "", path.stem) or path.stem


def load_target(root: Path, pre: Preprocess,
                reading: str | FaceReading = TARGET_READING) -> tuple[FaceSet, TargetReport]:
    """A target image folder (``<class>/*``): each image through the live detector, landmarks, quality gate and
    eye-distance crop, faces read as ``reading`` says ("stills": small images such as CK+'s 48 px crops enlarged
    first, the largest face kept), cached so that it is done once. Images with no face are counted and
    reported, not used."""
    from emocam.gate import Gate
    from emocam.landmarks import Landmarker

    reading = resolve_reading(reading)
    root = Path(root)
    files = image_files(root)
    stamps = [(str(f), f.stat().st_size, f.stat().st_mtime) if f.exists() else (str(f),) for _, f in files]
    key = file_key(str(root.resolve()), stamps, pre.to_dict(), reading.to_dict(), LANDMARKS_GATE)
    cached = cache_dir() / f"target-{key}.npz"
    name = f"{root.parent.name}/{root.name}"
    if cached.is_file():
        with np.load(cached) as z:
            report = TargetReport(int(z["n_images"]), [str(s) for s in z["no_face"]],
                                  [str(s) for s in z["unreadable"]])
            return FaceSet(z["images"], z["labels"], name, None, z["groups"], z["passed"]), report
    crops, labels, groups, passed, no_face, unreadable = [], [], [], [], [], []
    gate = Gate()
    with reading.open_detector() as detect, Landmarker() as landmarker:
        for label, f in files:
            try:
                image = read_image(f)
            except SourceError:  # one corrupt file or broken link is named, and the others still count
                unreadable.append(str(f.relative_to(root)))
                continue
            # What the live pipeline does to every frame; the crop is taken from the image the faces were read in.
            image, faces = read_faces(image, reading, detect, landmarker, gate)
            if len(faces) == 0:
                no_face.append(str(f.relative_to(root)))
                continue
            for i in range(len(faces)):  # one face unless the reading keeps them all
                crops.append(crop_face(image, faces.eyes[i, 0], faces.eyes[i, 1], pre, faces.pose[i, 0]))
                labels.append(label)
                groups.append(person(f))
                passed.append(bool(faces.passed[i]))
    if not crops:
        raise DataError(f"{root}: no face found in any of its {len(files)} images")
    out = FaceSet(np.stack(crops), np.array(labels, np.int64), name, None, np.array(groups), np.array(passed))
    np.savez(cached, images=out.images, labels=out.labels, groups=out.groups, passed=out.passed,
             n_images=len(files), no_face=np.array(no_face, dtype=str), unreadable=np.array(unreadable, dtype=str))
    return out, TargetReport(len(files), no_face, unreadable)


def describe(report: TargetReport, root: Path, out=sys.stderr) -> None:
    """Print how many images of a target folder could not be read or had no face, and the first few of each."""
    for says, names in (("{n} of {m} images cannot be read", report.unreadable),
                        ("no face found in {n} of {m} images", report.no_face)):
        if names:
            print(f"{root}: {says.format(n=len(names), m=report.images)} (left out): "
                  f"{', '.join(names[:5])}{' ...' if len(names) > 5 else ''}", file=out)
