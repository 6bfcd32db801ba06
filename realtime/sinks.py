"""Where results go: a preview window, a CSV file, a JSON-lines stream, an annotated video, a progress bar (the
summary is in ``emocam.summary``, the overlay drawing in ``emocam.overlay``, file safety in ``emocam.outputs``).

Every sink is a context manager with ``write(frame, faces)``, so an interrupted run still closes them cleanly.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TextIO

import cv2

from .faces import Faces, Frame
from .outputs import SinkError, Staged, writable
from .records import columns, csv_cells, records
from .sources import open_capture


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
