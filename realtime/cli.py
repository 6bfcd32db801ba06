"""The ``emocam`` command: live emotion recognition on a camera, stream or video file, and ``emocam bench``."""

from __future__ import annotations

import importlib.resources
import json
import os
import sys
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Annotated, Iterator, Optional

import typer

from .contract import ModelError
from .detect import MIN_SCORE, RANGES, FaceDetector
from .backends import BACKENDS, BackendError, open_backend, throughput
from .pipeline import STAGES, Pipeline, Timings
from .sinks import CsvSink, ProgressBar, SinkError, Summary, VideoSink, Window, writable
from .smooth import Smoother
from .sources import SourceError, open_source
from .track import Tracker

USER_ERRORS = (SourceError, ModelError, BackendError, SinkError)

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, invoke_without_command=True,
                  help="Real-time facial emotion recognition on a camera, a stream or a video file.")

ModelOpt = Annotated[Optional[Path], typer.Option("--model", help="ONNX model with emocam metadata (default: the shipped engines/emocam.onnx)")]
BackendOpt = Annotated[str, typer.Option("--backend", help=f"inference backend: auto (fastest here), {', '.join(BACKENDS)}")]
DeviceOpt = Annotated[int, typer.Option("--device", min=0, help="GPU index for the GPU backends")]
BatchFramesOpt = Annotated[int, typer.Option("--batch-frames", min=1, help="video files: frames whose faces share a model call (live: always 1)")]
DetectorOpt = Annotated[str, typer.Option("--detector", help="BlazeFace range: short (faces within 2 m), full (far faces) or both")]
MinScoreOpt = Annotated[float, typer.Option("--min-score", min=0.0, max=1.0, help="lowest detector score taken as a face")]

# Batch sizes at which bench times the classifier alone, and for how long each.
MODEL_BATCHES = (1, 8, 64)
MODEL_SECONDS = 1.0
# Files send eight frames' faces per model call: less model time per face than one frame a call, even on the CPU.
BATCH_FRAMES = 8


class UsageProblem(Exception):
    """A wrong combination of options, told in one line."""


def default_model() -> Path:
    """Where the shipped model lives: engines/emocam.onnx inside the installed package."""
    return Path(str(importlib.resources.files("emocam.engines") / "emocam.onnx"))


@contextmanager
def quiet_stderr() -> Iterator[None]:
    """Silence what C++ libraries print on file descriptor 2 (mediapipe's set-up chatter) for a while."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def build_pipeline(stack: ExitStack, model: Path | None, backend: str, device: int, detector: str,
                   min_score: float = MIN_SCORE, tau: float = 0.3, hysteresis: float = 0.1) -> Pipeline:
    """Model, detector, tracker and smoother, ready and warmed up; the detector closes with ``stack``."""
    if detector not in RANGES:
        raise UsageProblem(f"unknown detector '{detector}'; choose one of {', '.join(RANGES)}")
    if model is None:
        model = default_model()
        if not model.is_file():
            raise ModelError(f"no model shipped at {model} yet; pass --model PATH (an ONNX file from 'emotrain export')")
    engine = open_backend(model, backend, device, threads=1)
    with quiet_stderr():
        face_detector = stack.enter_context(FaceDetector(detector, min_score))
        pipeline = Pipeline(face_detector, engine, Tracker(), Smoother(tau_s=tau, hysteresis=hysteresis))
        pipeline.warmup()
    return pipeline


@app.callback(invoke_without_command=True)
def live(
    ctx: typer.Context,
    source: Annotated[Optional[str], typer.Option("--source", help="camera index (0), device path or stream URL")] = None,
    video: Annotated[Optional[Path], typer.Option("--video", help="video file; every frame is processed")] = None,
    csv: Annotated[Optional[Path], typer.Option("--csv", help="one row per face per frame")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="annotated video (.mp4)")] = None,
    summary: Annotated[Optional[Path], typer.Option("--summary", help="per-face summary as JSON")] = None,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="PNG of each face's smoothed timeline")] = None,
    no_display: Annotated[bool, typer.Option("--no-display", help="no preview window")] = False,
    model: ModelOpt = None,
    backend: BackendOpt = "onnxruntime",
    device: DeviceOpt = 0,
    batch_frames: BatchFramesOpt = BATCH_FRAMES,
    detector: DetectorOpt = "short",
    min_score: MinScoreOpt = MIN_SCORE,
    tau: Annotated[float, typer.Option("--tau", min=0.0, help="smoothing time constant in seconds")] = 0.3,
    hysteresis: Annotated[float, typer.Option("--hysteresis", min=0.0, help="margin before the label changes")] = 0.1,
) -> None:
    """Recognise emotions live (--source) or in a video file (--video); q or Esc in the window stops."""
    if ctx.invoked_subcommand is not None:
        return
    if (source is None) == (video is None):
        raise UsageProblem("give exactly one of --source CAMERA|URL or --video PATH (see emocam --help)")
    with ExitStack() as stack:
        src = stack.enter_context(open_source(video if video is not None else source, live=None if video is None else False))
        pipeline = build_pipeline(stack, model, backend, device, detector, min_score, tau, hysteresis)
        classes = pipeline.classes
        # Sinks that only check their target come before the CSV, which creates its file at once.
        sinks = [] if no_display else [stack.enter_context(Window(f"emocam: {src.name}"))]
        if out is not None:
            sinks.append(stack.enter_context(VideoSink(out, src.fps)))
        sinks.append(stack.enter_context(Summary(classes, summary, plot)))
        if csv is not None:
            sinks.append(stack.enter_context(CsvSink(csv, classes)))
        if not src.live:
            sinks.append(stack.enter_context(ProgressBar(src.frame_count, Path(src.name).name)))
        pipeline.run(src, sinks, batch_frames=batch_frames)


@app.command()
def bench(
    video: Annotated[Path, typer.Argument(help="video file to run headless, every frame")],
    json_out: Annotated[Optional[Path], typer.Option("--json", help="write the figures as JSON")] = None,
    model: ModelOpt = None,
    backend: BackendOpt = "onnxruntime",
    device: DeviceOpt = 0,
    batch_frames: BatchFramesOpt = BATCH_FRAMES,
    detector: DetectorOpt = "short",
    min_score: MinScoreOpt = MIN_SCORE,
) -> None:
    """Time every stage headless on a video (ms per frame per stage, end-to-end fps), then the classifier alone."""
    if json_out is not None:
        writable(json_out)
    with ExitStack() as stack:
        src = stack.enter_context(open_source(video, live=False))
        pipeline = build_pipeline(stack, model, backend, device, detector, min_score)
        timings = pipeline.run(src, batch_frames=batch_frames)
    rates = throughput(pipeline.backend, MODEL_BATCHES, MODEL_SECONDS)
    print(bench_table(timings, pipeline.backend.name, rates))
    if json_out is not None:
        report = {"video": str(video), "model": str(model or default_model()), "backend": pipeline.backend.name,
                  "device": device, "batch_frames": batch_frames, "detector": detector, **timings.to_dict(),
                  "classifier": {"ms_per_face_batch1": round(1e3 / rates[1], 4),
                                 "faces_per_s": {str(n): round(r, 1) for n, r in rates.items()}}}
        json_out.write_text(json.dumps(report, indent=2) + "\n")


def bench_table(t: Timings, backend: str, rates: dict[int, float]) -> str:
    """Benchmark figures as text: one line per stage, end to end, then the classifier alone at each batch size."""
    ms = t.ms_per_frame()
    lines = [f"{t.frames} frames, {t.faces} faces", f"{'stage':<8} {'ms/frame':>9}"]
    lines += [f"{stage:<8} {ms[stage]:>9.3f}" for stage in STAGES]
    lines.append(f"{'e2e':<8} {1e3 * t.wall_s / max(t.frames, 1):>9.3f}   ({t.fps:.1f} fps; stages overlap in threads)")
    lines += ["", f"classifier alone ({backend})", f"{'batch':<8} {'faces/s':>9} {'ms/face':>9}"]
    lines += [f"{n:<8} {r:>9.1f} {1e3 / r:>9.3f}" for n, r in rates.items()]
    return "\n".join(lines)


def fail(message: str, code: int = 2) -> None:
    """Tell the user what went wrong in one line and exit."""
    print(f"emocam: error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def main() -> None:
    """Entry point of the ``emocam`` script."""
    # FFmpeg would print its own lines for streams and files it cannot open; we report those ourselves.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    try:
        code = app(prog_name="emocam", standalone_mode=False)
    except USER_ERRORS + (UsageProblem,) as e:
        fail(str(e))
    except typer.TyperException as e:  # bad or missing options and arguments
        fail(e.format_message())
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
