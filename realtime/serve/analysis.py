"""The analysis behind ``POST /v1/analyze``: a few threads, each with its own Recognizer, whose faces go to one model
through a batching queue, and a bounded number of requests waiting for them."""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Callable, TypeVar

import numpy as np

from .. import EndedEarly, Frame, Options, Recognizer, SourceError, open_source, records
from ..backends import MAX_BATCH, Backend
from ..predictor import BatchedPredictor
from .config import Refused, ServeOptions
from .uploads import (Deadline, Scratch, Upload, decode_image, image_size, probe_video, video_too_long)

T = TypeVar("T")
# Seconds a client is asked to wait before trying again when every thread is busy and the queue is full.
RETRY_AFTER_S = 1


class SharedModel:
    """One backend for every thread of a process: the faces that arrive while the model is busy go to it together, in
    its next call (up to MAX_BATCH faces), as the faces of consecutive video frames do. ``calls`` and ``faces`` count
    what it did."""

    def __init__(self, backend: Backend) -> None:
        self.name = backend.name
        self.contract = backend.contract
        self._backend = backend
        self._asked: queue.SimpleQueue = queue.SimpleQueue()
        self.calls = 0
        self.faces = 0
        self._thread = threading.Thread(target=self._serve, name="emocam-model", daemon=True)
        self._thread.start()

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """(N, K) probabilities for (N, C, S, S) faces, from a model call that may carry other threads' faces too."""
        answer: Future = Future()
        self._asked.put((batch, answer))
        return answer.result()

    def _serve(self) -> None:
        while True:
            taken = [self._asked.get()]
            if taken[0] is None:
                return
            faces = len(taken[0][0])
            while faces < MAX_BATCH:
                try:
                    more = self._asked.get_nowait()
                except queue.Empty:
                    break
                if more is None:  # closing: answer what was taken, then stop
                    self._asked.put(None)
                    break
                taken.append(more)
                faces += len(more[0])
            predictor = BatchedPredictor(self._backend, max_faces=faces + 1, max_frames=len(taken) + 1)
            for batch, answer in taken:
                predictor.put(answer, batch)
            try:
                answered = predictor.flush()
            except BaseException as e:  # noqa: BLE001 - each caller raises it in its own thread
                for _, answer in taken:
                    answer.set_exception(e)
                continue
            self.calls += 1
            self.faces += faces
            for answer, probs in answered:
                answer.set_result(probs)

    def close(self) -> None:
        self._asked.put(None)
        self._thread.join()


def recognizer(options: Options, model: SharedModel | None = None) -> Recognizer:
    """A Recognizer with ``options``; with ``model``, its faces go to that shared model."""
    rec = Recognizer(**vars(options))  # not asdict: that would turn a FaceReading given as the reading into a dict
    if model is not None:
        rec.pipeline.backend = model
    return rec


class Analysts:
    """The analysis threads of one process and the slots of its bounded queue: ``admit`` takes a slot or refuses with
    503, ``submit`` runs a job on a free thread's Recognizer and gives the slot back when it ends."""

    def __init__(self, options: ServeOptions) -> None:
        first = recognizer(options.recognizer)
        self.model = SharedModel(first.pipeline.backend)
        first.pipeline.backend = self.model
        self.recognizers = [first] + [recognizer(options.recognizer, self.model) for _ in range(options.threads - 1)]
        self._idle: queue.SimpleQueue = queue.SimpleQueue()
        for rec in self.recognizers:
            self._idle.put(rec)
        self._slots = threading.BoundedSemaphore(options.threads + options.queue)
        self._executor = ThreadPoolExecutor(options.threads, thread_name_prefix="emocam-analyze")
        self.capacity = options.threads + options.queue

    def admit(self) -> None:
        """Take a slot for a request, or Refused (503, Retry-After) when every thread is busy and the queue full."""
        if not self._slots.acquire(blocking=False):
            raise Refused(503, f"busy: {self.capacity} requests are being analysed or waiting; try again shortly",
                          {"Retry-After": str(RETRY_AFTER_S)})

    def release(self) -> None:
        """Give back a slot taken by ``admit`` for a request that submitted nothing."""
        self._slots.release()

    def submit(self, job: Callable[[Recognizer], T]) -> Future:
        """Run ``job`` with an idle thread's Recognizer; the request's slot is given back when it ends (or is
        cancelled before it starts)."""
        def run() -> T:
            rec = self._idle.get()
            try:
                return job(rec)
            finally:
                self._idle.put(rec)

        future = self._executor.submit(run)
        future.add_done_callback(lambda _: self._slots.release())
        return future

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        for rec in self.recognizers:
            rec.close()
        self.model.close()


def analyze(rec: Recognizer, upload: Upload, options: ServeOptions, scratch: Scratch, deadline: Deadline,
            every_frame: bool = False) -> dict:
    """The records of an uploaded image or video, as the CSV and JSONL have them; Refused for what cannot be taken."""
    if upload.kind != "video":
        size = image_size(upload.data, options)
        if size is not None:
            image = decode_image(upload.data)
            rows = records(Frame(0, 0.0, image), rec(image), rec.classes, every_frame)
            return answer("image", size, 1, rows)
        if upload.kind == "image":
            raise Refused(400, "the upload is not an image that can be read (its header names no known format)")
    with scratch.file(upload.data) as path:
        probe_video(path, options)
        return _video(rec, path, options, deadline, every_frame)


def _video(rec: Recognizer, path: Path, options: ServeOptions, deadline: Deadline, every_frame: bool) -> dict:
    rows: list[dict] = []
    frames = 0
    size = None
    try:
        with open_source(path, live=False) as src:
            for frame, faces in rec.stream(src):
                deadline.check()
                if frame.timestamp_s > options.max_video_s:
                    raise Refused(413, video_too_long(frame.timestamp_s, options))
                size = size or (frame.image.shape[1], frame.image.shape[0])
                rows.extend(records(frame, faces, rec.classes, every_frame))
                frames += 1
    except EndedEarly as e:
        raise Refused(400, str(e).replace(str(path), "the video"), **answer("video", size, frames, rows)) from None
    except SourceError as e:
        raise Refused(400, str(e).replace(str(path), "the upload")) from None
    return answer("video", size, frames, rows)


def answer(kind: str, size: tuple[int, int] | None, frames: int, rows: list[dict]) -> dict:
    """An analysis as the API returns it: what was read, its size, the frames and distinct faces, and the records."""
    width, height = size or (None, None)
    faces = len({row["face_id"] for row in rows if row["face_id"] is not None})
    return {"kind": kind, "width": width, "height": height, "frames": frames, "faces": faces, "records": rows}
