"""The live pipeline, the only place that knows the stage order:
source -> detect -> track -> align -> infer -> smooth, as a generator of (frame, faces) that the commands, the
sinks (``run``), ``emocam batch`` and the Python API consume.

Decoding (the source's thread) and detection (a second thread) run ahead of the rest (main thread), so on
two cores the model and the sinks overlap with the next frames' decode and detect. For a file, the faces of several
consecutive frames can go to the model in one call; tracking and cropping still happen frame by frame, smoothing and
sinks in frame order once the answers are back.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import numpy as np

from .align import crop_face, to_tensor
from .backends import Backend
from .detect import FaceDetector
from .faces import Faces, Frame
from .gate import Gate
from .landmarks import Landmarker
from .overlay import Overlay
from .predictor import BatchedPredictor
from .reading import FaceReading, crop_source, in_original, read_faces, resolve_reading
from .sinks import Sink
from .smooth import Smoother
from .sources import Source, frames_within
from .track import Tracker

STAGES = ("decode", "detect", "track", "align", "infer", "smooth", "write")


@dataclass
class Timings:
    """Seconds spent in each stage summed over the run, the frames and faces processed, and the wall time."""

    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    frames: int = 0
    faces: int = 0
    wall_s: float = 0.0

    def ms_per_frame(self) -> dict[str, float]:
        """Mean milliseconds per frame in each stage (stages overlap, so they add up to more than the wall time)."""
        return {k: 1e3 * v / max(self.frames, 1) for k, v in self.seconds.items()}

    @property
    def fps(self) -> float:
        """End-to-end frames per second over the wall time of the run."""
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0

    def to_dict(self) -> dict:
        """The figures as a JSON-ready dict."""
        return {"frames": self.frames, "faces": self.faces, "wall_s": round(self.wall_s, 4), "fps": round(self.fps, 2),
                "ms_per_frame": {k: round(v, 4) for k, v in self.ms_per_frame().items()},
                "e2e_ms_per_frame": round(1e3 * self.wall_s / max(self.frames, 1), 4)}


class Pipeline:
    """Runs a source through detector, tracker, model and smoother into sinks."""

    def __init__(self, detector: FaceDetector, backend: Backend, tracker: Tracker | None = None,
                 smoother: Smoother | None = None, queue_size: int = 4, landmarker: Landmarker | None = None,
                 gate: Gate | None = None, reading: FaceReading | None = None) -> None:
        self.detector = detector
        # Its enlarging and which faces it keeps apply here; its range and score are the detector's.
        self.reading = resolve_reading(reading)
        self.backend = backend
        # Not ``tracker or Tracker()``: both define __len__, so an empty one is falsy and would be replaced.
        self.tracker = Tracker() if tracker is None else tracker
        self.smoother = Smoother() if smoother is None else smoother
        self.landmarker = Landmarker() if landmarker is None else landmarker
        self.gate = Gate() if gate is None else gate
        self.classes = tuple(backend.contract.classes)
        self.queue_size = queue_size

    def warmup(self, shape: tuple[int, int, int] = (360, 640, 3)) -> None:
        """One detector and model call on blank input and one Face Mesh call on a drawn face, so that first-call
        set-up neither is timed nor stalls a stream."""
        self.detector(np.zeros(shape, np.uint8))
        self.landmarker.warmup()
        pre = self.backend.contract.pre
        self.backend.predict(to_tensor(np.zeros((1, pre.size, pre.size), np.uint8), pre))

    def detect(self, image: np.ndarray, still: bool = True) -> Faces:
        """Faces in a BGR image (``still``, or a frame of a video), read as ``reading`` says, with trusted landmarks,
        head pose and the quality gate's verdict, in the image's pixels."""
        seen, faces = read_faces(image, self.reading, self.detector, self.landmarker, self.gate, still)
        return faces if seen is image else in_original(faces, image.shape)

    def process(self, frame: Frame, faces: Faces, timings: Timings) -> Faces:
        """Track, align (all faces in one batch), infer and smooth the detected faces of one frame."""
        batch = self._align(frame, faces, timings)
        [(frame, faces)] = self._infer(timings, BatchedPredictor(self.backend, max_frames=1).put, (frame, faces), batch)
        return self._smooth(frame, faces, timings)

    def stream(self, source: Source, batch_frames: int = 1, max_frames: int | None = None,
               timings: Timings | None = None, duration_s: float | None = None) -> Iterator[tuple[Frame, Faces]]:
        """The frames of ``source`` with their faces detected, tracked, classified and smoothed, in frame order, until
        it ends, ``max_frames`` frames or ``duration_s`` seconds of it (by the frames' own timestamps); the caller
        closes the source. ``timings`` (if given) adds up each stage, and the time the caller spends between frames as
        "write".

        For a file, the faces of up to ``batch_frames`` consecutive frames go to the model in one call; a live source
        always sends one frame at a time."""
        timings = Timings() if timings is None else timings
        # Live frames must not wait behind older ones: hand over one at a time. A file's queue and batch hold fewer
        # of its frames where they are huge (an 8K video), so that memory stays bounded by bytes, not frames.
        detected: queue.Queue = queue.Queue(1 if source.live else frames_within(source.frame_bytes, self.queue_size))
        predictor = BatchedPredictor(self.backend,
                                     max_frames=1 if source.live else frames_within(source.frame_bytes, batch_frames))
        stop = threading.Event()
        worker = threading.Thread(target=self._detect_ahead, args=(source, detected, stop, timings),
                                  name="emocam-detect", daemon=True)
        start = time.perf_counter()
        worker.start()
        try:
            for frame, faces in self._answered(detected, predictor, max_frames, duration_s, timings):
                faces = self._smooth(frame, faces, timings)
                timings.frames += 1  # counted before the caller takes it: a caller that stops here has had it
                timings.faces += len(faces)
                t0 = time.perf_counter()
                yield frame, faces
                timings.seconds["write"] += time.perf_counter() - t0
        finally:
            stop.set()
            deadline = time.perf_counter() + 2.0
            while worker.is_alive() and time.perf_counter() < deadline:
                try:  # unblock the detect thread if it waits on a full queue
                    detected.get(timeout=0.05)
                except queue.Empty:
                    pass
            timings.wall_s = time.perf_counter() - start
            timings.seconds["decode"] = source.decode_s

    def run(self, source: Source, sinks: Sequence[Sink] = (), max_frames: int | None = None,
            batch_frames: int = 1, duration_s: float | None = None) -> Timings:
        """Write the frames of ``stream`` into ``sinks`` (drawing the overlay first where one wants it) until the
        source ends, a sink asks to stop, ``max_frames`` or ``duration_s``; the caller closes source and sinks."""
        timings = Timings()
        overlay = Overlay(self.classes) if any(sink.overlay for sink in sinks) else None
        frames = self.stream(source, batch_frames, max_frames, timings, duration_s)
        try:
            for frame, faces in frames:
                if overlay is not None:  # the faces alone, nothing about this machine (a window adds its own fps)
                    overlay(frame.image, faces)
                for sink in sinks:
                    sink.write(frame, faces)
                if any(sink.stop for sink in sinks):
                    break
        finally:
            frames.close()  # stops the detect thread now, not when the generator is collected
        return timings

    def _answered(self, detected: queue.Queue, predictor: BatchedPredictor, max_frames: int | None,
                  duration_s: float | None, timings: Timings) -> Iterator[tuple[Frame, Faces]]:
        """The detected frames, tracked and aligned one by one, then with the model's answers, in frame order."""
        taken, first_s = 0, None
        while max_frames is None or taken < max_frames:
            item = detected.get()
            if item is None:
                break
            if isinstance(item, BaseException):
                yield from self._infer(timings, predictor.flush)  # the frames before the failure still count
                raise item
            frame, faces = item
            first_s = frame.timestamp_s if first_s is None else first_s
            if duration_s is not None and frame.timestamp_s - first_s >= duration_s:
                break
            taken += 1
            yield from self._infer(timings, predictor.put, (frame, faces), self._align(frame, faces, timings))
        yield from self._infer(timings, predictor.flush)

    def _align(self, frame: Frame, faces: Faces, timings: Timings) -> np.ndarray:
        """Track the faces of one frame and crop them (``faces.crops``); returns their model input."""
        t0 = time.perf_counter()
        self.tracker.update(faces, frame.timestamp_s)
        t1 = time.perf_counter()
        pre = self.backend.contract.pre
        image, eyes = crop_source(frame.image, faces.eyes, self.reading)
        crops = [crop_face(image, e[0], e[1], pre, yaw) for e, yaw in zip(eyes, faces.pose[:, 0])]
        faces.crops = np.stack(crops) if crops else np.zeros((0, pre.size, pre.size), np.uint8)
        batch = to_tensor(faces.crops, pre)
        timings.seconds["track"] += t1 - t0
        timings.seconds["align"] += time.perf_counter() - t1
        return batch

    def _infer(self, timings: Timings, call: Callable, *args) -> Iterator[tuple[Frame, Faces]]:
        """Frames that ``call`` (the predictor's put or flush) answered, with ``faces.probs`` filled in."""
        t0 = time.perf_counter()
        answered = call(*args)
        timings.seconds["infer"] += time.perf_counter() - t0
        for (frame, faces), probs in answered:
            faces.probs = probs
            yield frame, faces

    def _smooth(self, frame: Frame, faces: Faces, timings: Timings) -> Faces:
        t0 = time.perf_counter()
        self.smoother.update(faces, frame.timestamp_s)
        timings.seconds["smooth"] += time.perf_counter() - t0
        return faces

    def _detect_ahead(self, source: Source, out: queue.Queue, stop: threading.Event, timings: Timings) -> None:
        item: object = None
        try:
            for frame in source:
                if stop.is_set():
                    return
                t0 = time.perf_counter()
                faces = self.detect(frame.image, source.still)
                timings.seconds["detect"] += time.perf_counter() - t0
                if not _put(out, (frame, faces), stop):
                    return
        except BaseException as e:  # noqa: BLE001 - handed to the main thread, which raises it
            item = e
        _put(out, item, stop)


def _put(q: queue.Queue, item: object, stop: threading.Event) -> bool:
    """Put unless stopped; False if stopped."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False
