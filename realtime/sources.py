"""Frames with timestamps from a camera, a device path, a network stream or a video file."""

from __future__ import annotations

import os
import queue
import stat
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import av
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
# Seconds a stream's reader may fall behind it before packets are skipped to the next key frame to catch up.
MAX_LAG_S = 0.5


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
    """One decoded BGR frame; ``timestamp_s`` is the container time for files, seconds since start for live;
    ``stream_s`` (live) the frame's time on the camera's or stream's own clock, where it has one."""

    index: int
    timestamp_s: float
    image: np.ndarray
    stream_s: float | None = None


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


class LiveSource(Source):
    """A camera or stream read by a grabber thread that keeps only the newest frame, so a slow consumer always gets
    the latest image (stale frames are dropped; ``index`` counts every decoded frame). Subclasses say how pictures are
    read (``_read``), turned into BGR images (``_image``, run by the consumer, only for the frames it takes) and
    released (``_release``)."""

    live = True
    frame_count = None
    # Frames never decoded because the source fell behind or their data was damaged (only streams; see LiveStream).
    dropped = 0

    def __init__(self, name: str, fps: float, stall_s: float = 5.0) -> None:
        self.name = name
        self.fps = fps if 0 < fps < 1000 else 30.0
        self._stall_s = stall_s
        self._read_s = 0.0  # grabber thread: reading and decoding
        self._image_s = 0.0  # consumer: converting the frames it takes
        self._latest: tuple[int, float, float | None, object] | None = None  # index, timestamp, stream time, picture
        self._error: SourceError | None = None
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._start = time.monotonic()
        self._active = self._start  # when the source last showed it is alive (a frame, or a packet skipped)
        self._thread = threading.Thread(target=self._grab, name="emocam-grab", daemon=True)
        self._thread.start()

    @property
    def decode_s(self) -> float:
        return self._read_s + self._image_s

    def _read(self) -> Iterator[tuple[object, float | None]]:
        """Decoded pictures in order with their time on the source's own clock (None where it has none); ends when
        the source does, or raises SourceError with what went wrong."""
        raise NotImplementedError

    def _image(self, picture: object) -> np.ndarray:
        return picture

    def _release(self) -> None:
        raise NotImplementedError

    def _grab(self) -> None:
        index = 0
        try:
            pictures = self._read()
            while not self._stop.is_set():
                t0 = time.perf_counter()
                try:
                    picture, stream_s = next(pictures)
                except StopIteration:
                    raise SourceError(f"{self.name} disconnected (no more frames)") from None
                finally:
                    self._read_s += time.perf_counter() - t0
                with self._cond:
                    self._latest = (index, time.monotonic() - self._start, stream_s, picture)
                    self._active = time.monotonic()
                    self._cond.notify_all()
                index += 1
        except SourceError as e:
            with self._cond:
                if not self._stop.is_set():
                    self._error = e
                self._cond.notify_all()
        finally:
            # Released here, never from another thread while a read may be blocking.
            self._release()

    def __iter__(self) -> Iterator[Frame]:
        last = -1
        while True:
            with self._cond:
                waiting = time.monotonic()
                while not (self._stop.is_set() or self._error is not None
                           or (self._latest is not None and self._latest[0] > last)):
                    # A stream that skips packets to catch up is alive though it sends no frame for a while.
                    idle = time.monotonic() - max(self._active, waiting)
                    if idle >= self._stall_s:
                        raise SourceError(f"{self.name} sent no frame for {self._stall_s:g} s")
                    self._cond.wait(self._stall_s - idle)
                if self._stop.is_set():
                    return
                # Deliver what was grabbed before a disconnect, then report it.
                if self._latest is None or self._latest[0] <= last:
                    raise self._error
                index, timestamp, stream_s, picture = self._latest
            t0 = time.perf_counter()
            image = self._image(picture)
            self._image_s += time.perf_counter() - t0
            last = index
            yield Frame(index, timestamp, image, stream_s)

    def close(self) -> None:
        with self._cond:
            self._stop.set()
            self._cond.notify_all()
        self._thread.join(timeout=2.0)


class LiveCapture(LiveSource):
    """A camera (or a file read as if live) through OpenCV."""

    def __init__(self, capture: cv2.VideoCapture, name: str, stall_s: float = 5.0) -> None:
        self._cap = capture
        super().__init__(name, capture.get(cv2.CAP_PROP_FPS), stall_s)

    def _read(self) -> Iterator[tuple[np.ndarray, float | None]]:
        while True:
            ok, image = self._cap.read()
            if not ok:
                return
            yield image, self._cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0

    def _release(self) -> None:
        self._cap.release()


class LiveStream(LiveSource):
    """A network stream read with PyAV, its decoder threaded. Where decoding is slower than the stream arrives,
    packets pile up and every frame would come later than the one before; so while the reader is more than
    ``max_lag_s`` behind the stream, packets are skipped undecoded up to the next key frame at which it has caught
    up (``dropped`` counts the frames skipped; None never skips). Told once on stderr when it first happens."""

    def __init__(self, url: str, timeout_s: float = STREAM_TIMEOUT_S, max_lag_s: float | None = MAX_LAG_S) -> None:
        start = time.monotonic()
        try:
            # nobuffer: the packets read while probing the stream are not handed out later, already stale.
            self._container = av.open(url, timeout=(timeout_s, timeout_s), container_options={"fflags": "nobuffer"})
        except (av.error.FFmpegError, OSError):
            if time.monotonic() - start >= 0.9 * timeout_s:
                raise SourceError(f"stream {url} did not answer within {timeout_s:g} s (check that the server is up; "
                                  f"--timeout sets how long to wait)") from None
            raise SourceError(f"stream {url} cannot be opened (check the URL and that the server is up)") from None
        if not self._container.streams.video:
            self._container.close()
            raise SourceError(f"stream {url} has no video")
        self._video = self._container.streams.video[0]
        self._video.thread_type = "AUTO"
        self.max_lag_s = max_lag_s
        self._told = False
        rate = self._video.average_rate or self._video.guessed_rate
        super().__init__(f"stream {url}", float(rate) if rate else 0.0, stall_s=timeout_s)

    def _read(self) -> Iterator[tuple[av.VideoFrame, float | None]]:
        live_lag = LiveLag(self.fps)
        packets = self._container.demux(self._video)
        skipping = False
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                packet = next(packets)
            except StopIteration:
                return
            except av.error.ExitError:  # the read timeout cut it short
                raise SourceError(f"{self.name} sent no frame for {self._stall_s:g} s") from None
            except (av.error.FFmpegError, OSError) as e:
                raise SourceError(f"{self.name} disconnected ({e.strerror or 'the connection failed'})") from None
            if packet.size == 0:  # the demuxer's empty packet at the end
                continue
            lag = live_lag(packet, waited_s=time.monotonic() - t0)
            if self.max_lag_s is not None:
                if skipping and packet.is_keyframe and lag <= self.max_lag_s:
                    skipping = False
                elif not skipping and lag > self.max_lag_s:
                    self._start_skipping(lag)
                    skipping = True
            if skipping:
                self.dropped += 1
                self._active = time.monotonic()
                continue
            for frame in self._decode(packet):
                yield frame, frame.time
                # A threaded decoder hands frames out some packets late: judged by its frames too.
                late = live_lag.late(frame.time)
                if self.max_lag_s is not None and not skipping and late > self.max_lag_s:
                    self._start_skipping(late)
                    skipping = True

    def _decode(self, packet: av.Packet) -> list[av.VideoFrame]:
        """The frames that ``packet`` completes; none where its data is damaged (it counts as dropped)."""
        try:
            return self._video.codec_context.decode(packet)
        except av.error.FFmpegError:
            self.dropped += 1
            return []

    def _start_skipping(self, lag: float) -> None:
        """Start skipping packets, ``lag`` seconds behind: the frames still inside the decoder are as stale as the
        packets, so they go too. Told once."""
        self._video.codec_context.flush_buffers()
        if not self._told:
            self._told = True
            print(f"emocam: {self.name} decodes slower than it arrives ({lag:.1f} s behind): frames are dropped, "
                  f"skipping to the next key frame, to stay within {self.max_lag_s:g} s of live", file=sys.stderr,
                  flush=True)

    def _image(self, picture: av.VideoFrame) -> np.ndarray:
        return picture.to_ndarray(format="bgr24")

    def _release(self) -> None:
        self._container.close()


class LiveLag:
    """How far a reader is behind a live stream, from each packet as it is read: the wall time since the stream
    began minus the packet's stream time. The stream began at the earliest (wall - stream) seen, and anew wherever
    its clock goes back, or wherever reads keep waiting for data (the reader is at the live edge then, so a sender
    whose clock runs slow is not taken for a reader falling behind)."""

    EDGE_READS = 3

    def __init__(self, fps: float) -> None:
        self.fps = fps
        self.wait_s = 0.25 / fps  # a read that waits longer found no packet ready
        self._begin: float | None = None
        self._last = 0.0
        self._waits = 0
        self._packets = 0

    def __call__(self, packet: av.Packet, waited_s: float) -> float:
        """Seconds behind the stream, as of ``packet``, read now after waiting ``waited_s`` for it."""
        t = packet.dts if packet.dts is not None else packet.pts  # dts: packets arrive in decode order
        stream_s = float(t * packet.time_base) if t is not None else self._packets / self.fps
        self._packets += 1
        self._waits = self._waits + 1 if waited_s >= self.wait_s else 0
        begin = time.monotonic() - stream_s
        if self._begin is None or stream_s < self._last - 1.0 or self._waits >= self.EDGE_READS:
            self._begin = begin
        self._begin = min(self._begin, begin)
        self._last = stream_s
        return begin - self._begin

    def late(self, stream_s: float | None) -> float:
        """Seconds behind the stream, now, of a decoded frame at ``stream_s`` (0 where it has no time)."""
        return 0.0 if stream_s is None or self._begin is None else time.monotonic() - self._begin - stream_s


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
