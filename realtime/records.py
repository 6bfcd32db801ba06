"""The one record schema: a row per face per frame (and, on request, per frame without a face), shared by the CSV,
the JSONL stream, the pandas DataFrame and Parquet."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from .extras import require
from .faces import Faces, Frame


@dataclass(frozen=True)
class Column:
    """One field of a record: its name, its kind (int, float or str) and, for floats, the decimals kept."""

    name: str
    kind: type
    digits: int | None = None


# Before the probabilities; a field is None (an empty CSV cell, JSON null, NaN or <NA>) where it does not apply.
FIXED = (Column("frame", int), Column("timestamp_s", float, 4), Column("face_id", int),
         Column("x", float, 1), Column("y", float, 1), Column("w", float, 1), Column("h", float, 1),
         Column("det_score", float, 3), Column("yaw", float, 1), Column("pitch", float, 1), Column("roll", float, 1),
         Column("quality", str), Column("label", str))
PROB_DIGITS = 4


def schema(classes: Iterable[str]) -> tuple[Column, ...]:
    """Every column for a model with these classes: the fixed ones, raw (p_) then smoothed (s_) probabilities."""
    classes = tuple(classes)
    return (FIXED + tuple(Column(f"p_{c}", float, PROB_DIGITS) for c in classes)
            + tuple(Column(f"s_{c}", float, PROB_DIGITS) for c in classes))


def columns(classes: Iterable[str]) -> list[str]:
    """The column names, in order (the CSV header)."""
    return [c.name for c in schema(classes)]


def _number(value: float, digits: int) -> float | None:
    return None if not math.isfinite(value) else round(value, digits)


def records(frame: Frame, faces: Faces, classes: tuple[str, ...], every_frame: bool = False) -> list[dict]:
    """The records of one processed frame, as dicts in column order: one per face, or with ``every_frame`` one
    with only ``frame`` and ``timestamp_s`` for a frame without faces. A face whose quality is not "ok" keeps its
    raw probabilities; its label and smoothed probabilities are None."""
    names = columns(classes)
    timestamp = round(frame.timestamp_s, 4)
    if not len(faces):
        return [dict.fromkeys(names) | {"frame": frame.index, "timestamp_s": timestamp}] if every_frame else []
    out = []
    for i in range(len(faces)):
        x, y, w, h = faces.boxes[i].tolist()
        yaw, pitch, roll = faces.pose[i].tolist()
        quality = str(faces.quality[i])
        labelled = quality == "ok" and faces.labels is not None and faces.labels[i] >= 0
        row = {"frame": frame.index, "timestamp_s": timestamp, "face_id": int(faces.track_ids[i]),
               "x": round(x, 1), "y": round(y, 1), "w": round(w, 1), "h": round(h, 1),
               "det_score": round(float(faces.scores[i]), 3),
               "yaw": _number(yaw, 1), "pitch": _number(pitch, 1), "roll": _number(roll, 1),
               "quality": quality, "label": classes[faces.labels[i]] if labelled else None}
        probs = [None] * len(classes) if faces.probs is None else faces.probs[i].tolist()
        smoothed = faces.smoothed[i].tolist() if labelled and faces.smoothed is not None else [None] * len(classes)
        for prefix, values in (("p_", probs), ("s_", smoothed)):
            for c, v in zip(classes, values):
                row[prefix + c] = None if v is None else _number(v, PROB_DIGITS)
        out.append(row)
    return out


def csv_cells(record: dict, classes: tuple[str, ...]) -> list[str]:
    """A record as CSV cells: floats with their column's fixed decimals, None as an empty cell."""
    cells = []
    for c in schema(classes):
        v = record[c.name]
        cells.append("" if v is None else f"{v:.{c.digits}f}" if c.kind is float else str(v))
    return cells


def dataframe(rows: Iterable[dict], classes: tuple[str, ...]):
    """Records as a pandas DataFrame with the schema's columns and types (nullable Int64 ids, NaN for None floats)."""
    pd = require("pandas")
    frame = pd.DataFrame.from_records(list(rows), columns=columns(classes))
    return _typed(frame, classes)


def _typed(frame, classes: tuple[str, ...]):
    pd = require("pandas")
    for c in schema(classes):
        if c.kind is int:
            frame[c.name] = pd.to_numeric(frame[c.name]).astype("Int64")
        elif c.kind is float:
            frame[c.name] = pd.to_numeric(frame[c.name]).astype("float64")
        else:
            frame[c.name] = frame[c.name].astype("string")
    return frame


def read_csv(path: Path, classes: tuple[str, ...] | None = None):
    """An emocam CSV as a DataFrame typed like ``dataframe`` (the classes are read from its p_ columns if not given)."""
    pd = require("pandas")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    if classes is None:
        classes = tuple(name[2:] for name in frame.columns if name.startswith("p_"))
    if list(frame.columns) != columns(classes):
        raise ValueError(f"{path} does not have emocam's columns")
    return _typed(frame, classes)


def iter_dicts(frames: Iterable[tuple[Frame, Faces]], classes: tuple[str, ...],
               every_frame: bool = False) -> Iterator[dict]:
    """The records of a stream of processed frames, in order."""
    for frame, faces in frames:
        yield from records(frame, faces, classes, every_frame)
