"""emocam as a library: ``Recognizer`` holds a warmed-up pipeline and gives the faces of an image, the (frame, faces)
stream of a video, camera or URL, or a video's records as a table."""

from __future__ import annotations

import importlib.resources
import numbers
import os
import sys
import threading
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import cv2
import numpy as np

from .backends import OPT_BATCH, open_backend
from .contract import ModelError
from .extras import require
from .faces import Faces, Frame
from .landmarks import Landmarker
from .outputs import silence
from .pipeline import Pipeline, Timings
from .reading import DEFAULT_READING, FaceReading, resolve_reading
from .records import dataframe, iter_dicts
from .sinks import Sink
from .smooth import HYSTERESIS, TAU_S, Smoother
from .sources import Source, open_source, read_image, size_problem
from .track import Tracker


class UsageProblem(Exception):
    """A wrong option, combination of options or argument, told in one line."""


def check_max_frames(max_frames: object) -> None:
    """UsageProblem unless ``max_frames`` is a number of frames (1 or more) or None."""
    if max_frames is not None and (isinstance(max_frames, bool) or not isinstance(max_frames, numbers.Integral)
                                   or max_frames < 1):
        raise UsageProblem(f"max_frames must be a number of frames (1 or more) or None; got {max_frames!r}")


@dataclass(frozen=True)
class Options:
    """Everything that decides a run's answers. These defaults are the only ones: the API and both commands take
    theirs from here."""

    model: Path | None = None
    # How faces are read: a preset of ``emocam.reading.READINGS`` (or a FaceReading); ``detector`` and ``min_score``,
    # where given, replace its range and score.
    reading: str | FaceReading = DEFAULT_READING
    detector: str | None = None
    min_score: float | None = None
    backend: str = "auto"
    device: int | str = 0
    tau: float = TAU_S
    hysteresis: float = HYSTERESIS
    # Files send eight frames' faces per model call (the engines' most common batch): less model time per face than
    # one frame a call, even on the CPU.
    batch_frames: int = OPT_BATCH
    # How much of each source a run takes (None: all of it): its first frames, or its first seconds by the frames'
    # own timestamps (a file's container time, a live source's time since it opened).
    max_frames: int | None = None
    duration_s: float | None = None

    def __post_init__(self) -> None:
        try:
            self.face_reading
        except ValueError as e:
            raise UsageProblem(str(e)) from None
        if self.batch_frames < 1 or self.tau < 0 or self.hysteresis < 0:
            raise UsageProblem(f"batch_frames must be >= 1, tau and hysteresis >= 0; got "
                               f"{self.batch_frames}, {self.tau} and {self.hysteresis}")
        check_max_frames(self.max_frames)
        if self.duration_s is not None and not self.duration_s > 0:
            raise UsageProblem(f"--duration must be more than 0 seconds, got {self.duration_s:g}")

    @property
    def face_reading(self) -> FaceReading:
        """How these options read faces: the preset with ``detector`` and ``min_score`` applied."""
        return resolve_reading(self.reading, detector=self.detector, min_score=self.min_score)

    @property
    def model_path(self) -> Path:
        """The model file these options run: ``model``, or the shipped one."""
        return default_model() if self.model is None else Path(self.model)


DEFAULTS = Options()


def default_model() -> Path:
    """Where the shipped model lives: engines/emocam.onnx inside the installed package."""
    return Path(str(importlib.resources.files("emocam.engines") / "emocam.onnx"))


def _stderr_to_devnull() -> int:
    """Point file descriptor 2 at /dev/null; returns a new descriptor for where it pointed before."""
    sys.stderr.flush()
    saved = os.dup(2)
    silence(2)
    return saved


@contextmanager
def quiet_stderr() -> Iterator[None]:
    """Silence what C++ libraries print on file descriptor 2 (mediapipe's set-up chatter) for a while."""
    saved = _stderr_to_devnull()
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def quiet_native_stderr() -> None:
    """From now on, drop what C++ libraries print on file descriptor 2 (mediapipe's and TensorFlow Lite's log
    lines, which would bury emocam's own one-line messages); Python's ``sys.stderr`` keeps the terminal."""
    terminal = _stderr_to_devnull()
    sys.stderr = os.fdopen(terminal, "w", buffering=1, encoding=sys.stderr.encoding, errors="backslashreplace")


class Recognizer:
    """Face detector, tracker, emotion model and smoother, loaded once and warmed up.

    >>> rec = Recognizer()                      # the shipped model, the fastest backend here
    >>> faces = rec(image)                      # one image (a BGR array or a file)
    >>> for frame, faces in rec.stream("clip.mp4"): ...
    >>> table = rec.analyze("clip.mp4")         # a pandas DataFrame, one row per face per frame
    """

    def __init__(self, model: str | Path | None = None, detector: str | None = DEFAULTS.detector,
                 backend: str = DEFAULTS.backend, device: int | str = DEFAULTS.device,
                 min_score: float | None = DEFAULTS.min_score, tau: float = DEFAULTS.tau,
                 hysteresis: float = DEFAULTS.hysteresis, batch_frames: int = DEFAULTS.batch_frames,
                 reading: str | FaceReading = DEFAULTS.reading, max_frames: int | None = DEFAULTS.max_frames,
                 duration_s: float | None = DEFAULTS.duration_s) -> None:
        self.options = Options(model=None if model is None else Path(model), reading=reading, detector=detector,
                               min_score=min_score, backend=backend, device=device, tau=tau, hysteresis=hysteresis,
                               batch_frames=batch_frames, max_frames=max_frames, duration_s=duration_s)
        self.reading = self.options.face_reading
        path = self.options.model_path
        if model is None and not path.is_file():
            raise ModelError(f"no model shipped at {path} yet; pass --model PATH (an ONNX file from 'emotrain export')")
        engine = open_backend(path, backend, device, threads=1)
        self._stack = ExitStack()
        # One pipeline, one user at a time: mediapipe's graphs break for good when two threads feed them.
        self._turns = threading.Condition()
        self._busy: str | None = None  # "call" or "stream" while one runs
        self._closed = False
        with quiet_stderr():
            self._detector = self._stack.enter_context(self.reading.open_detector())
            landmarker = self._stack.enter_context(Landmarker())
            self.pipeline = Pipeline(self._detector, engine, Tracker(), Smoother(tau_s=tau, hysteresis=hysteresis),
                                     landmarker=landmarker, reading=self.reading)
            self.pipeline.warmup()

    @property
    def classes(self) -> tuple[str, ...]:
        """The model's class names, in the order of its probabilities."""
        return self.pipeline.classes

    @property
    def backend(self) -> str:
        """The name of the backend that runs the model."""
        return self.pipeline.backend.name

    @contextmanager
    def _turn(self, what: str) -> Iterator[None]:
        """Hold the pipeline for one call or one stream: a call waits for another thread's call (a single image is
        quick); anything while a stream runs is refused, since a stream may last for hours."""
        with self._turns:
            while self._busy == "call":
                self._turns.wait()
            if self._closed:
                raise UsageProblem("this Recognizer is closed; make a new one")
            if self._busy == "stream":
                raise UsageProblem("this Recognizer is running a stream that has not ended; finish it or close it "
                                   "(frames.close()) first, or give each thread its own Recognizer")
            self._busy = what
        try:
            yield
        finally:
            with self._turns:
                self._busy = None
                self._turns.notify_all()
            if self._closed:  # closed while this stream ran: released now that nothing uses it
                self._stack.close()

    def _reset(self) -> None:
        self._detector.reset()
        self.pipeline.tracker.reset()
        self.pipeline.smoother.reset()

    def reset(self) -> None:
        """Forget every face seen so far (track ids restart at 0): the next frame starts a new clip."""
        with self._turn("call"):
            self._reset()

    def __call__(self, image: np.ndarray | str | Path, rgb: bool = False) -> Faces:
        """The faces of one image (a BGR uint8 array, a grey one, or an image file), on their own: nothing carries
        over from earlier calls. ``rgb``: the array's channels are in RGB order (frames from PIL or imageio)."""
        image = as_bgr(image, rgb)
        with self._turn("call"):
            self._reset()
            return self.pipeline.process(Frame(0, 0.0, image), self.pipeline.detect(image), Timings())

    def stream(self, source: str | int | Path | Source, max_frames: int | None = None,
               timings: Timings | None = None) -> Iterator[tuple[Frame, Faces]]:
        """(frame, faces) for every frame of a video or image file, or for the newest frames of a camera (an index)
        or stream URL: tracked, batched, smoothed, in frame order, up to ``max_frames`` (default: the options') and
        the options' ``duration_s``. A source given by name is opened and closed here; a file that ends early raises
        EndedEarly after its last frame."""
        check_source(source)
        check_max_frames(max_frames)
        if self._closed:
            raise UsageProblem("this Recognizer is closed; make a new one")
        return self._stream(source, self.options.max_frames if max_frames is None else max_frames, timings)

    def _stream(self, source: str | int | Path | Source, max_frames: int | None,
                timings: Timings | None) -> Iterator[tuple[Frame, Faces]]:
        with self._turn("stream"), ExitStack() as stack:
            self._reset()
            src = source if isinstance(source, Source) else stack.enter_context(open_source(source))
            yield from self.pipeline.stream(src, self.options.batch_frames, max_frames, timings,
                                            self.options.duration_s)
            if getattr(src, "ended_early", None) is not None:
                raise src.ended_early

    def run(self, source: Source, sinks: Sequence[Sink] = ()) -> Timings:
        """Write an opened source's frames into ``sinks`` until it ends, a sink stops it or the options' max_frames or
        duration_s is reached; the caller closes both."""
        with self._turn("stream"):
            self._reset()
            return self.pipeline.run(source, sinks, self.options.max_frames, self.options.batch_frames,
                                     self.options.duration_s)

    def analyze(self, path: str | Path, every_frame: bool = False):
        """A video or image file's records as a pandas DataFrame, the CSV's columns and rows (``every_frame``: also a
        row for each frame without a face). Needs pandas: pip install 'emocam[table]'."""
        require("pandas")  # before the run, not after it
        check_source(path)
        with open_source(Path(path), live=False) as src:
            return dataframe(iter_dicts(self.stream(src), self.classes, every_frame), self.classes)

    def close(self) -> None:
        """Release the face detector and Face Mesh (after the stream that runs, if one does); safe to call twice."""
        with self._turns:
            while self._busy == "call":
                self._turns.wait()
            self._closed = True
            if self._busy == "stream":
                return
        self._stack.close()

    def __enter__(self) -> "Recognizer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def check_source(source: object) -> None:
    """UsageProblem unless ``source`` can name or be a source: a path, a camera index, a URL or an opened Source."""
    if isinstance(source, (str, os.PathLike, Source)) or (isinstance(source, int) and not isinstance(source, bool)):
        return
    hint = ": for one image call rec(image)" if isinstance(source, np.ndarray) else ""
    raise UsageProblem(f"expected a video or image file, a camera index or a stream URL; got {kind(source)}{hint}")


def kind(value: object) -> str:
    """How an argument is named in a message: None, or its type's full name."""
    if value is None:
        return "None"
    t = type(value)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def as_bgr(image: object, rgb: bool = False) -> np.ndarray:
    """What a caller passed as one image, as the BGR uint8 (H, W, 3) array the pipeline takes: an array (BGR, RGB
    with ``rgb``, or grey) or an image file's path; UsageProblem saying what was expected for anything else."""
    expected = "expected an image: a BGR uint8 array (H, W, 3), a grey one (H, W) or an image file's path"
    if isinstance(image, (str, os.PathLike)):
        return read_image(Path(image))
    if not isinstance(image, np.ndarray):
        name = kind(image)
        hint = {"bytes": ": pass the image file's path, or decode the bytes first (cv2.imdecode)"}.get(name, "")
        if name.startswith("PIL."):
            hint = ": pass np.asarray(image) with rgb=True"
        raise UsageProblem(f"{expected}; got {'a PIL image' if name.startswith('PIL.') else name}{hint}")
    shape = image.shape
    if image.dtype != np.uint8:
        raise UsageProblem(f"{expected}; got {image.dtype} values: for values in 0..1 pass "
                           f"(image * 255).round().astype(np.uint8)")
    if image.size == 0:
        raise UsageProblem(f"{expected}; got an empty array of shape {shape}")
    if image.ndim == 4:
        raise UsageProblem(f"expected one image (H, W, 3); got an array of shape {shape}, a batch of {shape[0]}: "
                           f"call rec(image) for each")
    if image.ndim == 3 and shape[2] not in (1, 3, 4) and shape[0] in (1, 3, 4):
        raise UsageProblem(f"expected an image (H, W, 3); got shape {shape}, channels first: pass "
                           f"image.transpose(1, 2, 0)")
    if image.ndim == 3 and shape[2] == 4:
        raise UsageProblem(f"{expected}; got 4 channels (an alpha channel?): pass image[..., :3]")
    if image.ndim not in (2, 3) or (image.ndim == 3 and shape[2] != 3 and shape[2] != 1):
        channels = f"{shape[2]} channels" if image.ndim == 3 else f"shape {shape}"
        raise UsageProblem(f"{expected}; got {channels}")
    problem = size_problem(shape[1], shape[0])
    if problem:
        raise UsageProblem(f"the image is {problem}")
    if image.ndim == 2 or shape[2] == 1:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    return np.ascontiguousarray(image[..., ::-1]) if rgb else image
