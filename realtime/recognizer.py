"""emocam as a library: ``Recognizer`` holds a warmed-up pipeline and gives the faces of an image, the (frame, faces)
stream of a video, camera or URL, or a video's records as a table."""

from __future__ import annotations

import importlib.resources
import os
import sys
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from .backends import open_backend
from .contract import ModelError
from .detect import MIN_SCORE, RANGES, FaceDetector
from .extras import require
from .faces import Faces, Frame
from .landmarks import Landmarker
from .pipeline import Pipeline, Timings
from .records import dataframe, iter_dicts
from .sinks import Sink
from .smooth import Smoother
from .sources import Source, open_source, read_image
from .track import Tracker


class UsageProblem(Exception):
    """A wrong option or combination of options, told in one line."""


@dataclass(frozen=True)
class Options:
    """Everything that decides a run's answers. These defaults are the only ones: the API and both commands take
    theirs from here."""

    model: Path | None = None
    detector: str = "short"
    min_score: float = MIN_SCORE
    backend: str = "auto"
    device: int | str = 0
    tau: float = 0.3
    hysteresis: float = 0.1
    # Files send eight frames' faces per model call: less model time per face than one frame a call, even on the CPU.
    batch_frames: int = 8
    # How much of each source a run takes (None: all of it): its first frames, or its first seconds by the frames'
    # own timestamps (a file's container time, a live source's time since it opened).
    max_frames: int | None = None
    duration_s: float | None = None

    def __post_init__(self) -> None:
        if self.detector not in RANGES:
            raise UsageProblem(f"unknown detector '{self.detector}'; choose one of {', '.join(RANGES)}")
        if self.batch_frames < 1 or self.tau < 0 or self.hysteresis < 0 or not 0 <= self.min_score <= 1:
            raise UsageProblem(f"batch_frames must be >= 1, tau and hysteresis >= 0 and min_score in [0, 1]; got "
                               f"{self.batch_frames}, {self.tau}, {self.hysteresis} and {self.min_score}")
        if self.max_frames is not None and self.max_frames < 1:
            raise UsageProblem(f"--max-frames must be at least 1, got {self.max_frames}")
        if self.duration_s is not None and not self.duration_s > 0:
            raise UsageProblem(f"--duration must be more than 0 seconds, got {self.duration_s:g}")

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
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
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

    def __init__(self, model: str | Path | None = None, detector: str = DEFAULTS.detector,
                 backend: str = DEFAULTS.backend, device: int | str = DEFAULTS.device, min_score: float = DEFAULTS.min_score,
                 tau: float = DEFAULTS.tau, hysteresis: float = DEFAULTS.hysteresis,
                 batch_frames: int = DEFAULTS.batch_frames, max_frames: int | None = DEFAULTS.max_frames,
                 duration_s: float | None = DEFAULTS.duration_s) -> None:
        self.options = Options(model=None if model is None else Path(model), detector=detector, min_score=min_score,
                               backend=backend, device=device, tau=tau, hysteresis=hysteresis,
                               batch_frames=batch_frames, max_frames=max_frames, duration_s=duration_s)
        path = self.options.model_path
        if model is None and not path.is_file():
            raise ModelError(f"no model shipped at {path} yet; pass --model PATH (an ONNX file from 'emotrain export')")
        engine = open_backend(path, backend, device, threads=1)
        self._stack = ExitStack()
        with quiet_stderr():
            face_detector = self._stack.enter_context(FaceDetector(detector, min_score))
            landmarker = self._stack.enter_context(Landmarker())
            self.pipeline = Pipeline(face_detector, engine, Tracker(), Smoother(tau_s=tau, hysteresis=hysteresis),
                                     landmarker=landmarker)
            self.pipeline.warmup()

    @property
    def classes(self) -> tuple[str, ...]:
        """The model's class names, in the order of its probabilities."""
        return self.pipeline.classes

    @property
    def backend(self) -> str:
        """The name of the backend that runs the model."""
        return self.pipeline.backend.name

    def reset(self) -> None:
        """Forget every face seen so far (track ids restart at 0): the next frame starts a new clip."""
        self.pipeline.tracker.reset()
        self.pipeline.smoother.reset()

    def __call__(self, image: np.ndarray | str | Path) -> Faces:
        """The faces of one image (a BGR uint8 array or an image file), on their own: nothing carries over from
        earlier calls."""
        if not isinstance(image, np.ndarray):
            image = read_image(Path(image))
        self.reset()
        return self.pipeline.process(Frame(0, 0.0, image), self.pipeline.detect(image), Timings())

    def stream(self, source: str | int | Path | Source, max_frames: int | None = None,
               timings: Timings | None = None) -> Iterator[tuple[Frame, Faces]]:
        """(frame, faces) for every frame of a video or image file, or for the newest frames of a camera (an index)
        or stream URL: tracked, batched, smoothed, in frame order, up to ``max_frames`` (default: the options') and
        the options' ``duration_s``. A source given by name is opened and closed here; a file that ends early raises
        EndedEarly after its last frame."""
        self.reset()
        max_frames = self.options.max_frames if max_frames is None else max_frames
        with ExitStack() as stack:
            src = source if isinstance(source, Source) else stack.enter_context(open_source(source))
            yield from self.pipeline.stream(src, self.options.batch_frames, max_frames, timings,
                                            self.options.duration_s)
            if getattr(src, "ended_early", None) is not None:
                raise src.ended_early

    def run(self, source: Source, sinks: Sequence[Sink] = ()) -> Timings:
        """Write an opened source's frames into ``sinks`` until it ends, a sink stops it or the options' max_frames or
        duration_s is reached; the caller closes both."""
        self.reset()
        return self.pipeline.run(source, sinks, self.options.max_frames, self.options.batch_frames,
                                 self.options.duration_s)

    def analyze(self, path: str | Path, every_frame: bool = False):
        """A video or image file's records as a pandas DataFrame, the CSV's columns and rows (``every_frame``: also a
        row for each frame without a face). Needs pandas: pip install 'emocam[table]'."""
        require("pandas")  # before the run, not after it
        with open_source(Path(path), live=False) as src:
            return dataframe(iter_dicts(self.stream(src), self.classes, every_frame), self.classes)

    def close(self) -> None:
        """Release the face detector and Face Mesh."""
        self._stack.close()

    def __enter__(self) -> "Recognizer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
