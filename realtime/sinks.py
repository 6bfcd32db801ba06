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
import time
from fractions import Fraction
from pathlib import Path
from typing import TextIO

import av
import cv2

from .faces import Faces, Frame
from .outputs import SinkError, Staged, append_whole, silence, writable
from .overlay import annotate_rate
from .records import columns, csv_cells, records
from .sources import IMAGE_SUFFIXES, Source, open_capture


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


# Containers that take the H.264 stream: the names an annotated video may have (an annotated image: IMAGE_SUFFIXES).
H264_SUFFIXES = (".mp4", ".mov", ".m4v", ".mkv", ".avi")


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
        self._append([columns(self.classes)], "the header")

    def _append(self, rows: list[list], what: str) -> None:
        text = io.StringIO()
        csv.writer(text).writerows(rows)
        try:
            append_whole(self._file.fileno(), text.getvalue().encode(), self.path, f"rows before {what}")
        except BrokenPipeError:  # a FIFO whose reader left: it gets no more rows
            raise SinkError(f"cannot write {self.path}: its reader went away; it got the rows before {what}") from None

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
    face), each frame's written whole at once so that another process can read them live; on a full disk the file
    keeps whole records and the sink stops with a SinkError. ``-`` is standard output: while the sink is open,
    everything else the process prints goes to standard error.

    A reader that goes away (a closed pipe) is an ordinary end, told in one line: while ``alone`` (nothing else takes
    the frames; the caller says otherwise once it knows) the sink stops the run, else it takes no more records and
    the run goes on."""

    alone = True

    def __init__(self, path: Path | str, classes: tuple[str, ...], every_frame: bool = False) -> None:
        self.classes, self.every_frame = tuple(classes), every_frame
        self._stdout: int | None = None
        self.gone = False
        if str(path) == "-":
            # Keep the real stdout for the records and point descriptor 1 where sys.stderr writes (descriptor 2 may
            # have been silenced for C libraries), so that nothing else, not even a C library's output, lands in the
            # stream.
            sys.stdout.flush()
            self._stdout = os.dup(1)
            os.dup2(stderr_fd(), 1)
            self.name, self._fd = "standard output", os.dup(self._stdout)
            return
        # Written in place, not staged: a reader follows this very file (or FIFO) while the run goes on.
        path = writable(Path(path))
        try:
            self._fd: int | None = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        except OSError as e:
            raise SinkError(f"cannot write {path}: {e.strerror}") from None
        self.name = str(path)

    def write(self, frame: Frame, faces: Faces) -> None:
        if self._fd is None:
            return
        lines = "".join(json.dumps(r, separators=(",", ":")) + "\n"
                        for r in records(frame, faces, self.classes, self.every_frame))
        if not lines:
            return
        try:
            append_whole(self._fd, lines.encode(), self.name, f"records before frame {frame.index}")
        except BrokenPipeError:
            self._gone(frame.index)

    def _gone(self, index: int) -> None:
        """The reader went away at frame ``index``: no more records; the run stops if nothing else takes them."""
        os.close(self._fd)
        self._fd, self.gone = None, True
        self.stop = self.alone
        then = "stopping: there is no other output" if self.alone else "going on without it"
        from tqdm import tqdm  # on a line of its own, not after a progress bar's

        tqdm.write(f"emocam: the reader of --jsonl ({self.name}) went away at frame {index}; {then}", file=sys.stderr)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._stdout is not None:
            sys.stdout.flush()
            os.dup2(self._stdout, 1)
            os.close(self._stdout)
            self._stdout = None
            if self.gone:  # later prints to standard output, and Python's flush at exit, go nowhere
                silence(1)


class VideoSink(Sink):
    """The annotated frames as H.264 video (yuv420p: what browsers, chat apps and players take), each frame at its own
    timestamp, the size taken from the first frame (padded by a pixel where odd: H.264 wants even sides). It is written
    to NAME.partial.EXT beside ``path``, read back when the sink closes, and only then renamed to ``path``."""

    overlay = True
    CODEC = "libx264"
    # x264's default quality with a fast preset: smaller than a camera's own H.264 of the same clip (WolfgangLanger:
    # 1.10 MB for its 1.63 MB), encoded well ahead of the pipeline.
    ENCODER = {"crf": "23", "preset": "veryfast"}
    TIME_BASE = Fraction(1, 90000)  # the MPEG clock: frame times kept to 11 microseconds

    def __init__(self, path: Path, fps: float) -> None:
        self._staged = Staged(video_name(path))
        self.path, self.fps, self.frames = self._staged.target, fps, 0
        try:  # the codec is checked now rather than at the first frame
            av.codec.Codec(self.CODEC, "w")
        except av.codec.codec.UnknownCodecError:
            self._staged.discard()
            raise SinkError(f"cannot write the video {self.path}: this PyAV has no {self.CODEC} encoder") from None
        self._container: av.container.OutputContainer | None = None
        self._stream = None
        self._first_s, self._last_pts = None, -1

    def _open(self, width: int, height: int) -> None:
        self._container = av.open(str(self._staged.path), "w")
        self._stream = self._container.add_stream(self.CODEC, rate=Fraction(self.fps).limit_denominator(1001))
        self._stream.width, self._stream.height, self._stream.pix_fmt = width, height, "yuv420p"
        self._stream.codec_context.time_base = self.TIME_BASE
        self._stream.options = dict(self.ENCODER)

    def write(self, frame: Frame, faces: Faces) -> None:
        image = frame.image
        h, w = image.shape[:2]
        if h % 2 or w % 2:
            image = cv2.copyMakeBorder(image, 0, h % 2, 0, w % 2, cv2.BORDER_REPLICATE)
        if self._container is None:
            self._open(image.shape[1], image.shape[0])
            self._first_s = frame.timestamp_s
        # Counted first: a stop signal can land between two statements, and then the file holds this frame or not.
        self.frames += 1
        picture = av.VideoFrame.from_ndarray(image, format="bgr24")
        pts = int(round((frame.timestamp_s - self._first_s) / self.TIME_BASE))
        picture.pts = self._last_pts = max(pts, self._last_pts + 1)
        picture.time_base = self.TIME_BASE
        self._encode(picture)

    def _encode(self, picture: av.VideoFrame | None) -> None:
        try:
            self._container.mux(self._stream.encode(picture))
        except (OSError, av.error.FFmpegError) as e:  # a full disk, a file system gone: told, nothing kept
            self._abandon()
            raise SinkError(f"could not write the video {self.path}: {getattr(e, 'strerror', None) or e}; nothing "
                            f"was kept") from None

    def _abandon(self) -> None:
        try:
            self._container.close()
        except (OSError, av.error.FFmpegError):
            pass
        self._container = None
        self._staged.discard()

    def close(self) -> None:
        if self._container is not None:
            self._encode(None)  # the frames still inside the encoder
            try:
                self._container.close()
            except (OSError, av.error.FFmpegError) as e:
                self._abandon()
                raise SinkError(f"could not write the video {self.path}: {getattr(e, 'strerror', None) or e}; "
                                f"nothing was kept") from None
            self._container = None
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


class ImageSink(Sink):
    """The annotated frame of an image as an image file (the format its suffix names, the image's own size), staged
    beside ``path``, read back, then renamed to ``path`` when the sink closes."""

    overlay = True

    def __init__(self, path: Path) -> None:
        self._staged = Staged(image_name(path))
        self.path = self._staged.target
        self._image = None

    def write(self, frame: Frame, faces: Faces) -> None:
        self._image = frame.image.copy()  # the frame's array may be reused once the run moves on

    def close(self) -> None:
        if self._staged.done:
            return
        if self._image is None:
            self._staged.discard()
            return
        self._staged.fill(self._write)

    def _write(self, path: Path) -> None:
        """Encode and write the image to ``path`` and read it back: SinkError (nothing replaced) if it is not whole."""
        ok, data = cv2.imencode(self.path.suffix.lower(), self._image)
        path.write_bytes(data.tobytes())
        back = cv2.imread(str(path))
        if not ok or back is None or back.shape[:2] != self._image.shape[:2]:
            raise SinkError(f"could not write the image {self.path}: it does not read back whole; nothing was kept")


def annotated_output(path: Path) -> str:
    """"video" or "image", the kind of annotated output ``path``'s suffix names; SinkError for any other suffix."""
    suffix = Path(path).suffix.lower()
    if suffix in H264_SUFFIXES:
        return "video"
    if suffix in IMAGE_SUFFIXES:
        return "image"
    raise SinkError(f"cannot write the video {path}: name it {', '.join(H264_SUFFIXES)} (or, for an image input, "
                    f"{', '.join(IMAGE_SUFFIXES[:4])} ...)")


def video_name(path: Path) -> Path:
    """``path`` if its suffix names a container the video sink writes, else SinkError."""
    if annotated_output(path) != "video":
        raise SinkError(f"cannot write the video {path}: it is an image name; name it {', '.join(H264_SUFFIXES)}")
    return Path(path)


def image_name(path: Path) -> Path:
    """``path`` if its suffix names an image format the image sink writes, else SinkError."""
    if annotated_output(path) != "image":
        raise SinkError(f"cannot write the image {path}: it is a video name; name it .jpg or .png")
    return Path(path)


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
    """A preview window with the overlay and the rate at which frames are shown; q or Esc (or closing the window)
    stops the run. With ``pace``, a file plays at its own speed (each frame shown at its timestamp), not as fast as it
    is processed; with ``hold`` (an image), the window stays open after the run until a key is pressed or it is
    closed."""

    overlay = True

    def __init__(self, title: str = "emocam", pace: bool = False, hold: bool = False) -> None:
        if sys.platform.startswith("linux"):
            # OpenCV's Qt backend aborts the whole process when it cannot reach a display, so check first.
            display = os.environ.get("WAYLAND_DISPLAY") or os.environ.get("DISPLAY")
            if not display:
                raise SinkError("no display (DISPLAY is not set)")
            if not window_opens():
                raise SinkError(f"no window opens on display {display}")
        self.title, self.hold = title, hold
        self.clock = Playback() if pace else None
        self._rate = Rate()
        self._shown = False

    def write(self, frame: Frame, faces: Faces) -> None:
        if self._shown and not self._visible():
            self.stop = True
            return
        fps = self._rate.tick()
        image = frame.image if fps is None else annotate_rate(frame.image.copy(), fps)
        cv2.imshow(self.title, image)
        self._shown = True
        wait_ms = 1 if self.clock is None else max(1, round(1e3 * self.clock.wait_s(frame.timestamp_s)))
        if (cv2.waitKey(wait_ms) & 0xFF) in (ord("q"), 27):
            self.stop = True

    def _visible(self) -> bool:
        return cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) >= 1

    def close(self) -> None:
        if self._shown:
            if self.hold and not self.stop:
                print("emocam: press a key in the window to close it", file=sys.stderr, flush=True)
                while self._visible() and cv2.waitKey(100) == -1:
                    pass
            cv2.destroyWindow(self.title)
            cv2.waitKey(1)
            self._shown = False


class Playback:
    """A file's clock for the window: how long to wait so that each frame is shown when its timestamp says, counted
    from the first frame shown (a run that falls behind shows frames as they come, it does not skip)."""

    def __init__(self) -> None:
        self._start: tuple[float, float] | None = None  # wall time and timestamp of the first frame

    def wait_s(self, timestamp_s: float) -> float:
        """Seconds from now until the frame at ``timestamp_s`` is due (0 if it is late)."""
        now = time.perf_counter()
        if self._start is None:
            self._start = (now, timestamp_s)
        return max(0.0, self._start[0] + timestamp_s - self._start[1] - now)


class Rate:
    """Frames per second, smoothed over the last frames, from the wall time between calls (None before two)."""

    def __init__(self) -> None:
        self.fps: float | None = None
        self._last: float | None = None

    def tick(self) -> float | None:
        """Count one frame now; the rate so far."""
        now = time.perf_counter()
        if self._last is not None and now > self._last:
            self.fps = 1.0 / (now - self._last) if self.fps is None else 0.9 * self.fps + 0.1 / (now - self._last)
        self._last = now
        return self.fps


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


class StreamProgress(Sink):
    """A live source's progress without a window, on stderr: frames, frames per second, lag (seconds from a frame's
    arrival to its results) and frames the source dropped. Rewritten in place on a terminal, a line every ``every_s``
    seconds elsewhere (a log), and a last line when the run ends."""

    def __init__(self, source: Source, out: TextIO | None = None, every_s: float | None = None) -> None:
        self.source, self.out = source, out or sys.stderr
        self._tty = self.out.isatty()
        self.every_s = every_s if every_s is not None else 0.5 if self._tty else 10.0
        self.frames, self.lag_s = 0, 0.0
        self._start = self._next = None
        self._closed = False

    def write(self, frame: Frame, faces: Faces) -> None:
        now = time.monotonic()
        if self._start is None:
            self._start, self._next = now, now + self.every_s
        self.frames += 1
        self.lag_s = self.source.age_s(frame)
        if now >= self._next:
            self._next = now + self.every_s
            self._show(now, end="\r" if self._tty else "\n")

    def line(self, now: float) -> str:
        """The progress as one line."""
        fps = (self.frames - 1) / (now - self._start) if now > self._start else 0.0
        return (f"emocam: {self.source.name}: {self.frames} frames, {fps:.1f} fps, lag {self.lag_s:.2f} s, "
                f"{self.source.dropped} dropped")

    def _show(self, now: float, end: str) -> None:
        print(self.line(now) + ("\x1b[K" if self._tty else ""), end=end, file=self.out, flush=True)

    def close(self) -> None:
        if self.frames and not self._closed:
            self._show(time.monotonic(), end="\n")
        self._closed = True
