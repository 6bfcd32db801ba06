"""Where results go: the overlay, a preview window, a CSV file, an annotated video, a summary, a progress bar.

Every sink is a context manager with ``write(frame, faces)``, so an interrupted run still closes them cleanly.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Callable, TextIO

import cv2
import numpy as np

from .faces import Faces
from .records import columns, csv_cells, records
from .sources import Frame, open_capture


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


# Containers that take OpenCV's mp4v stream.
VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".mkv", ".avi")


def writable(path: Path) -> Path:
    """``path`` if it can name an output (its folder exists and it is not a folder itself), else SinkError."""
    path = Path(path)
    if path.is_dir():
        raise SinkError(f"cannot write {path}: it is a folder; give a file name")
    if not path.parent.is_dir():
        raise SinkError(f"cannot write {path}: folder {path.parent} does not exist")
    return path


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file, through symlinks and hard links; paths not yet there compare resolved."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).resolve() == Path(b).resolve()


def check_paths(inputs: dict[str, Path | None], outputs: dict[str, Path | None]) -> None:
    """SinkError, before anything is opened, if an output cannot be written or would overwrite an input or another
    output (keys are the options' names, None values are left out)."""
    ins = [(k, Path(p)) for k, p in inputs.items() if p is not None]
    outs = [(k, writable(p)) for k, p in outputs.items() if p is not None]
    for i, (name, path) in enumerate(outs):
        for other, given in ins + outs[:i]:
            if same_file(path, given):
                what = "the input" if (other, given) in ins else "the output"
                raise SinkError(f"{name} {path} is the same file as {what} {other} {given}; choose another file")


def can_write(path: Path) -> Path:
    """``path`` if a file can be created beside it (one is, then removed), else SinkError; for checks before a long run."""
    Staged(path).discard()
    return Path(path)


def partial_name(path: Path, n: int = 1) -> Path:
    """NAME.partial.EXT beside ``path`` (NAME.partialN.EXT for n > 1): the suffix stays, so writers pick the format."""
    return path.with_name(f"{path.stem}.partial{'' if n == 1 else n}{path.suffix}")


class Staged:
    """A new file beside ``path`` (NAME.partial.EXT, or NAME.partial2.EXT ... when that exists) that replaces ``path``
    only at ``commit``; a file already at ``path`` is untouched until then. Creating it proves the folder writable.
    A ``path`` that is a pipe or a device (/dev/stdout, a FIFO) is written in place: it cannot be replaced. A symlink
    stays a link: the file it points to is the one replaced."""

    def __init__(self, path: Path) -> None:
        self.target = writable(path)
        self.done = False
        self.in_place = self.target.exists() and not stat.S_ISREG(os.stat(self.target).st_mode)
        if self.in_place:
            self.path = self.target
            return
        self._real = Path(os.path.realpath(self.target))
        for n in itertools.count(1):
            self.path = partial_name(self._real, n)
            try:  # O_EXCL: never take over a file that is already there (a partial file a killed run left)
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
                break
            except FileExistsError:
                continue
            except OSError as e:
                raise SinkError(f"cannot write {self.target}: {e.strerror}") from None

    def commit(self) -> Path:
        """Rename the staged file to the target (atomic: the target is either the old file or the new one)."""
        if not self.done and not self.in_place:
            try:
                os.replace(self.path, self._real)
            except OSError as e:
                raise SinkError(f"cannot write {self.target}: {e.strerror}; the output is in {self.path}") from None
            self.done = True
        return self.target

    def discard(self) -> None:
        """Remove the staged file; the target stays as it was."""
        if not self.done and not self.in_place:
            self.path.unlink(missing_ok=True)
            self.done = True

    def fill(self, write: Callable[[Path], object]) -> Path:
        """``write(staged path)``, then commit; SinkError, the staged file removed and the target untouched, if it fails."""
        try:
            write(self.path)
        except OSError as e:
            self.discard()
            raise SinkError(f"cannot write {self.target}: {e.strerror or e}") from None
        except BaseException:
            self.discard()
            raise
        return self.commit()

    def __enter__(self) -> "Staged":
        return self

    def __exit__(self, *exc) -> None:
        self.discard()


class CsvSink(Sink):
    """The records (``emocam.records``: a row per face per frame, and with ``every_frame`` one per frame without a
    face), streamed to NAME.partial.csv beside ``path`` and renamed to ``path`` when the sink
    closes. Each frame's rows reach the file whole, at once, so it is valid up to its last row even after SIGKILL
    (the partial name then says so) or a full disk."""

    def __init__(self, path: Path, classes: tuple[str, ...], every_frame: bool = False) -> None:
        self.classes, self.every_frame = tuple(classes), every_frame
        self._staged = Staged(path)
        self.path, self.frames = self._staged.target, 0
        # Unbuffered: a failed write is seen at the frame that failed, not at some later flush.
        self._file: io.FileIO | None = io.FileIO(self._staged.path, "w")
        self._size = 0
        self._append([columns(self.classes)], "the header")

    def _append(self, rows: list[list], what: str) -> None:
        text = io.StringIO()
        csv.writer(text).writerows(rows)
        data = memoryview(text.getvalue().encode())
        size = len(data)
        try:
            while data:
                data = data[self._file.write(data):]
        except OSError as e:
            if not self._staged.in_place:  # cut what the failed write left of a row: the file ends with a whole row
                os.ftruncate(self._file.fileno(), self._size)
            raise SinkError(f"cannot write {self.path}: {e.strerror}; it keeps the rows before {what}") from None
        self._size += size

    def write(self, frame: Frame, faces: Faces) -> None:
        self.frames += 1
        rows = [csv_cells(r, self.classes) for r in records(frame, faces, self.classes, self.every_frame)]
        if rows:
            self._append(rows, f"frame {frame.index}")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
            self._staged.commit()

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is not None and self.frames == 0 and self._file is not None:
            # A run that failed before its first frame leaves the target as it was.
            self._file.close()
            self._file = None
            self._staged.discard()
        self.close()


def stderr_fd() -> int:
    """The descriptor behind sys.stderr (2 where it has none, as under a test runner's capture)."""
    try:
        return sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        return 2


class JsonlSink(Sink):
    """The records as JSON lines (one object per face per frame; with ``every_frame`` also one per frame without a
    face), flushed every frame so that another process can read them live. ``-`` is standard output: while the sink
    is open, everything else the process prints goes to standard error. A reader that goes away stops the run."""

    def __init__(self, path: Path | str, classes: tuple[str, ...], every_frame: bool = False) -> None:
        self.classes, self.every_frame = tuple(classes), every_frame
        self._stdout: int | None = None
        if str(path) == "-":
            # Keep the real stdout for the records and point descriptor 1 where sys.stderr writes (descriptor 2 may
            # have been silenced for C libraries), so that nothing else, not even a C library's output, lands in the
            # stream.
            sys.stdout.flush()
            self._stdout = os.dup(1)
            os.dup2(stderr_fd(), 1)
            self._file: TextIO | None = os.fdopen(os.dup(self._stdout), "w")
            return
        # Written in place, not staged: a reader follows this very file (or FIFO) while the run goes on.
        path = writable(Path(path))
        try:
            self._file = open(path, "w")
        except OSError as e:
            raise SinkError(f"cannot write {path}: {e.strerror}") from None

    def write(self, frame: Frame, faces: Faces) -> None:
        if self._file is None:
            return
        lines = "".join(json.dumps(r, separators=(",", ":")) + "\n"
                        for r in records(frame, faces, self.classes, self.every_frame))
        if not lines:
            return
        try:
            self._file.write(lines)
            self._file.flush()
        except BrokenPipeError:  # the reader is gone: nobody wants more
            self.stop = True
            self._drop()

    def _drop(self) -> None:
        try:
            self._file.close()
        except BrokenPipeError:
            pass
        self._file = None

    def close(self) -> None:
        if self._file is not None:
            self._drop()
        if self._stdout is not None:
            sys.stdout.flush()
            os.dup2(self._stdout, 1)
            os.close(self._stdout)
            self._stdout = None


class VideoSink(Sink):
    """The annotated frames as a video (codec mp4v) at ``fps``, the frame size taken from the first frame. It is
    written to NAME.partial.EXT beside ``path``, read back when the sink closes (OpenCV's writer reports no write
    errors, so a full disk would pass unseen) and only then renamed to ``path``."""

    overlay = True
    FOURCC = "mp4v"

    def __init__(self, path: Path, fps: float) -> None:
        self._staged = Staged(video_name(path))
        self.path, self.fps, self.frames = self._staged.target, fps, 0
        self._writer = self._open((16, 16))  # checks the codec now rather than at the first frame
        self._writer.release()
        self._writer = None

    def _open(self, size: tuple[int, int]) -> cv2.VideoWriter:
        writer = cv2.VideoWriter(str(self._staged.path), cv2.VideoWriter_fourcc(*self.FOURCC), self.fps, size)
        if not writer.isOpened():
            self._staged.discard()
            raise SinkError(f"cannot write the video {self.path}: OpenCV here cannot encode {self.FOURCC} into it")
        return writer

    def write(self, frame: Frame, faces: Faces) -> None:
        if self._writer is None:
            h, w = frame.image.shape[:2]
            self._writer = self._open((w, h))
        # Counted first: a stop signal can land between two statements, and then the file holds this frame or not.
        self.frames += 1
        self._writer.write(frame.image)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        if self._staged.done:
            return
        if self.frames == 0:
            self._staged.discard()
            return
        problem = video_problem(self._staged.path, self.frames)
        if problem:
            self._staged.discard()
            raise SinkError(f"could not write the video {self.path}: {problem} (is the disk full?); nothing was kept")
        self._staged.commit()


def video_name(path: Path) -> Path:
    """``path`` if its suffix names a container the video sink writes, else SinkError."""
    path = Path(path)
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise SinkError(f"cannot write the video {path}: name it {', '.join(VIDEO_SUFFIXES)}")
    return path


def video_problem(path: Path, frames: int) -> str | None:
    """What is wrong with a video just written with ``frames`` frames (None if it reads back whole)."""
    cap = open_capture(str(path))
    try:
        if not cap.isOpened():
            return "the file it wrote cannot be read back"
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        if not frames - 1 <= count <= frames:  # one less when a stop signal came just before the last frame's write
            return f"the file it wrote holds {count} of {frames} frames"
        cap.set(cv2.CAP_PROP_POS_FRAMES, count - 1)
        if not cap.read()[0]:
            return "the last frame it wrote cannot be decoded"
        return None
    finally:
        cap.release()


class Window(Sink):
    """A preview window with the overlay; q or Esc (or closing the window) stops the run."""

    overlay = True

    def __init__(self, title: str = "emocam") -> None:
        if sys.platform.startswith("linux"):
            # OpenCV's Qt backend aborts the whole process when it cannot reach a display, so check first.
            display = os.environ.get("WAYLAND_DISPLAY") or os.environ.get("DISPLAY")
            if not display:
                raise SinkError("no display (DISPLAY is not set)")
            if not window_opens():
                raise SinkError(f"no window opens on display {display}")
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


def window_opens(timeout_s: float = 20.0) -> bool:
    """Whether OpenCV can open a window here, tried in a child process, where Qt's abort cannot reach us."""
    probe = "import cv2; cv2.namedWindow('emocam'); cv2.waitKey(1); cv2.destroyAllWindows()"
    try:
        return subprocess.run([sys.executable, "-c", probe], capture_output=True, timeout=timeout_s).returncode == 0
    except subprocess.TimeoutExpired:
        return False


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
    optionally saved as JSON and as a PNG of each face's smoothed probabilities over time. Frames in which a face
    failed the quality gate count apart, as uncertain seconds, and not in its shares."""

    def __init__(self, classes: tuple[str, ...], json_path: Path | None = None, plot_path: Path | None = None,
                 out: TextIO | None = None, max_plotted: int = 8) -> None:
        self.classes = tuple(classes)
        if plot_path is not None:
            plot_format(plot_path)
        # Claimed now, so that a folder that cannot be written is found before the run; filled and renamed at close.
        self._json = None if json_path is None else Staged(json_path)
        try:
            self._plot = None if plot_path is None else Staged(plot_path)
        except SinkError:
            if self._json is not None:
                self._json.discard()
            raise
        self.json_path = None if self._json is None else self._json.target
        self.plot_path = None if self._plot is None else self._plot.target
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
                face = self._faces[track] = {"frames": 0, "uncertain": 0,
                                             "labels": np.zeros(len(self.classes), np.int64),
                                             "first_s": frame.timestamp_s, "timeline": Timeline(len(self.classes))}
            face["frames"] += 1
            face["last_s"] = frame.timestamp_s
            if faces.labels[i] < 0:
                face["uncertain"] += 1
                continue
            face["labels"][faces.labels[i]] += 1
            if self.plot_path is not None:
                face["timeline"].add(frame.timestamp_s, faces.smoothed[i])

    def frame_s(self) -> float:
        """Mean time between processed frames (0 before two frames)."""
        return (self._last_s - self._first_s) / (self._frames - 1) if self._frames > 1 else 0.0

    def report(self) -> dict:
        """The summary as a JSON-ready dict, faces longest on screen first."""
        frame_s = self.frame_s()
        faces = []
        for track, f in self._faces.items():
            shares = f["labels"] / max(f["labels"].sum(), 1)
            faces.append({"face_id": track, "seconds": round(f["frames"] * frame_s, 3), "frames": f["frames"],
                          "uncertain_s": round(f["uncertain"] * frame_s, 3), "uncertain_frames": f["uncertain"],
                          "first_s": round(f["first_s"], 3), "last_s": round(f["last_s"], 3),
                          "dominant": self.classes[int(shares.argmax())] if f["labels"].any() else None,
                          "shares": {c: round(float(s), 4) for c, s in zip(self.classes, shares)}})
        faces.sort(key=lambda f: (-f["frames"], f["face_id"]))
        return {"frames": self._frames, "duration_s": round(self._frames * frame_s, 3), "classes": list(self.classes),
                "faces": faces}

    def table(self, report: dict) -> str:
        """The report as a short text table."""
        head = f"{'face':>5} {'seconds':>8} {'uncertain':>9}  " + " ".join(f"{c[:8]:>8}" for c in self.classes)
        rows = [f"{f['face_id']:>5} {f['seconds']:>8.1f} {f['uncertain_s']:>9.1f}  "
                + " ".join(f"{f['shares'][c]:>8.0%}" for c in self.classes) for f in report["faces"]]
        return "\n".join([f"{report['frames']} frames, {len(rows)} face(s)", head, *rows])

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        staged = [s for s in (self._json, self._plot) if s is not None]
        if self._frames == 0:  # a run that failed before its first frame has nothing to tell
            for s in staged:
                s.discard()
            return
        report = self.report()
        print(self.table(report), file=self.out or sys.stdout, flush=True)
        writes = {self._json: lambda path: path.write_text(json.dumps(report, indent=2) + "\n"),
                  self._plot: lambda path: self.plot(report, path)}
        errors = []
        for s in staged:  # each file on its own: one that cannot be written does not cost the other
            try:
                s.fill(writes[s])
            except SinkError as e:
                errors.append(e)
        if errors:
            raise errors[0]

    def plot(self, report: dict, path: Path | None = None) -> None:
        """Each face's smoothed probabilities over time, one panel per face, as an image (PNG, or as ``path`` is named)."""
        from matplotlib.figure import Figure  # a bare Figure renders with Agg and never opens a window

        shown = [f["face_id"] for f in report["faces"][:self.max_plotted]]
        fig = Figure(figsize=(10, 1.2 + 2.0 * max(len(shown), 1)), layout="constrained")
        axes = fig.subplots(max(len(shown), 1), 1, squeeze=False)[:, 0]
        for ax, track in zip(axes, shown):
            times, probs = self._faces[track]["timeline"].points()
            for k, name in enumerate(self.classes):
                ax.plot(times, probs[:, k], label=name, linewidth=1.2)
            ax.set_ylim(0, 1)
            ax.set_ylabel(f"face {track}")
        if not shown:
            axes[0].text(0.5, 0.5, "no face", ha="center", va="center", transform=axes[0].transAxes)
        axes[0].legend(loc="upper right", ncol=len(self.classes), fontsize="small")
        axes[-1].set_xlabel("time (s)")
        path = Path(path or self.plot_path)
        fig.savefig(path, dpi=100, format=plot_format(path))


def plot_format(path: Path) -> str:
    """The image format matplotlib writes for ``path``'s suffix; SinkError for one it cannot write."""
    from matplotlib.backend_bases import FigureCanvasBase

    kinds = FigureCanvasBase.get_supported_filetypes()
    kind = Path(path).suffix.lower().lstrip(".")
    if kind not in kinds:
        raise SinkError(f"cannot write the plot {path}: name it .png (or .pdf, .svg, .jpg: a type matplotlib writes)")
    return kind


class Timeline:
    """A face's smoothed probabilities over time in at most ``points`` points: when full, neighbouring points are
    averaged in pairs and each later point averages twice as many frames, so a day-long run uses no more memory than
    a short one."""

    def __init__(self, classes: int, points: int = 1024) -> None:
        self.points_max, self.per_point, self.n = points, 1, 0
        # Sums of time and probabilities per point, and the frames in each; grown as needed up to points_max.
        self._sums = np.zeros((0, 1 + classes))
        self._counts = np.zeros(0, np.int64)

    def add(self, timestamp_s: float, probs: np.ndarray) -> None:
        """Take one frame's probabilities."""
        if self.n == 0 or self._counts[self.n - 1] >= self.per_point:
            if self.n == self.points_max:
                self._halve()
            if self.n == len(self._counts):  # grow by doubling: most tracks are short
                grow = min(max(16, 2 * self.n), self.points_max) - self.n
                self._sums = np.concatenate([self._sums, np.zeros((grow, self._sums.shape[1]))])
                self._counts = np.concatenate([self._counts, np.zeros(grow, np.int64)])
            self.n += 1
        self._sums[self.n - 1, 0] += timestamp_s
        self._sums[self.n - 1, 1:] += probs
        self._counts[self.n - 1] += 1

    def _halve(self) -> None:
        half = self.n // 2
        self._sums[:half] = self._sums[0:2 * half:2] + self._sums[1:2 * half:2]
        self._counts[:half] = self._counts[0:2 * half:2] + self._counts[1:2 * half:2]
        self._sums[half:], self._counts[half:] = 0.0, 0
        self.n, self.per_point = half, 2 * self.per_point

    def points(self) -> tuple[np.ndarray, np.ndarray]:
        """Times (n,) and mean probabilities (n, classes) of the points so far."""
        mean = self._sums[:self.n] / self._counts[:self.n, None]
        return mean[:, 0], mean[:, 1:]


GATED = (128, 128, 128)  # faces the quality gate does not label
PALETTE = [(66, 135, 245), (80, 200, 120), (0, 165, 255), (220, 80, 200), (40, 200, 230), (230, 120, 60)]


def annotate(image: np.ndarray, faces: Faces, classes: tuple[str, ...], fps: float | None = None) -> np.ndarray:
    """Draw, in place, each face's box, id, label with confidence and per-class bars, and the fps; returns ``image``.
    A face that failed the quality gate is drawn grey, with the reason instead of a label and no bars."""
    font, height, width = cv2.FONT_HERSHEY_SIMPLEX, image.shape[0], image.shape[1]
    probs = faces.smoothed if faces.smoothed is not None else faces.probs
    verdicts = faces.passed
    for i in range(len(faces)):
        x, y, w, h = (int(round(v)) for v in faces.boxes[i].tolist())
        track = int(faces.track_ids[i])
        passed = verdicts[i]
        colour = GATED if not passed else PALETTE[track % len(PALETTE)] if track >= 0 else (200, 200, 200)
        cv2.rectangle(image, (x, y), (x + w, y + h), colour, 1 if not passed else 2)
        text = f"#{track}" if track >= 0 else "face"
        if not passed:
            text += f" ({faces.quality[i]})"
        elif probs is not None:
            k = int(faces.labels[i]) if faces.labels is not None else int(probs[i].argmax())
            text += f" {classes[k]} {probs[i][k]:.0%}"
        cv2.putText(image, text, (x, max(y - 6, 14)), font, 0.55, colour, 2, cv2.LINE_AA)
        if probs is None or not passed:
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
