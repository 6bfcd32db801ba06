"""What a client uploads, taken within the limits: the body read up to its size and time, the image checked from its
header before it is decoded, a video probed before it is read. Nothing a client sends names a file: a video goes to a
private temporary file whose name the server chooses, deleted when the request ends."""

from __future__ import annotations

import asyncio
import io
import os
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator, Iterator

import av
import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect, Request

from ..sources import size_problem
from .config import Refused, ServeOptions

ACCEPTED = "image/*, video/*, application/octet-stream, or multipart/form-data with one file"


@dataclass
class Upload:
    """An uploaded file's bytes and what the client said it is: "image", "video" or None (to be found out)."""

    data: bytes
    kind: str | None


def declared_kind(content_type: str) -> str | None:
    """"image" or "video" from a media type, None for application/octet-stream; Refused (415) for anything else."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media.startswith("image/"):
        return "image"
    if media.startswith("video/"):
        return "video"
    if media in ("application/octet-stream", ""):
        return None
    raise Refused(415, f"content type '{media}' is not an image or a video: send {ACCEPTED}")


async def read_upload(request: Request, options: ServeOptions, deadline: "Deadline") -> Upload:
    """The request's file, as the raw body or a multipart upload, read within the size limit and before the request's
    deadline; Refused with 413, 415, 408 or 400 where it does not fit."""
    content_type = request.headers.get("content-type")
    if not content_type:
        raise Refused(415, f"no Content-Type: send {ACCEPTED}")
    limit = options.max_upload_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Refused(413, too_large(int(declared), options))
    multipart = content_type.lower().startswith("multipart/form-data")
    kind = None if multipart else declared_kind(content_type)
    try:
        upload = await asyncio.wait_for(_multipart(request, limit, options) if multipart
                                        else _raw(request, limit, options, kind), deadline.left())
    except asyncio.TimeoutError:
        raise Refused(408, f"the upload took longer than {options.request_timeout_s:g} s (--request-timeout)") from None
    except ClientDisconnect:  # nobody is left to read the answer; the server just goes on
        raise Refused(400, "the client went away before the upload was complete") from None
    if not upload.data:
        raise Refused(400, "the upload is empty (0 bytes): send an image or a video")
    return upload


async def _limited(request: Request, limit: int, options: ServeOptions) -> AsyncIterator[bytes]:
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Refused(413, too_large(size, options, at_least=True))
        yield chunk


async def _raw(request: Request, limit: int, options: ServeOptions, kind: str | None) -> Upload:
    return Upload(b"".join([chunk async for chunk in _limited(request, limit, options)]), kind)


async def _multipart(request: Request, limit: int, options: ServeOptions) -> Upload:
    # Text fields are parsed only to be refused by name; a file part's own name is never used.
    parser = MultiPartParser(request.headers, _limited(request, limit, options), max_files=1, max_fields=8)
    try:
        form = await parser.parse()
    except MultiPartException as e:
        raise Refused(400, f"the multipart upload cannot be read ({e.message}); send one file") from None
    try:
        fields = [name for name, value in form.multi_items() if isinstance(value, str)]
        if fields:
            raise Refused(400, f"unexpected form field '{fields[0]}': send only the file; the server opens no path "
                               f"or URL that a request names")
        files = [value for _, value in form.multi_items()]
        if not files:
            raise Refused(400, "the multipart upload has no file: send the image or video as a file part")
        part = files[0]
        kind = declared_kind(part.content_type or "application/octet-stream")
        return Upload(await part.read(), kind)
    finally:
        await form.close()


def too_large(size: int, options: ServeOptions, at_least: bool = False) -> str:
    return (f"the upload is {'over ' if at_least else ''}{size / 1e6:.1f} MB; this server takes at most "
            f"{options.max_upload_mb:g} MB (--max-upload-mb)")


def image_size(data: bytes, options: ServeOptions) -> tuple[int, int] | None:
    """(width, height) of an image, read from its header and checked against the pixel budget and the aspect limit;
    the whole file is then decoded once to find it truncated or corrupt (JPEG at an eighth of its size). None if the
    bytes are not an image whose header can be read."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            check_pixels(width, height, "image", options)
            problem = size_problem(width, height)  # too thin, or a side longer than any frame may have
            if problem is not None:
                raise Refused(400, f"the image is {problem}")
            image.draft(None, (max(1, width // 8), max(1, height // 8)))
            image.load()
    except Image.DecompressionBombError:
        raise Refused(413, f"the image is larger than {options.max_megapixels:g} megapixels (--max-megapixels)") from None
    except UnidentifiedImageError:
        return None
    except (OSError, SyntaxError, ValueError) as e:
        raise Refused(400, f"the image is truncated or corrupt ({str(e)[:80]})") from None
    return width, height


def check_pixels(width: int, height: int, what: str, options: ServeOptions) -> None:
    """Refused (413) for an image or video frame over the pixel budget."""
    if width * height > options.max_pixels:
        raise Refused(413, f"the {what} is {width} x {height} pixels ({width * height / 1e6:.1f} megapixels); this "
                           f"server takes at most {options.max_megapixels:g} (--max-megapixels)")


def decode_image(data: bytes) -> np.ndarray:
    """A checked image's BGR pixels, decoded as emocam reads image files (OpenCV, turned by its EXIF orientation)."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise Refused(400, "the image's format cannot be decoded here; send JPEG, PNG, WebP, BMP or TIFF")
    return image


class Scratch:
    """A private folder (mode 0700) for the uploads that must be files: videos, which the decoder reads from disk."""

    def __init__(self) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="emocam-serve-"))

    @contextmanager
    def file(self, data: bytes) -> Iterator[Path]:
        """``data`` in a new file here, named by the server, removed afterwards."""
        fd, name = tempfile.mkstemp(dir=self.path, suffix=".upload")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            yield Path(name)
        finally:
            Path(name).unlink(missing_ok=True)

    def close(self) -> None:
        for leftover in self.path.iterdir():
            leftover.unlink(missing_ok=True)
        self.path.rmdir()

    def __enter__(self) -> "Scratch":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def probe_video(path: Path, options: ServeOptions) -> None:
    """Refused unless ``path`` is a video within the frame-size and length limits, read from its container only."""
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, UnicodeDecodeError):
        raise Refused(400, "the upload is neither an image nor a video that can be read") from None
    with container:
        if not container.streams.video:
            raise Refused(400, "the upload has no video stream")
        stream = container.streams.video[0]
        check_pixels(stream.codec_context.width, stream.codec_context.height, "video", options)
        duration = (float(stream.duration * stream.time_base) if stream.duration and stream.time_base
                    else container.duration / av.time_base if container.duration else None)
    if duration is not None and duration > options.max_video_s:
        raise Refused(413, video_too_long(duration, options))


def video_too_long(seconds: float, options: ServeOptions) -> str:
    return (f"the video lasts {seconds:.1f} s or more; this server takes videos of at most {options.max_video_s:g} s "
            f"(--max-video-s)")


class Deadline:
    """When a request must be answered by, from the moment it came in."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds

    def check(self) -> None:
        """Refused (504) once the time is up."""
        if time.monotonic() > self.at:
            raise Refused(504, f"the analysis took longer than {self.seconds:g} s (--request-timeout)")

    def left(self) -> float:
        return max(self.at - time.monotonic(), 0.0)
