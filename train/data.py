"""Training data: FER-2013 (csv or image folders) and FER+ votes, and the face sets they make (target image folders
are read by ``targets``)."""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emocam.align import Preprocess, prepare_gray
from emocam.sources import IMAGE_SUFFIXES, read_image

CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
FER_USAGES = ("Training", "PublicTest", "PrivateTest")
# FER+ vote columns in FER-2013's class order (contempt, unknown and NF are left out).
FERPLUS_COLUMNS = ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral")


class DataError(Exception):
    """Input data that cannot be used; the message names the file."""


@dataclass
class FaceSet:
    """Preprocessed uint8 faces (N, S, S), their labels (N,), optional soft targets (N, K), and a name.

    groups: (N,) who each face belongs to (a person, where known), so that splits never share a person.
    passed: (N,) bool, whether the live quality gate would label the face (all True where it was not run)."""

    images: np.ndarray
    labels: np.ndarray
    name: str
    soft: np.ndarray | None = None
    groups: np.ndarray | None = None
    passed: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.groups is None:
            self.groups = np.arange(len(self.labels)).astype(str)
        if self.passed is None:
            self.passed = np.ones(len(self.labels), bool)

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, keep: np.ndarray, name: str | None = None) -> "FaceSet":
        """The faces selected by an index or boolean array."""
        return FaceSet(self.images[keep], self.labels[keep], name or self.name,
                       None if self.soft is None else self.soft[keep], self.groups[keep], self.passed[keep])

    def carve(self, share: float, seed: int = 0) -> tuple["FaceSet", "FaceSet"]:
        """Split off about ``share`` of the faces, whole groups at a time, as a validation set: (rest, carved)."""
        names = np.unique(self.groups)
        order = np.random.default_rng(seed).permutation(len(names))
        sizes = {g: n for g, n in zip(*np.unique(self.groups, return_counts=True))}
        carved, count = set(), 0
        for i in order:
            if count >= share * len(self):
                break
            carved.add(names[i])
            count += sizes[names[i]]
        mask = np.isin(self.groups, list(carved))
        return self.subset(~mask, f"{self.name}-carved"), self.subset(mask, f"{self.name}/carved-val")

    def counts(self) -> list[int]:
        return np.bincount(self.labels, minlength=len(CLASSES)).tolist()

    @staticmethod
    def concat(sets: list["FaceSet"], name: str) -> "FaceSet":
        soft = None
        if any(s.soft is not None for s in sets):
            soft = np.concatenate([s.soft if s.soft is not None else np.eye(len(CLASSES), dtype=np.float32)[s.labels]
                                   for s in sets])
        return FaceSet(np.concatenate([s.images for s in sets]), np.concatenate([s.labels for s in sets]), name, soft,
                       np.concatenate([s.groups for s in sets]), np.concatenate([s.passed for s in sets]))


# Which live landmarks and gate made the cached crops of target sets and re-cropped FER-2013 faces; a change to
# either that changes crops gets a new one (v3: turned faces that Face Mesh misses keep their keypoints).
LANDMARKS_GATE = "landmarks-gate-v3"


def cache_dir() -> Path:
    """Where decoded datasets are kept between runs ($EMOCAM_CACHE or ~/.cache/emocam)."""
    path = Path(os.environ.get("EMOCAM_CACHE", Path.home() / ".cache" / "emocam"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def file_key(*parts: object) -> str:
    """A short digest of ``parts``: the name of a cache file."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def read_fer_csv(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FER-2013's csv (``emotion,pixels,Usage``, optionally gzipped) -> 48x48 uint8 images, labels, usages."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"FER-2013 file not found: {path}")
    stat = path.stat()
    cached = cache_dir() / f"fer-{file_key(str(path.resolve()), stat.st_size, stat.st_mtime)}.npz"
    if cached.is_file():
        with np.load(cached) as z:
            return z["images"], z["labels"], z["usage"]
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", newline="") as f:
            reader = csv.reader(f)
            header = [h.strip() for h in next(reader)]
            if header[:3] != ["emotion", "pixels", "Usage"]:
                raise DataError(f"{path}: expected columns emotion,pixels,Usage, found {','.join(header)}")
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error, StopIteration) as e:
        raise DataError(f"{path}: not a readable FER-2013 csv ({e})") from None
    if not rows:
        raise DataError(f"{path}: no faces, only a header")
    labels, usage = np.empty(len(rows), np.int64), np.empty(len(rows), np.int8)
    images = np.empty((len(rows), 48, 48), np.uint8)
    for i, row in enumerate(rows):
        labels[i], images[i], usage[i] = _fer_row(row, f"{path}: row {i + 2}")  # row 1 is the header
    np.savez(cached, images=images, labels=labels, usage=usage)
    return images, labels, usage


def _fer_row(row: list[str], where: str) -> tuple[int, np.ndarray, int]:
    """One FER-2013 csv row -> label, 48x48 image, usage index; DataError naming the row (``where``) if malformed."""
    if len(row) < 3:
        raise DataError(f"{where} has {len(row)} fields; expected emotion,pixels,Usage")
    emotion, usage = row[0].strip(), row[2].strip()
    if emotion not in [str(k) for k in range(len(CLASSES))]:
        raise DataError(f"{where}: emotion '{emotion}' is not a class number 0..{len(CLASSES) - 1}")
    if usage not in FER_USAGES:
        raise DataError(f"{where}: Usage '{usage}' is not one of {', '.join(FER_USAGES)}")
    try:
        # int32, not uint8: numpy would wrap 999 to 231 without a word.
        pixels = np.array(row[1].split(), np.int32)
    except ValueError:
        raise DataError(f"{where}: its pixels are not whole numbers separated by spaces") from None
    if pixels.size != 48 * 48:
        raise DataError(f"{where} has {pixels.size} pixel values; a FER-2013 face has 2304 (48x48)")
    bad = (pixels < 0) | (pixels > 255)
    if bad.any():
        raise DataError(f"{where}: pixel value {pixels[bad][0]} is outside 0..255")
    return int(emotion), pixels.reshape(48, 48).astype(np.uint8), FER_USAGES.index(usage)


def read_ferplus(path: Path, n_rows: int) -> np.ndarray:
    """FER+ votes (``fer2013new.csv``, row-aligned with FER-2013) -> (N, 7) vote counts in FER-2013 class order."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"FER+ file not found: {path}")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in FERPLUS_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{path}: missing FER+ columns {', '.join(missing)}")
        votes = np.array([[float(row[c] or 0) for c in FERPLUS_COLUMNS] for row in reader], np.float32)
    if len(votes) != n_rows:
        raise DataError(f"{path}: {len(votes)} rows, but the FER-2013 csv has {n_rows}; they must line up")
    return votes


def prepare_all(images: np.ndarray, pre: Preprocess) -> np.ndarray:
    """Already cropped faces resized and stretched for the model, as ``emocam.align.prepare_gray`` does."""
    out = np.empty((len(images), pre.size, pre.size), np.uint8)
    for i, img in enumerate(images):
        out[i] = prepare_gray(img, pre)
    return out


def fer_sets(fer: Path, variant: str, pre: Preprocess, ferplus: Path | None = None, majority: bool = False,
             framing: str = "own", seed: int = 0) -> dict[str, FaceSet]:
    """FER-2013 splits as in the paper: 'fer28' trains on Training and validates on PublicTest; 'fer32' trains on
    Training + PublicTest less a random tenth, on which it validates. 'test' is always PrivateTest, never used to
    choose anything.

    With ``ferplus`` the training faces get FER+ targets: the vote distribution, or with ``majority`` the
    most voted class (ties go to the FER-2013 label). Faces without votes keep their label; validation and
    test faces always keep theirs. ``framing`` 'live' re-crops every face with the live side's landmarks and crop
    (``framing.live_crops``) instead of taking it as it is."""
    if variant not in ("fer28", "fer32"):
        raise ValueError(f"unknown FER variant '{variant}'; choose fer28 or fer32")
    fer = Path(fer)
    if fer.is_dir():  # the folder layout has no public/private split: its test folder serves both
        split = read_fer_folders(fer, pre)
        return {"train": split["train"], "val": split["test"], "test": split["test"]}
    images, labels, usage = read_fer_csv(fer)
    soft = None
    if ferplus is not None:
        votes = read_ferplus(ferplus, len(labels))
        total = votes.sum(1, keepdims=True)
        onehot = np.eye(len(CLASSES), dtype=np.float32)[labels]
        if majority:
            votes = np.eye(len(CLASSES), dtype=np.float32)[(votes + 0.5 * onehot).argmax(1)]
        soft = np.where(total > 0, votes / np.maximum(votes.sum(1, keepdims=True), 1), onehot).astype(np.float32)
    images = live_fer_crops(fer, images, pre) if framing == "live" else prepare_all(images, pre)
    everything = FaceSet(images, labels, "fer2013", soft)
    test = everything.subset(usage == 2, "fer2013/PrivateTest")
    test.soft = None
    if variant == "fer28":
        train, val = everything.subset(usage == 0, "fer28/train"), everything.subset(usage == 1, "fer28/val")
    else:
        train, val = everything.subset(np.isin(usage, (0, 1)), "fer32/train").carve(0.1, seed)
        train.name, val.name = "fer32/train", "fer32/carved-val"
    val.soft = None
    return {"train": train, "val": val, "test": test}


def live_fer_crops(fer: Path, images: np.ndarray, pre: Preprocess) -> np.ndarray:
    """Every FER-2013 face re-cropped by the live side (``framing.live_crops``), cached: it takes minutes."""
    from .framing import live_crops

    stat = Path(fer).stat()
    key = file_key(str(Path(fer).resolve()), stat.st_size, stat.st_mtime, pre.to_dict(), LANDMARKS_GATE)
    cached = cache_dir() / f"fer-live-{key}.npy"
    if cached.is_file():
        return np.load(cached)
    crops = live_crops(images, pre)
    np.save(cached, crops)
    return crops


def _class_folders(root: Path) -> list[tuple[int, Path]]:
    if not root.is_dir():
        raise DataError(f"image folder not found: {root}")
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    if not folders:
        raise DataError(f"{root}: no class folders (expected {root}/<class>/*.jpg with classes {', '.join(CLASSES)})")
    unknown = [p.name for p in folders if p.name not in CLASSES]
    if unknown:
        raise DataError(f"{root}: unknown class folder(s) {', '.join(unknown)}; expected {', '.join(CLASSES)}")
    return [(CLASSES.index(p.name), p) for p in folders]


def image_files(root: Path) -> list[tuple[int, Path]]:
    """(label, file) of every image in a ``<class>/*`` folder, in order."""
    return [(label, f) for label, folder in _class_folders(root)
            for f in sorted(folder.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]


def read_fer_folders(root: Path, pre: Preprocess) -> dict[str, FaceSet]:
    """FER-2013 as image folders (``train/<class>/*.jpg``, ``test/<class>/*.jpg``); faces are used as they are
    (SourceError names an image that cannot be read)."""
    out = {}
    for split in ("train", "test"):
        files = image_files(Path(root) / split)
        images = np.stack([prepare_gray(read_image(f, gray=True), pre) for _, f in files])
        out[split] = FaceSet(images, np.array([label for label, _ in files], np.int64), f"{Path(root).name}/{split}")
    return out


def measure_fer(fer, faces: int = 1500, seed: int = 0) -> dict:
    """``framing.measure`` on a random sample of FER-2013's Training faces (csv)."""
    from .framing import measure

    images, _, usage = read_fer_csv(fer)
    training = np.flatnonzero(usage == 0)
    if faces < 10 or len(training) < faces:
        raise DataError(f"--faces must be from 10 to {len(training)}, the Training faces in {fer}")
    pick = np.sort(np.random.default_rng(seed).choice(training, faces, replace=False))
    return {"fer": str(fer), "seed": seed, **measure(images[pick])}
