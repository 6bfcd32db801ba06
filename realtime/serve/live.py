"""The one live source of ``emocam serve --source``: read in a thread through its own Recognizer; each frame's records
go to every ``/v1/events`` watcher and its annotated picture to every ``/v1/stream.mjpg`` watcher."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
import traceback
from typing import AsyncIterator, Iterator

import cv2

from .. import Faces, Frame, Recognizer, Sink, Source, SourceError, open_source, records
from ..overlay import annotate_rate
from ..sinks import Rate

# Seconds between tries to reopen a camera or stream that failed or went away.
RECONNECT_S = 2.0
JPEG_QUALITY = 80
# Events held for a watcher that reads slower than frames come; the oldest go first.
EVENTS_KEPT = 64
# A still image as the source is shown again once a second.
STILL_PERIOD_S = 1.0
FRAME, EVENT = "frame", "event"


class Paced(Source):
    """A video or image file played at the pace of its timestamps, as a camera would give it, so that the page shows
    it as live rather than as fast as it decodes: a frame whose time has passed by more than a frame's length when its
    turn comes is dropped, as a camera's would be."""

    live = True
    frame_count = None

    def __init__(self, source: Source) -> None:
        self._source = source
        self.name = source.name
        self.fps = source.fps

    @property
    def decode_s(self) -> float:
        return self._source.decode_s

    def __iter__(self) -> Iterator[Frame]:
        start = time.monotonic()
        for frame in self._source:
            wait = start + frame.timestamp_s - time.monotonic()
            if wait < -1.0 / self.fps:
                continue
            time.sleep(max(0.0, wait))
            yield frame

    def close(self) -> None:
        self._source.close()


class Broadcast(Sink):
    """The live frames for their watchers on the event loop: each frame's records as an event, and its picture with
    the overlay (drawn by the pipeline) and the rate at which frames come, as in the preview window, as a JPEG, encoded
    only while someone watches."""

    overlay = True

    def __init__(self, classes: tuple[str, ...], loop: asyncio.AbstractEventLoop) -> None:
        self.classes = classes
        self.frames = 0
        self._loop = loop
        self._watchers: dict[str, set[asyncio.Queue]] = {FRAME: set(), EVENT: set()}
        self._start = time.monotonic()
        self._rate = Rate()

    def write(self, frame: Frame, faces: Faces) -> None:
        self.frames += 1
        fps = self._rate.tick()
        if self._watchers[EVENT]:  # the records only for someone who watches them
            event = {"t": round(time.monotonic() - self._start, 3), "frame": frame.index,
                     "timestamp_s": round(frame.timestamp_s, 4),
                     "stream_s": None if frame.stream_s is None else round(frame.stream_s, 4),
                     "records": records(frame, faces, self.classes)}
            self.send(EVENT, ("records", json.dumps(event)))
        if self._watchers[FRAME]:
            image = frame.image if fps is None else annotate_rate(frame.image.copy(), fps)
            ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            if ok:
                self.send(FRAME, jpeg.tobytes())

    def send(self, kind: str, item: object) -> None:
        """Hand ``item`` to every watcher of ``kind`` (from any thread); None ends their watch."""
        try:
            self._loop.call_soon_threadsafe(self._fan_out, kind, item)
        except RuntimeError:  # the event loop has closed: the server is stopping
            pass

    def _fan_out(self, kind: str, item: object) -> None:
        for watcher in self._watchers[kind]:
            if watcher.full():
                watcher.get_nowait()
            watcher.put_nowait(item)

    async def watch(self, kind: str) -> AsyncIterator:
        """Every item of ``kind`` (FRAME: JPEG bytes, only the newest kept; EVENT: (name, JSON text)) from now until
        the watch is ended."""
        watcher: asyncio.Queue = asyncio.Queue(1 if kind == FRAME else EVENTS_KEPT)
        self._watchers[kind].add(watcher)
        try:
            while (item := await watcher.get()) is not None:
                yield item
        finally:
            self._watchers[kind].discard(watcher)


class LiveFeed:
    """Runs ``spec`` (a camera index, device, stream URL or file) through ``rec`` into a Broadcast until closed: a
    camera or stream that fails is reopened every RECONNECT_S, a file plays again from the start. ``state`` and
    ``error`` say how the source is doing."""

    def __init__(self, spec: str, rec: Recognizer, loop: asyncio.AbstractEventLoop) -> None:
        self.spec = spec
        self.rec = rec
        self.state = "starting"
        self.error: str | None = None
        self.broadcast = Broadcast(rec.classes, loop)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="emocam-live", daemon=True)
        self._thread.start()

    def _open(self) -> Source:
        source = open_source(self.spec)
        return source if source.live else Paced(source)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                began = time.monotonic()
                try:
                    with self._open() as source:
                        self._status("playing")
                        self.rec.run(source, [self.broadcast])
                except SourceError as e:
                    self._status("reconnecting", str(e))
                    self._stop.wait(RECONNECT_S)
                    continue
                self._stop.wait(max(0.0, STILL_PERIOD_S - (time.monotonic() - began)))
        except Exception as e:  # a bug: told in full, and the page says the feed stopped
            traceback.print_exc(file=sys.stderr)
            self._status("failed", f"{type(e).__name__}: {e}")

    def _status(self, state: str, error: str | None = None) -> None:
        self.state, self.error = state, error
        self.broadcast.send(EVENT, ("status", json.dumps(self.status())))

    def watch(self, kind: str) -> AsyncIterator:
        """The broadcast's items of ``kind`` (see Broadcast.watch)."""
        return self.broadcast.watch(kind)

    def end_watchers(self) -> None:
        """End every watch, so that a stopping server is not held open by its video and event streams (safe to call
        from a signal handler on the event loop's thread)."""
        for kind in (FRAME, EVENT):
            self.broadcast.send(kind, None)

    def status(self) -> dict:
        """The source, how it is doing, and the frames it has given."""
        return {"source": self.spec, "state": self.state, "error": self.error, "frames": self.broadcast.frames}

    def close(self) -> None:
        self._stop.set()
        self.broadcast.stop = True  # the pipeline stops after the frame it is on
        self._thread.join(timeout=10)
