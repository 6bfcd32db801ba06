"""Frames with timestamps from a camera, a device path, a network stream or a video file."""

from __future__ import annotations

import os
import queue
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

# Still images (anything else that is a file is read as a video).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".jp2", ".pgm", ".ppm", ".pbm")
STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")
# A file whose decoder stops before this share of the frames its container lists ended early (cut or corrupt); a few
# frames short is common in good files (the sample no_face.mp4 lists 98 and decodes 95).
DECODED_SHARE = 0.95
# Seconds a stream may take to connect, or to send its next frame, before it is given up (emocam --timeout).
STREAM_TIMEOUT_S = 10.0


class SourceError(Exception):
    """A source that cannot be opened or that failed while running; the message is one line for the user."""


class EndedEarly(SourceError):
    """A video file whose frames stopped well before the count its container gives (cut short), or that lost frames
    to damage in the middle; the frames that could be decoded were all delivered."""


def stream_url(text: str) -> bool:
    """Whether ``text`` is a network stream's URL (rtsp://, http://, ...) rather than a path."""
    return str(text).lower().startswith(STREAM_SCHEMES)


def capture_device(path: str) -> bool:
    """Whether ``path`` is a character device (a V4L2 camera such as /dev/video0), not a file that lives under /dev."""
    try:
        return stat.S_ISCHR(os.stat(path).st_mode)
    except OSError:
        return False


@dataclass(frozen=True)
class Frame:
    """One decoded BGR frame; ``timestamp_s`` is the container time for files, seconds since start for live."""

    index: int
    timestamp_s: float
    image: np.ndarray


class Source:
    """An iterable of frames and a context manager; ``decode_s`` accumulates the time spent decoding."""

    name: str
    live: bool
    fps: float
    frame_count: int | None
    decode_s: float

    def __iter__(self) -> Iterator[Frame]:
        """The frames in order; a live source raises SourceError when the camera or stream goes away."""
        raise NotImplementedError

    def close(self) -> None:
        """Stop the reading thread and release the device or file."""
        raise NotImplementedError

    def __enter__(self) -> "Source":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_capture(target: int | str, timeout_s: float | None = None) -> cv2.VideoCapture:
    """A cv2.VideoCapture opened without OpenCV's own warnings on stderr (we report failures ourselves); with
    ``timeout_s`` (streams, through FFmpeg) connecting and each read give up after that long."""
    level = cv2.getLogLevel()
    cv2.setLogLevel(0)
    try:
        if timeout_s is None:
            cap = cv2.VideoCapture(target)
        else:
            ms = int(timeout_s * 1000)
            cap = cv2.VideoCapture(target, cv2.CAP_FFMPEG,
                                   [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms])
    finally:
        cv2.setLogLevel(level)
    # Turn frames by the container's rotation tag, as players do: a phone clip stored sideways is upright here.
    cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)
    return cap


class VideoFile(Source):
    """Every frame of a video file, decoded ahead in a background thread into a bounded queue."""

    live = False

    def __init__(self, path: Path, queue_size: int = 8) -> None:
        self.name = str(path)
        t0 = time.perf_counter()
        self._cap = open_capture(str(path))
        first = self._cap.read()[1] if self._cap.isOpened() else None
        self.decode_s = time.perf_counter() - t0
        if first is None:
            self._cap.release()
            raise SourceError(f"{path} is not a decodable video")
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps if 0 < fps < 1000 else 30.0
        count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT))
        self.frame_count = count if count > 0 else None
        self.decoded = 0
        self.ended_early: EndedEarly | None = None
        self._ended = False
        self._first = first
        self._queue: queue.Queue = queue.Queue(queue_size)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._decode, name="emocam-decode", daemon=True)
        self._thread.start()

    def _timestamp(self, index: int, last: float) -> float:
        t = self._cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
        # Some containers report no (or non-increasing) times; fall back to the nominal frame rate.
        return t if np.isfinite(t) and (t > last or index == 0) else index / self.fps

    def _short(self, index: int) -> bool:
        """Whether frames stopping at ``index`` is well short of the container's count."""
        return bool(self.frame_count) and index < DECODED_SHARE * self.frame_count

    def _decode(self) -> None:
        index, last, image = 0, -1.0, self._first
        self._first = None
        skipped = []  # (first, last) frames lost to damage, where decoding picked up again after them
        try:
            while image is not None and not self._stop.is_set():
                last = self._timestamp(index, last)
                self._put(Frame(index, last, image))
                self.decoded += 1
                t0 = time.perf_counter()
                ok, image = self._cap.read()
                index += 1
                if not ok and self._short(index):
                    ok, image, after = self._resync(index)
                    if ok:
                        skipped.append((index, after - 1))
                        index = after
                self.decode_s += time.perf_counter() - t0
                image = image if ok else None
            told = []
            if image is None and self._short(index):
                told.append(f"ended early: frames stopped at frame {index} of {self.frame_count} (the file is cut "
                            f"short or corrupt)")
            if skipped:
                told.append("frames " + ", ".join(f"{a}-{b}" for a, b in skipped) + " could not be decoded "
                            "(the file is damaged there) and were skipped")
            if told:
                self.ended_early = EndedEarly(f"{self.name} {'; '.join(told)}; the outputs hold the {self.decoded} "
                                              f"frames that could be read")
        finally:
            self._put(None)

    def _resync(self, index: int) -> tuple[bool, np.ndarray | None, int]:
        """After the decoder failed at frame ``index``, try to go on a second at a time further on (a seek lands on a
        key frame, past the damage): (found, its image, its index)."""
        step = max(1, round(self.fps))
        for after in range(index + step, self.frame_count, step):
            cap = open_capture(self.name)
            cap.set(cv2.CAP_PROP_POS_FRAMES, after)
            ok, image = cap.read()
            # Past the end of a cut file the seek fails and lands back before the cut: that frame is not ``after``.
            if ok and int(cap.get(cv2.CAP_PROP_POS_FRAMES)) == after + 1:
                self._cap.release()
                self._cap = cap
                return True, image, after
            cap.release()
            if self._stop.is_set():
                break
        return False, None, index

    def _put(self, item: Frame | None) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def __iter__(self) -> Iterator[Frame]:
        while not self._ended and not self._stop.is_set():
            try:
                frame = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            if frame is None:
                self._ended = True
                return
            yield frame

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._cap.release()


class LiveSource(Source):
    """A camera or stream read by a grabber thread that keeps only the newest frame, so a slow consumer
    always gets the latest image (stale frames are dropped; ``index`` counts every grabbed frame)."""

    live = True
    frame_count = None

    def __init__(self, capture: cv2.VideoCapture, name: str, stall_s: float = 5.0) -> None:
        self.name = name
        self._cap = capture
        fps = capture.get(cv2.CAP_PROP_FPS)
        self.fps = fps if 0 < fps < 1000 else 30.0
        self.decode_s = 0.0
        self._stall_s = stall_s
        self._latest: Frame | None = None
        self._error: SourceError | None = None
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._start = time.monotonic()
        self._thread = threading.Thread(target=self._grab, name="emocam-grab", daemon=True)
        self._thread.start()

    def _grab(self) -> None:
        index = 0
        try:
            while not self._stop.is_set():
                t0 = time.perf_counter()
                ok, image = self._cap.read()
                self.decode_s += time.perf_counter() - t0
                with self._cond:
                    if not ok:
                        if not self._stop.is_set():
                            self._error = SourceError(f"{self.name} disconnected (no more frames)")
                        self._cond.notify_all()
                        return
                    self._latest = Frame(index, time.monotonic() - self._start, image)
                    self._cond.notify_all()
                index += 1
        finally:
            # Released here, never from another thread while a read may be blocking.
            self._cap.release()

    def __iter__(self) -> Iterator[Frame]:
        last = -1
        while True:
            with self._cond:
                fresh = lambda: (self._stop.is_set() or self._error is not None  # noqa: E731
                                 or (self._latest is not None and self._latest.index > last))
                if not self._cond.wait_for(fresh, timeout=self._stall_s):
                    raise SourceError(f"{self.name} sent no frame for {self._stall_s:g} s")
                if self._stop.is_set():
                    return
                # Deliver what was grabbed before a disconnect, then report it.
                if self._latest is not None and self._latest.index > last:
                    frame = self._latest
                else:
                    raise self._error
            last = frame.index
            yield frame

    def close(self) -> None:
        with self._cond:
            self._stop.set()
            self._cond.notify_all()
        self._thread.join(timeout=2.0)


class ImageFile(Source):
    """A still image as a source of one frame (index 0, time 0)."""

    live = False
    fps = 1.0
    frame_count = 1
    ended_early = None

    def __init__(self, path: Path) -> None:
        self.name = str(path)
        t0 = time.perf_counter()
        self.image = read_image(path)
        self.decode_s = time.perf_counter() - t0

    def __iter__(self) -> Iterator[Frame]:
        yield Frame(0, 0.0, self.image)

    def close(self) -> None:
        pass


def read_image(path: Path) -> np.ndarray:
    """A BGR image from a file (any format OpenCV decodes); SourceError if it cannot be read or decoded."""
    try:
        data = np.fromfile(str(path), np.uint8)
    except OSError as e:
        raise SourceError(f"cannot read {path}: {e.strerror}") from None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise SourceError(f"{path} is not a decodable image")
    return image


def open_source(spec: str | int | Path, live: bool | None = None, timeout_s: float = STREAM_TIMEOUT_S) -> Source:
    """A camera index ("0"), device path (/dev/video0), stream URL (rtsp://, http://...), video or image file.

    ``live`` forces the newest-frame-only reading (True) or the every-frame reading (False); by default
    cameras and streams are live, files are not. A stream that does not connect or send a frame within
    ``timeout_s`` is a SourceError.
    """
    text = str(spec)
    if live is False and stream_url(text):
        raise SourceError(f"cannot read every frame of the stream {text}; streams are live: use --source {text}")
    if text.isdigit() and live is not False:
        cap = open_capture(int(text))
        if not cap.isOpened():
            raise SourceError(f"camera {text} cannot be opened (is it connected and not used by another program?)")
        return LiveSource(cap, f"camera {text}")
    if stream_url(text):
        start = time.monotonic()
        cap = open_capture(text, timeout_s)
        if not cap.isOpened():
            if time.monotonic() - start >= 0.9 * timeout_s:
                raise SourceError(f"stream {text} did not answer within {timeout_s:g} s (check that the server is up; "
                                  f"--timeout sets how long to wait)")
            raise SourceError(f"stream {text} cannot be opened (check the URL and that the server is up)")
        return LiveSource(cap, f"stream {text}", stall_s=timeout_s)
    path = Path(text)
    if text.startswith("/dev/") and live is not False and not path.exists():
        raise SourceError(f"camera device {text} does not exist")
    if live is not False and capture_device(text):
        cap = open_capture(text)
        if not cap.isOpened():
            raise SourceError(f"camera {text} cannot be opened (is it a camera and not used by another program?)")
        return LiveSource(cap, f"camera {text}")
    if not path.exists():
        raise SourceError(f"video file not found: {text}")
    if not path.is_file():
        raise SourceError(f"{text} is not a file")
    if path.suffix.lower() in IMAGE_SUFFIXES and not live:
        return ImageFile(path)
    if live:
        cap = open_capture(text)
        if not cap.isOpened():
            raise SourceError(f"{text} is not a decodable video")
        return LiveSource(cap, text)
    return VideoFile(path)
