"""Where results go: the overlay, a preview window, a CSV file, an annotated video, a summary, a progress bar.

Every sink is a context manager with ``write(frame, faces)``, so an interrupted run still closes them cleanly.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path
from typing import TextIO

import cv2
import numpy as np

from .faces import Faces
from .sources import Frame


class SinkError(Exception):
    """An output that cannot be written (no such folder, no display); the message is one line for the user."""


class Sink:
    """Base of all sinks. ``overlay``: wants the pipeline's annotation drawn on ``frame.image`` before ``write``.
    ``stop``: set when the user asked to stop the run (a window's q or Esc)."""

    overlay = False
    stop = False

    def write(self, frame: Frame, faces: Faces) -> None:
        """Take one processed frame and its faces."""
        raise NotImplementedError

    def close(self) -> None:
        """Flush and release; safe to call twice."""

    def __enter__(self) -> "Sink":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def writable(path: Path) -> Path:
    """``path`` if its folder exists, else SinkError."""
    path = Path(path)
    if not path.parent.is_dir():
        raise SinkError(f"cannot write {path}: folder {path.parent} does not exist")
    return path


def csv_columns(classes: tuple[str, ...]) -> list[str]:
    """The CSV header: one row per face per frame, raw (p_) then smoothed (s_) probabilities."""
    return (["frame", "timestamp_s", "face_id", "x", "y", "w", "h", "det_score", "label"]
            + [f"p_{c}" for c in classes] + [f"s_{c}" for c in classes])


class CsvSink(Sink):
    """One row per face per frame; flushed every frame so an interrupted run leaves a valid file."""

    def __init__(self, path: Path, classes: tuple[str, ...]) -> None:
        self.path, self.classes = writable(path), tuple(classes)
        try:
            self._file: TextIO | None = open(self.path, "w", newline="")
        except OSError as e:
            raise SinkError(f"cannot write {self.path}: {e.strerror}") from None
        self._writer = csv.writer(self._file)
        self._writer.writerow(csv_columns(self.classes))
        self._file.flush()

    def write(self, frame: Frame, faces: Faces) -> None:
        if not len(faces):
            return
        k = len(self.classes)
        blank = [""] * k
        for i in range(len(faces)):
            x, y, w, h = faces.boxes[i].tolist()
            label = self.classes[faces.labels[i]] if faces.labels is not None else ""
            probs = blank if faces.probs is None else [f"{p:.4f}" for p in faces.probs[i].tolist()]
            smooth = blank if faces.smoothed is None else [f"{p:.4f}" for p in faces.smoothed[i].tolist()]
            self._writer.writerow([frame.index, f"{frame.timestamp_s:.4f}", int(faces.track_ids[i]),
                                   f"{x:.1f}", f"{y:.1f}", f"{w:.1f}", f"{h:.1f}", f"{faces.scores[i]:.3f}",
                                   label, *probs, *smooth])
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class VideoSink(Sink):
    """The annotated frames as an mp4 (codec mp4v) at ``fps``; the frame size is taken from the first frame."""

    overlay = True

    def __init__(self, path: Path, fps: float) -> None:
        self.path, self.fps = writable(path), fps
        self._writer: cv2.VideoWriter | None = None

    def write(self, frame: Frame, faces: Faces) -> None:
        if self._writer is None:
            h, w = frame.image.shape[:2]
            self._writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
            if not self._writer.isOpened():
                raise SinkError(f"cannot write the video {self.path}")
        self._writer.write(frame.image)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None


class Window(Sink):
    """A preview window with the overlay; q or Esc (or closing the window) stops the run."""

    overlay = True

    def __init__(self, title: str = "emocam") -> None:
        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            # OpenCV's Qt backend aborts the whole process without a display, so check first.
            raise SinkError("no display for the preview window; run headless with --no-display")
        self.title = title
        self._shown = False

    def write(self, frame: Frame, faces: Faces) -> None:
        if self._shown and cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1:
            self.stop = True
            return
        cv2.imshow(self.title, frame.image)
        self._shown = True
        if (cv2.waitKey(1) & 0xFF) in (ord("q"), 27):
            self.stop = True

    def close(self) -> None:
        if self._shown:
            cv2.destroyWindow(self.title)
            cv2.waitKey(1)
            self._shown = False


class ProgressBar(Sink):
    """A tqdm progress bar over the frames of a file, on stderr."""

    def __init__(self, total: int | None, desc: str = "emocam") -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=total, desc=desc, unit="frame", dynamic_ncols=True)

    def write(self, frame: Frame, faces: Faces) -> None:
        self._bar.update(1)

    def close(self) -> None:
        self._bar.close()


class Summary(Sink):
    """Per face: seconds on screen and the share of each emotion (by smoothed label); printed as a table,
    optionally saved as JSON and as a PNG of each face's smoothed probabilities over time."""

    def __init__(self, classes: tuple[str, ...], json_path: Path | None = None, plot_path: Path | None = None,
                 out: TextIO | None = None, max_plotted: int = 8) -> None:
        self.classes = tuple(classes)
        self.json_path = None if json_path is None else writable(json_path)
        self.plot_path = None if plot_path is None else writable(plot_path)
        self.out, self.max_plotted = out, max_plotted
        self._frames, self._first_s, self._last_s = 0, 0.0, 0.0
        self._faces: dict[int, dict] = {}
        self._closed = False

    def write(self, frame: Frame, faces: Faces) -> None:
        if self._frames == 0:
            self._first_s = frame.timestamp_s
        self._frames += 1
        self._last_s = frame.timestamp_s
        if faces.labels is None:
            return
        for i, track in enumerate(faces.track_ids.tolist()):
            face = self._faces.get(track)
            if face is None:
                face = self._faces[track] = {"frames": 0, "labels": np.zeros(len(self.classes), np.int64),
                                             "first_s": frame.timestamp_s, "times": [], "probs": []}
            face["frames"] += 1
            face["labels"][faces.labels[i]] += 1
            face["last_s"] = frame.timestamp_s
            if self.plot_path is not None:
                face["times"].append(frame.timestamp_s)
                face["probs"].append(faces.smoothed[i].copy())

    def frame_s(self) -> float:
        """Mean time between processed frames (0 before two frames)."""
        return (self._last_s - self._first_s) / (self._frames - 1) if self._frames > 1 else 0.0

    def report(self) -> dict:
        """The summary as a JSON-ready dict, faces longest on screen first."""
        frame_s = self.frame_s()
        faces = []
        for track, f in self._faces.items():
            shares = f["labels"] / max(f["frames"], 1)
            faces.append({"face_id": track, "seconds": round(f["frames"] * frame_s, 3), "frames": f["frames"],
                          "first_s": round(f["first_s"], 3), "last_s": round(f["last_s"], 3),
                          "dominant": self.classes[int(shares.argmax())],
                          "shares": {c: round(float(s), 4) for c, s in zip(self.classes, shares)}})
        faces.sort(key=lambda f: (-f["frames"], f["face_id"]))
        return {"frames": self._frames, "duration_s": round(self._frames * frame_s, 3), "classes": list(self.classes),
                "faces": faces}

    def table(self, report: dict) -> str:
        """The report as a short text table."""
        head = f"{'face':>5} {'seconds':>8}  " + " ".join(f"{c[:8]:>8}" for c in self.classes)
        rows = [f"{f['face_id']:>5} {f['seconds']:>8.1f}  " + " ".join(f"{f['shares'][c]:>8.0%}" for c in self.classes)
                for f in report["faces"]]
        return "\n".join([f"{report['frames']} frames, {len(rows)} face(s)", head, *rows])

    def close(self) -> None:
        if self._closed or self._frames == 0:  # a run that failed before its first frame has nothing to tell
            return
        self._closed = True
        report = self.report()
        print(self.table(report), file=self.out or sys.stdout, flush=True)
        if self.json_path is not None:
            self.json_path.write_text(json.dumps(report, indent=2) + "\n")
        if self.plot_path is not None:
            self.plot(report)

    def plot(self, report: dict) -> None:
        """Each face's smoothed probabilities over time, one panel per face, as a PNG."""
        from matplotlib.figure import Figure  # a bare Figure renders with Agg and never opens a window

        shown = [f["face_id"] for f in report["faces"][:self.max_plotted]]
        fig = Figure(figsize=(10, 1.2 + 2.0 * max(len(shown), 1)), layout="constrained")
        axes = fig.subplots(max(len(shown), 1), 1, squeeze=False)[:, 0]
        for ax, track in zip(axes, shown):
            face = self._faces[track]
            probs = np.array(face["probs"])
            for k, name in enumerate(self.classes):
                ax.plot(face["times"], probs[:, k], label=name, linewidth=1.2)
            ax.set_ylim(0, 1)
            ax.set_ylabel(f"face {track}")
        if not shown:
            axes[0].text(0.5, 0.5, "no face", ha="center", va="center", transform=axes[0].transAxes)
        axes[0].legend(loc="upper right", ncol=len(self.classes), fontsize="small")
        axes[-1].set_xlabel("time (s)")
        fig.savefig(self.plot_path, dpi=100)


PALETTE = [(66, 135, 245), (80, 200, 120), (0, 165, 255), (220, 80, 200), (40, 200, 230), (230, 120, 60)]


def annotate(image: np.ndarray, faces: Faces, classes: tuple[str, ...], fps: float | None = None) -> np.ndarray:
    """Draw, in place, each face's box, id, label with confidence and per-class bars, and the fps; returns ``image``."""
    font, height, width = cv2.FONT_HERSHEY_SIMPLEX, image.shape[0], image.shape[1]
    probs = faces.smoothed if faces.smoothed is not None else faces.probs
    for i in range(len(faces)):
        x, y, w, h = (int(round(v)) for v in faces.boxes[i].tolist())
        track = int(faces.track_ids[i])
        colour = PALETTE[track % len(PALETTE)] if track >= 0 else (200, 200, 200)
        cv2.rectangle(image, (x, y), (x + w, y + h), colour, 2)
        text = f"#{track}" if track >= 0 else "face"
        if probs is not None:
            k = int(faces.labels[i]) if faces.labels is not None else int(probs[i].argmax())
            text += f" {classes[k]} {probs[i][k]:.0%}"
        cv2.putText(image, text, (x, max(y - 6, 14)), font, 0.55, colour, 2, cv2.LINE_AA)
        if probs is None:
            continue
        # Bars beside the box: on the right if they fit, else on the left.
        bar_w, row = 60, 14
        bx = x + w + 6 if x + w + 6 + bar_w + 58 < width else max(x - bar_w - 64, 0)
        for k, name in enumerate(classes):
            by = y + k * row
            if by + row > height:
                break
            cv2.putText(image, name[:7], (bx, by + 10), font, 0.35, (255, 255, 255), 1, cv2.LINE_AA)
            cv2.rectangle(image, (bx + 56, by + 2), (bx + 56 + int(bar_w * float(probs[i][k])), by + row - 3),
                          colour, -1)
    if fps is not None:
        cv2.putText(image, f"{fps:.0f} fps", (8, 20), font, 0.6, (0, 255, 0), 2, cv2.LINE_AA)
    return image
