"""Frames with timestamps from a camera, a device path, a network stream or a video or image file: ``open_source``
picks the source; ``base`` says what a source is, ``files`` reads files, ``live`` cameras and streams."""

from __future__ import annotations

from pathlib import Path

from ..faces import Frame
from .base import (BUFFER_BYTES, MAX_ASPECT, MAX_PIXELS, MAX_SIDE, STREAM_SCHEMES, EndedEarly, Source, SourceError,
                   capture_device, frames_within, open_capture, opencv_name, size_problem, stream_url)
from .files import DECODED_SHARE, IMAGE_SUFFIXES, VIDEO_SUFFIXES, ImageFile, VideoFile, read_image
from .live import MAX_LAG_S, STREAM_TIMEOUT_S, LiveCapture, LiveLag, LiveSource, LiveStream

__all__ = ["BUFFER_BYTES", "DECODED_SHARE", "EndedEarly", "Frame", "IMAGE_SUFFIXES", "ImageFile", "LiveCapture",
           "LiveLag", "LiveSource", "LiveStream", "MAX_ASPECT", "MAX_LAG_S", "MAX_PIXELS", "MAX_SIDE", "STREAM_SCHEMES",
           "STREAM_TIMEOUT_S", "Source", "SourceError", "VIDEO_SUFFIXES", "VideoFile", "capture_device", "frames_within", "open_capture",
           "opencv_name", "open_source", "read_image", "size_problem", "stream_url"]


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
        return LiveCapture(cap, f"camera {text}")
    if stream_url(text):
        return LiveStream(text, timeout_s)
    path = Path(text)
    if text.startswith("/dev/") and live is not False and not path.exists():
        raise SourceError(f"camera device {text} does not exist")
    if live is not False and capture_device(text):
        cap = open_capture(text)
        if not cap.isOpened():
            raise SourceError(f"camera {text} cannot be opened (is it a camera and not used by another program?)")
        return LiveCapture(cap, f"camera {text}")
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
        return LiveCapture(cap, text)
    return VideoFile(path)
