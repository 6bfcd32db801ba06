"""Live sources: a camera or a network stream, read by a grabber thread that keeps only the newest frame."""

from __future__ import annotations

import sys
import threading
import time
from typing import Iterator

import av
import cv2
import numpy as np

from ..faces import Frame
from .base import Source, SourceError, size_problem

# Seconds a stream may take to connect, or to send its next frame, before it is given up (emocam --timeout).
STREAM_TIMEOUT_S = 10.0
# Seconds a stream's reader may fall behind it before packets are skipped to the next key frame to catch up.
MAX_LAG_S = 0.5
# Seconds between two lines telling how far a stream skipped: a stream that keeps skipping is told in sums, not in a
# line a second.
SKIP_REPORT_S = 10.0
# A stream's clock that leaps further ahead of the time its frames took to arrive is taken for a splice or a
# restarted sender, not for that much video: its times go on from where they were.
MAX_CLOCK_LEAP_S = 30.0
# Where a stream's frames carry no times, they are spaced at its frame rate but kept this close to their arrival.
ARRIVAL_SLACK_S = 1.0


def nominal_fps(fps: float) -> float:
    """``fps`` where it is plausible, else 30 (cameras and streams that report 0, or nonsense, as their rate)."""
    return fps if 0 < fps < 1000 else 30.0


class LiveSource(Source):
    """A camera or stream read by a grabber thread that keeps only the newest frame, so a slow consumer always gets
    the latest image (stale frames are dropped; ``index`` counts every decoded frame). A frame's ``timestamp_s`` is
    its capture time here, seconds since the source opened (a stream says otherwise: ``LiveStream``). Subclasses say
    how pictures are read (``_read``), turned into BGR images (``_image``, run by the consumer, only for the frames it
    takes) and released (``_release``)."""

    live = True
    frame_count = None
    # Frames never decoded because the source fell behind or their data was damaged (only streams; see LiveStream).
    dropped = 0

    def __init__(self, name: str, fps: float, stall_s: float = 5.0) -> None:
        self.name = name
        self.fps = nominal_fps(fps)
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

    def age_s(self, frame: Frame) -> float:
        """Seconds since ``frame`` was read from the source: how far what is shown or written now lags behind it."""
        return time.monotonic() - self._start - frame.timestamp_s

    def _read(self) -> Iterator[tuple[object, float | None]]:
        """Decoded pictures in order with their time on the source's own clock (None where it has none); ends when
        the source ends in order, or raises SourceError with what went wrong."""
        raise NotImplementedError

    def _image(self, picture: object) -> np.ndarray:
        return picture

    def _timestamp(self, stream_s: float | None, arrival_s: float) -> float:
        """A grabbed picture's ``timestamp_s``, from its time on the source's clock and its arrival here."""
        return arrival_s

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
                    with self._cond:
                        self.ended = not self._stop.is_set()
                        self._cond.notify_all()
                    return
                finally:
                    self._read_s += time.perf_counter() - t0
                timestamp = self._timestamp(stream_s, time.monotonic() - self._start)
                with self._cond:
                    self._latest = (index, timestamp, stream_s, picture)
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
                while not (self._stop.is_set() or self._error is not None or self.ended
                           or (self._latest is not None and self._latest[0] > last)):
                    # A stream that skips packets to catch up is alive though it sends no frame for a while.
                    idle = time.monotonic() - max(self._active, waiting)
                    if idle >= self._stall_s:
                        raise SourceError(f"{self.name} sent no frame for {self._stall_s:g} s")
                    self._cond.wait(self._stall_s - idle)
                if self._stop.is_set():
                    return
                # Deliver what was grabbed before the end or a disconnect, then end or report it.
                if self._latest is None or self._latest[0] <= last:
                    if self._error is not None:
                        raise self._error
                    return
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
            if not ok:  # a camera has no end of its own: it was unplugged or taken
                raise SourceError(f"{self.name} disconnected (no more frames)")
            problem = size_problem(image.shape[1], image.shape[0])
            if problem:
                raise SourceError(f"{self.name} sends frames of {problem}")
            yield image, self._cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0

    def _release(self) -> None:
        self._cap.release()


class LiveStream(LiveSource):
    """A network stream read with PyAV, its decoder threaded. Its frames' ``timestamp_s`` are the stream's own clock
    (``StreamClock``), not their arrival: a server that sends frames in bursts does not bunch them in time.

    Where decoding is slower than the stream arrives, packets pile up and every frame would come later than the one
    before; so while the reader is more than ``max_lag_s`` behind the stream, packets are skipped undecoded up to the
    next key frame at which it has caught up (``dropped`` counts the frames skipped; None never skips). Told on stderr
    when it first happens, and how far each skip jumped (in sums, at most every SKIP_REPORT_S)."""

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
        problem = size_problem(self._video.width, self._video.height) if self._video.width else None
        if problem:
            self._container.close()
            raise SourceError(f"stream {url} is {problem}")
        self.max_lag_s = max_lag_s
        self._told = False
        self._skip: tuple[float, int] | None = None  # where the skip under way began: stream time, frames dropped
        self._skipped = [0, 0.0, 0]  # frames, seconds of video and jumps not yet told
        self._last_report = -SKIP_REPORT_S
        rate = self._video.average_rate or self._video.guessed_rate
        rate = float(rate) if rate else 0.0
        self._clock = StreamClock(nominal_fps(rate))  # before the grabber thread starts, which uses it
        super().__init__(f"stream {url}", rate, stall_s=timeout_s)

    def _read(self) -> Iterator[tuple[av.VideoFrame, float | None]]:
        live_lag = LiveLag(self.fps)
        packets = self._container.demux(self._video)
        skipping = False
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                packet = next(packets)
            except StopIteration:  # the stream ended in order: the frames still inside the decoder, then the end
                for frame in self._decode(None):
                    yield frame, frame.time
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
                    self._end_skipping(live_lag.stream_s)
                elif not skipping and lag > self.max_lag_s:
                    self._start_skipping(lag, live_lag.stream_s)
                    skipping = True
            if skipping:
                self.dropped += 1
                self._active = time.monotonic()
                continue
            for frame in self._decode(packet):
                problem = size_problem(frame.width, frame.height)
                if problem:
                    raise SourceError(f"{self.name} sends frames of {problem}")
                yield frame, frame.time
                # A threaded decoder hands frames out some packets late: judged by its frames too.
                late = live_lag.late(frame.time)
                if self.max_lag_s is not None and not skipping and late > self.max_lag_s:
                    self._start_skipping(late, live_lag.stream_s if frame.time is None else frame.time)
                    skipping = True

    def _decode(self, packet: av.Packet | None) -> list[av.VideoFrame]:
        """The frames that ``packet`` completes (None: those the decoder still holds); none where its data is damaged
        (it counts as dropped)."""
        try:
            return self._video.codec_context.decode(packet)
        except av.error.FFmpegError:
            self.dropped += 1
            return []

    def _start_skipping(self, lag: float, stream_s: float) -> None:
        """Start skipping packets at ``stream_s``, ``lag`` seconds behind: the frames still inside the decoder are as
        stale as the packets, so they go too. Told once."""
        self._video.codec_context.flush_buffers()
        self._skip = (stream_s, self.dropped)
        if not self._told:
            self._told = True
            print(f"emocam: {self.name} decodes slower than it arrives ({lag:.1f} s behind): frames are dropped, "
                  f"skipping to the next key frame, to stay within {self.max_lag_s:g} s of live", file=sys.stderr,
                  flush=True)

    def _end_skipping(self, stream_s: float) -> None:
        """The skip under way reached its key frame at ``stream_s``: tell how far it jumped (the first at once, then
        the sum of those since the last line, at most every SKIP_REPORT_S)."""
        began, dropped = self._skip
        self._skipped = [self._skipped[0] + self.dropped - dropped, self._skipped[1] + max(stream_s - began, 0.0),
                         self._skipped[2] + 1]
        now = time.monotonic()
        if now - self._last_report < SKIP_REPORT_S:
            return
        frames, seconds, jumps = self._skipped
        print(f"emocam: {self.name}: skipped {frames} frames ({seconds:.1f} s of video) to the next key frame"
              f"{f' in {jumps} jumps' if jumps > 1 else ''}, to stay within {self.max_lag_s:g} s of live",
              file=sys.stderr, flush=True)
        self._skipped, self._last_report = [0, 0.0, 0], now

    def _timestamp(self, stream_s: float | None, arrival_s: float) -> float:
        return self._clock(stream_s, arrival_s)

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
        self.stream_s = 0.0  # the latest packet's time on the stream's clock
        self._waits = 0
        self._packets = 0

    def __call__(self, packet: av.Packet, waited_s: float) -> float:
        """Seconds behind the stream, as of ``packet``, read now after waiting ``waited_s`` for it."""
        t = packet.dts if packet.dts is not None else packet.pts  # dts: packets arrive in decode order
        stream_s = float(t * packet.time_base) if t is not None else self._packets / self.fps
        self._packets += 1
        self._waits = self._waits + 1 if waited_s >= self.wait_s else 0
        begin = time.monotonic() - stream_s
        if self._begin is None or stream_s < self.stream_s - 1.0 or self._waits >= self.EDGE_READS:
            self._begin = begin
        self._begin = min(self._begin, begin)
        self.stream_s = stream_s
        return begin - self._begin

    def late(self, stream_s: float | None) -> float:
        """Seconds behind the stream, now, of a decoded frame at ``stream_s`` (0 where it has no time)."""
        return 0.0 if stream_s is None or self._begin is None else time.monotonic() - self._begin - stream_s


class StreamClock:
    """A live stream's frame times on its own clock, from 0 at its first frame: the frames' own times where they have
    them, so that a server sending frames in bursts does not bunch them (nor a stall spread them); else frames spaced
    at the nominal rate, kept within ARRIVAL_SLACK_S of their arrival. Where the stream's clock goes back (a restarted
    sender) or leaps more than MAX_CLOCK_LEAP_S past the time its frames took to arrive (a splice), the times go on
    from the last one by that arrival time. Always increasing: the tracker takes time going back for a new clip."""

    def __init__(self, fps: float) -> None:
        self.period = 1.0 / fps
        self._last: float | None = None  # the latest time given, and its arrival
        self._arrived = 0.0
        self._start = 0.0  # the first frame's arrival
        self._offset = 0.0  # time given = stream time + offset, until the stream's clock jumps

    def __call__(self, stream_s: float | None, arrival_s: float) -> float:
        """The time of a frame whose stream time is ``stream_s`` (None: it has none), which arrived at ``arrival_s``
        (seconds on any steady clock)."""
        if self._last is None:
            t = 0.0
            self._offset = -stream_s if stream_s is not None else 0.0
            self._start = arrival_s
        elif stream_s is None:
            since_start = arrival_s - self._start
            t = min(max(self._last + self.period, since_start - ARRIVAL_SLACK_S), since_start + ARRIVAL_SLACK_S)
        else:
            t = stream_s + self._offset
            took = arrival_s - self._arrived
            if t < self._last or t - self._last > took + MAX_CLOCK_LEAP_S:
                t = self._last + max(took, self.period)
                self._offset = t - stream_s
        t = max(t, self._last + 1e-6) if self._last is not None else t
        self._last, self._arrived = t, arrival_s
        return t
