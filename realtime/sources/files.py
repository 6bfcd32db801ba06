"""File sources: every frame of a video file, decoded ahead in a thread, and a still image as a one-frame source."""

from __future__ import annotations

import queue
import re
import threading
import time
import warnings
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from ..faces import Frame
from .base import MAX_PIXELS, EndedEarly, Source, SourceError, frames_within, open_capture, size_problem

# Still images (anything else that is a file is read as a video).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".jp2", ".pgm", ".ppm", ".pbm")
# What a search of a folder takes for a video (a file named on its own is read whatever its name).
VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".mkv", ".avi", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".ts", ".3gp",
                  ".gif", ".m2ts", ".mts", ".ogv")
# A file whose decoder stops before this share of the frames its container lists ended early (cut or corrupt); a few
# frames short is common in good files (the sample no_face.mp4 lists 98 and decodes 95).
DECODED_SHARE = 0.95


class VideoFile(Source):
    """Every frame of a video file, decoded ahead in a background thread into a bounded queue."""

    live = False

    def __init__(self, path: Path, queue_size: int = 8) -> None:
        self.name = str(path)
        t0 = time.perf_counter()
        self._cap = open_capture(str(path))
        if self._cap.isOpened():  # the container's frame size, checked before a frame is decoded
            problem = size_problem(int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
                                   int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
            if problem:
                self._cap.release()
                raise SourceError(f"{path} is {problem}")
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
        self.frame_bytes = first.nbytes
        self._queue: queue.Queue = queue.Queue(frames_within(self.frame_bytes, queue_size))
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
        """After the decoder failed at frame ``index``, try to go on further on (a seek lands on a key frame, past the
        damage): (found, its image, its index). Seeks 1, 2, 4, 8 ... seconds on until one lands or the file's last
        frame fails too (a file cut short: every seek past the cut fails), then halves the gap back to within a second
        of the earliest frame that lands. So a cut file is opened a few times, not once for every second it lacks."""
        step = max(1, round(self.fps))
        failed, offset, found = index, step, None
        while found is None:
            at = min(index + offset, self.frame_count - 1)
            if at <= failed:
                return False, None, index
            found = self._seek(at)
            if found is None:
                failed, offset = at, 2 * offset
        while at - failed > step:
            mid = (failed + at) // 2
            nearer = self._seek(mid)
            if nearer is None:
                failed = mid
            else:
                found[0].release()
                found, at = nearer, mid
        self._cap.release()
        self._cap, image = found
        return True, image, at

    def _seek(self, position: int) -> tuple[cv2.VideoCapture, np.ndarray] | None:
        """A new capture of this file that has just read frame ``position``, and that frame; None where the seek does
        not get there (past the end of a cut file it lands back before the cut)."""
        cap = open_capture(self.name)
        cap.set(cv2.CAP_PROP_POS_FRAMES, position)
        ok, image = cap.read()
        if ok and int(cap.get(cv2.CAP_PROP_POS_FRAMES)) == position + 1:
            return cap, image
        cap.release()
        return None

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
        self.frame_bytes = self.image.nbytes
        self.decode_s = time.perf_counter() - t0

    def __iter__(self) -> Iterator[Frame]:
        yield Frame(0, 0.0, self.image)

    def close(self) -> None:
        pass


def read_image(path: Path, gray: bool = False) -> np.ndarray:
    """A BGR (or with ``gray``, a one-channel) image from a file in any format OpenCV decodes; SourceError if it
    cannot be read or decoded, or if its header gives a size that is refused (``size_problem``): then it is never
    decoded. The one way emocam and its training read an image file."""
    problem = header_problem(path)
    if problem:
        raise SourceError(f"{path} is {problem}")
    try:
        data = np.fromfile(str(path), np.uint8)
    except OSError as e:
        raise SourceError(f"cannot read {path}: {e.strerror}") from None
    image = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise SourceError(f"{path} is not a decodable image")
    problem = size_problem(image.shape[1], image.shape[0])  # a format whose header Pillow does not read
    if problem:
        raise SourceError(f"{path} is {problem}")
    return image


def header_problem(path: Path) -> str | None:
    """Why an image file is refused from the size its header gives, read without decoding it (``size_problem``);
    None where it is taken or Pillow does not know the format (OpenCV may still decode it)."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as image:
                return size_problem(*image.size)
        except Image.DecompressionBombError as e:  # beyond Pillow's own limit, which is above ours
            pixels = re.search(r"\d+", str(e))
            return (f"{pixels.group() if pixels else 'more than 179 million'} pixels: more than the "
                    f"{MAX_PIXELS / 1e6:.0f} million pixels a frame may have")
        except (OSError, ValueError, SyntaxError):
            return None
