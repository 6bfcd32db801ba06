"""What every source of frames is: the ``Source`` interface, its errors, and the OpenCV capture they open."""

from __future__ import annotations

import os
import stat
import tempfile
from contextlib import contextmanager
from typing import Iterator

import cv2

from ..faces import Frame

STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")
# The largest frame taken, checked before it is decoded: a crafted file of a few hundred bytes can say it holds a
# billion pixels. 2**27 (134 million) takes the largest photos cameras make (about 100 million) and 8K video (33
# million); such a frame and the detector's RGB copy of it fill about 800 MB.
MAX_PIXELS = 1 << 27
# OpenCV's remap, which mediapipe runs on every frame, aborts the process on a side of 32767 pixels or more.
MAX_SIDE = 16384
# The detector sees a frame squeezed whole into its square input: beyond 16:1 the short side is under 8 of its pixels
# there, too few for any face, so such a frame is refused rather than searched in vain.
MAX_ASPECT = 16
# Bytes of decoded frames that a file may hold in its queues at once (decode-ahead, detect-ahead, cross-frame
# batching): the queues shrink for huge frames, so an 8K video is not held two dozen frames deep.
BUFFER_BYTES = 256 << 20


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


def size_problem(width: int, height: int) -> str | None:
    """Why a frame of ``width`` x ``height`` pixels is refused before it is decoded (see MAX_PIXELS, MAX_SIDE,
    MAX_ASPECT), as the end of "... is": None for a frame that is taken."""
    size = f"{width}x{height} pixels"
    if width < 1 or height < 1:
        return f"{size}: it has no pixels"
    if max(width, height) > MAX_ASPECT * min(width, height):
        return f"{size}: more than {MAX_ASPECT} times wider than high or higher than wide, too narrow to show a face"
    if width * height > MAX_PIXELS:
        return f"{size}: more than the {MAX_PIXELS / 1e6:.0f} million pixels a frame may have"
    if max(width, height) > MAX_SIDE:
        return f"{size}: a side longer than the {MAX_SIDE} pixels a frame may have"
    return None


def frames_within(frame_bytes: int | None, most: int, share: float = 1 / 3) -> int:
    """How many frames of ``frame_bytes`` one queue holds: ``most``, fewer where they would take more than ``share``
    of BUFFER_BYTES (never fewer than one)."""
    if not frame_bytes:
        return most
    return max(1, min(most, int(BUFFER_BYTES * share) // frame_bytes))


class Source:
    """An iterable of frames and a context manager; ``decode_s`` accumulates the time spent decoding; ``frame_bytes``
    is the size of one decoded frame where it is known before the frames come (files), for sizing queues; ``still``
    says that its one frame is a still image, not a frame of a video."""

    name: str
    live: bool
    still: bool = False
    fps: float
    frame_count: int | None
    decode_s: float
    frame_bytes: int | None = None
    # A live source that ended in order (a finite stream): its frames are all read, and that is no error.
    ended: bool = False

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


@contextmanager
def opencv_name(path: str) -> Iterator[str]:
    """A name for the file at ``path`` that OpenCV can be given: ``path`` itself, or where it is not UTF-8 (a name
    from an old archive), a link to it with a UTF-8 name in a private folder, removed after the block. OpenCV kills
    the process on a name it cannot encode; a capture or writer keeps its file open once made, link or not."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        pass
    else:
        yield path
        return
    suffix = os.path.splitext(path)[1]
    suffix = suffix if suffix.isascii() else ""  # the suffix tells a writer the container to write
    with tempfile.TemporaryDirectory(prefix="emocam-") as folder:
        link = os.path.join(folder, "file" + suffix)
        os.symlink(os.path.abspath(path), link)
        yield link


def open_capture(target: int | str) -> cv2.VideoCapture:
    """A cv2.VideoCapture opened without OpenCV's own warnings on stderr (we report failures ourselves)."""
    level = cv2.getLogLevel()
    cv2.setLogLevel(0)
    try:
        if isinstance(target, int):
            cap = cv2.VideoCapture(target)
        else:
            with opencv_name(target) as name:
                cap = cv2.VideoCapture(name)
    finally:
        cv2.setLogLevel(level)
    # Turn frames by the container's rotation tag, as players do: a phone clip stored sideways is upright here.
    cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)
    return cap
