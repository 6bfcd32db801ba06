"""What every source of frames is: the ``Source`` interface, its errors, and the OpenCV capture they open."""

from __future__ import annotations

import os
import stat
from typing import Iterator

import cv2

from ..faces import Frame

STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")


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


class Source:
    """An iterable of frames and a context manager; ``decode_s`` accumulates the time spent decoding."""

    name: str
    live: bool
    fps: float
    frame_count: int | None
    decode_s: float
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


def open_capture(target: int | str) -> cv2.VideoCapture:
    """A cv2.VideoCapture opened without OpenCV's own warnings on stderr (we report failures ourselves)."""
    level = cv2.getLogLevel()
    cv2.setLogLevel(0)
    try:
        cap = cv2.VideoCapture(target)
    finally:
        cv2.setLogLevel(level)
    # Turn frames by the container's rotation tag, as players do: a phone clip stored sideways is upright here.
    cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)
    return cap
