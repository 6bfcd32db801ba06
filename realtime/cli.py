"""The ``emocam`` command: live emotion recognition on a camera, stream or video file, and ``emocam bench``."""

from __future__ import annotations

import json
import math
import os
import signal
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, Optional

import typer

from . import USER_ERRORS
from .backends import BACKENDS, TIMED_BATCHES, throughput
from .outputs import SinkError, Staged, check_paths, left_while_printing, silence, tell
from .pipeline import STAGES, Timings
from .provenance import VERSION, provenance
from .reading import reading_presets
from .recognizer import DEFAULTS, Options, Recognizer, UsageProblem, default_model, quiet_native_stderr
from .serve import SERVE_DEFAULTS, ServeOptions
from .sinks import (H264_SUFFIXES, CsvSink, ImageSink, JsonlSink, ProgressBar, StreamProgress, VideoSink, Window,
                    annotated_output)
from .sources import STREAM_TIMEOUT_S, EndedEarly, ImageFile, Source, open_source
from .summary import Summary, plot_format

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, invoke_without_command=True,
                  help="Real-time facial emotion recognition on a camera, a stream or a video file.")

ModelOpt = Annotated[Optional[Path], typer.Option("--model", help="ONNX model with emocam metadata (default: the shipped engines/emocam.onnx)")]
BackendOpt = Annotated[str, typer.Option("--backend", help=f"inference backend: auto (fastest here), {', '.join(BACKENDS)}")]
DeviceOpt = Annotated[int, typer.Option("--device", min=0, help="GPU index for the GPU backends")]
BatchFramesOpt = Annotated[int, typer.Option("--batch-frames", min=1, help="video files: frames whose faces share a model call (live: always 1)")]
ReadingOpt = Annotated[str, typer.Option("--reading", help=f"how faces are read, a preset: {reading_presets()}")]
DetectorOpt = Annotated[Optional[str], typer.Option("--detector", help="BlazeFace range: short (faces within 2 m), full (far faces) or both (default: the reading's)")]
MinScoreOpt = Annotated[Optional[float], typer.Option("--min-score", min=0.0, max=1.0, help="lowest detector score taken as a face (default: the reading's)")]
TauOpt = Annotated[float, typer.Option("--tau", min=0.0, help="smoothing time constant in seconds")]
HysteresisOpt = Annotated[float, typer.Option("--hysteresis", min=0.0, help="margin before the label changes")]
EveryFrameOpt = Annotated[bool, typer.Option("--every-frame", help="CSV/JSONL: also a row for each frame without a face (only frame and timestamp_s filled), so rows line up with the video's timeline")]
MaxFramesOpt = Annotated[Optional[int], typer.Option("--max-frames", min=1, help="take only the first N frames of each source")]
DurationOpt = Annotated[Optional[float], typer.Option("--duration", help="take only the first S seconds of each source (a file's own time; a camera's or stream's since it opened)")]

# How long bench times the classifier alone at each batch size.
MODEL_SECONDS = 1.0
# Exit codes of emocam and emotrain: an error the user can fix (told in one line); a run whose video file ended early
# (cut short or corrupt: its outputs hold the frames before); a batch in which some inputs failed or ended early
# (index.csv says which and why; the others' results are whole); and a run stopped by a signal, 128 + its number.
EXIT_USER_ERROR = 2
EXIT_ENDED_EARLY = 3
EXIT_SOME_FAILED = 4
EXIT_SIGNALLED = 128


class Stopped(BaseException):
    """A stop signal (SIGTERM, SIGHUP), taken like Ctrl-C: every output is closed, then the exit code is 128 + signal.
    Not a KeyboardInterrupt, which typer turns into exit code 130 whatever the signal was."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def stop_on_signals() -> None:
    """Make SIGTERM and SIGHUP stop the run as Ctrl-C does, so that they too leave every output whole."""
    def stop(signum: int, frame: object) -> None:
        for other in (signal.SIGTERM, signal.SIGHUP):  # a second one must not cut the closing of the outputs short
            signal.signal(other, signal.SIG_IGN)
        raise Stopped(signum)

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, stop)


def show_version(asked: bool) -> None:
    """--version: print emocam's version and stop."""
    if asked:
        print(f"emocam {VERSION}")
        raise typer.Exit()


@app.callback(invoke_without_command=True)
def live(
    ctx: typer.Context,
    source: Annotated[Optional[str], typer.Option("--source", help="camera index (0), device path or stream URL")] = None,
    video: Annotated[Optional[str], typer.Option("--video", help="video or image file; every frame is processed")] = None,
    csv: Annotated[Optional[Path], typer.Option("--csv", help="one row per face per frame")] = None,
    jsonl: Annotated[Optional[str], typer.Option("--jsonl", help="one JSON object per face per frame, flushed as it goes; - for standard output (everything else then goes to standard error)")] = None,
    every_frame: EveryFrameOpt = False,
    out: Annotated[Optional[Path], typer.Option("--out", help="annotated video, H.264 (.mp4, .mov, .mkv ...); for an image input, the annotated image (.jpg, .png ...)")] = None,
    summary: Annotated[Optional[Path], typer.Option("--summary", help="per-face summary as JSON")] = None,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="PNG of each face's smoothed timeline")] = None,
    no_display: Annotated[bool, typer.Option("--no-display", help="no preview window")] = False,
    fast: Annotated[bool, typer.Option("--fast", help="window: show a file as fast as it is processed, not at its own speed")] = False,
    model: ModelOpt = DEFAULTS.model,
    backend: BackendOpt = DEFAULTS.backend,
    device: DeviceOpt = DEFAULTS.device,
    batch_frames: BatchFramesOpt = DEFAULTS.batch_frames,
    reading: ReadingOpt = DEFAULTS.reading,
    detector: DetectorOpt = DEFAULTS.detector,
    min_score: MinScoreOpt = DEFAULTS.min_score,
    tau: TauOpt = DEFAULTS.tau,
    hysteresis: HysteresisOpt = DEFAULTS.hysteresis,
    timeout: Annotated[float, typer.Option("--timeout", min=0.1, help="streams: seconds to wait for the server to connect or to send the next frame")] = STREAM_TIMEOUT_S,
    max_frames: MaxFramesOpt = DEFAULTS.max_frames,
    duration: DurationOpt = DEFAULTS.duration_s,
    version: Annotated[bool, typer.Option("--version", is_eager=True, callback=show_version, help="print emocam's version and stop")] = False,
) -> None:
    """Recognise emotions live (--source) or in a video or image file (--video); q or Esc in the window stops."""
    if ctx.invoked_subcommand is not None:
        return
    if (source is None) == (video is None):
        raise UsageProblem("give exactly one of --source CAMERA|URL or --video PATH (see emocam --help)")
    # Every output is checked before anything is opened; none replaces its target before the run ends.
    source_file = source if source is not None and Path(source).is_file() else None
    to_stdout = jsonl == "-"
    check_paths({"--video": video, "--source": source_file, "--model": model or default_model()},
                {"--csv": csv, "--out": out, "--summary": summary, "--plot": plot,
                 "--jsonl": None if to_stdout else jsonl})
    out_kind = None if out is None else annotated_output(out)
    if plot is not None:
        plot_format(plot)
    with ExitStack() as stack:
        spec = video if video is not None else source
        src = stack.enter_context(open_source(spec, live=None if video is None else False, timeout_s=timeout))
        still = isinstance(src, ImageFile)
        if out_kind == "image" and not still:
            raise UsageProblem(f"--out {out} is an image name, and {spec} is a video; name the output "
                               f"{', '.join(H264_SUFFIXES)}")
        rec = stack.enter_context(Recognizer(model, detector=detector, backend=backend, device=device,
                                             min_score=min_score, tau=tau, hysteresis=hysteresis,
                                             batch_frames=batch_frames, reading=reading, max_frames=max_frames,
                                             duration_s=duration))
        classes = rec.classes
        # First in, last closed: while standard output carries JSONL, whatever the others print at close goes to stderr.
        sinks = [] if jsonl is None else [stack.enter_context(JsonlSink(jsonl, classes, every_frame))]
        window = None
        if not no_display:
            try:
                window = stack.enter_context(Window(f"emocam: {src.name}", pace=not (src.live or fast), hold=still))
                sinks.append(window)
            except SinkError as e:
                print(f"emocam: {e}; going on without the preview window (--no-display)", file=sys.stderr, flush=True)
        if jsonl is not None:  # a reader of the JSON lines that leaves stops the run only if nothing else wants it
            sinks[0].alone = len(sinks) == 1 and not any(p is not None for p in (out, summary, plot, csv))
        if out_kind == "video":
            sinks.append(stack.enter_context(VideoSink(out, src.fps)))
        elif out_kind == "image":
            sinks.append(stack.enter_context(ImageSink(out)))
        about = provenance(spec, rec.options, rec.backend)
        sinks.append(stack.enter_context(Summary(classes, summary, plot, out=sys.stderr if to_stdout else None,
                                                 about=about)))
        if csv is not None:
            sinks.append(stack.enter_context(CsvSink(csv, classes, every_frame)))
        if not src.live:
            sinks.append(stack.enter_context(ProgressBar(planned_frames(src, rec.options), Path(src.name).name)))
        elif window is None:
            sinks.append(stack.enter_context(StreamProgress(src)))
        timings = rec.run(src, sinks)
    if src.ended:  # a finite stream's own end: its outputs are whole
        print(f"emocam: {src.name} ended after {timings.frames} frames", file=sys.stderr, flush=True)
    if timings.frames and not timings.faces:
        print(f"emocam: {no_face_hint(rec.options, f'in {timings.frames} frame(s)')}", file=sys.stderr, flush=True)
    if getattr(src, "ended_early", None) is not None:  # told once the outputs are closed: they hold what was read
        raise src.ended_early


@app.command()
def bench(
    video: Annotated[str, typer.Argument(help="video file to run headless, every frame")],
    json_out: Annotated[Optional[Path], typer.Option("--json", help="write the figures as JSON")] = None,
    model: ModelOpt = DEFAULTS.model,
    backend: BackendOpt = DEFAULTS.backend,
    device: DeviceOpt = DEFAULTS.device,
    batch_frames: BatchFramesOpt = DEFAULTS.batch_frames,
    reading: ReadingOpt = DEFAULTS.reading,
    detector: DetectorOpt = DEFAULTS.detector,
    min_score: MinScoreOpt = DEFAULTS.min_score,
) -> None:
    """Time every stage headless on a video (ms per frame per stage, end-to-end fps), then the classifier alone."""
    check_paths({"VIDEO": video, "--model": model or default_model()}, {"--json": json_out})
    with ExitStack() as stack:
        staged = None if json_out is None else stack.enter_context(Staged(json_out))
        src = stack.enter_context(open_source(video, live=False))
        rec = stack.enter_context(Recognizer(model, detector=detector, backend=backend, device=device,
                                             min_score=min_score, batch_frames=batch_frames, reading=reading))
        pipeline = rec.pipeline
        timings = rec.run(src)
        if src.ended_early is not None:
            raise src.ended_early
        rates = throughput(pipeline.backend, TIMED_BATCHES, MODEL_SECONDS)
        tell(bench_table(timings, pipeline.backend.name, rates))
        if staged is not None:
            report = {"video": str(video), "model": str(model or default_model()), "backend": pipeline.backend.name,
                      "device": device, "batch_frames": batch_frames, "detector": rec.reading.detector,
                      "reading": rec.reading.to_dict(), **timings.to_dict(),
                      "classifier": {"ms_per_face_batch1": round(1e3 / rates[1], 4),
                                     "faces_per_s": {str(n): round(r, 1) for n, r in rates.items()}}}
            staged.fill(lambda path: path.write_text(json.dumps(report, indent=2) + "\n"))


@app.command()
def batch(
    inputs: Annotated[list[str], typer.Argument(help="video and image files, folders (searched recursively) and globs")],
    out_dir: Annotated[Path, typer.Option("--out-dir", help="folder for each input's CSV and summary, and index.csv")],
    workers: Annotated[int, typer.Option("--workers", min=1, help="processes on this machine, each with its own model")] = 1,
    ray: Annotated[Optional[str], typer.Option("--ray", help="run one task per input on a Ray cluster: auto (the one this machine joined) or its ADDRESS (host:port); inputs and --out-dir must be on storage every node sees")] = None,
    parquet: Annotated[Optional[Path], typer.Option("--parquet", help="also every input's rows in one Parquet file, with an input column")] = None,
    every_frame: EveryFrameOpt = False,
    model: ModelOpt = DEFAULTS.model,
    backend: BackendOpt = DEFAULTS.backend,
    device: DeviceOpt = DEFAULTS.device,
    batch_frames: BatchFramesOpt = DEFAULTS.batch_frames,
    reading: ReadingOpt = DEFAULTS.reading,
    detector: DetectorOpt = DEFAULTS.detector,
    min_score: MinScoreOpt = DEFAULTS.min_score,
    tau: TauOpt = DEFAULTS.tau,
    hysteresis: HysteresisOpt = DEFAULTS.hysteresis,
    max_frames: MaxFramesOpt = DEFAULTS.max_frames,
    duration: DurationOpt = DEFAULTS.duration_s,
) -> None:
    """Many files, one CSV and summary each, recorded in OUT_DIR/index.csv as they finish; a file that cannot be read
    or has no face is recorded and the batch goes on (exit code 4 when some input failed); a rerun skips what was
    finished, and refuses other options or another model for the same OUT_DIR."""
    from .batch import ENDED_EARLY, FAILED, INDEX, NO_FACE, run_batch

    options = Options(model=model, reading=reading, detector=detector, min_score=min_score, backend=backend,
                      device=device, tau=tau, hysteresis=hysteresis, batch_frames=batch_frames, max_frames=max_frames,
                      duration_s=duration)
    counts = run_batch(inputs, out_dir, options, every_frame, workers, ray, parquet)
    skipped, failed_before = counts.pop("skipped"), counts.pop("failed before", 0)
    ran = ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "nothing to do"
    total = skipped + sum(counts.values())
    tell(f"{total} inputs: {skipped} already finished; this run: {ran}; "
         f"index {out_dir / INDEX}" + (f"; all rows in {parquet}" if parquet is not None else ""))
    if counts and counts.get(NO_FACE) == sum(counts.values()):
        print(f"emocam: {no_face_hint(options, f'in any of the {counts[NO_FACE]} inputs run')}", file=sys.stderr,
              flush=True)
    unfinished = failed_before + counts.get(FAILED, 0) + counts.get(ENDED_EARLY, 0)
    if unfinished:
        print(f"emocam: {unfinished} of {total} inputs failed or ended early; their errors are in {out_dir / INDEX}",
              file=sys.stderr, flush=True)
        raise typer.Exit(EXIT_SOME_FAILED)


def no_face_hint(options: Options, where: str) -> str:
    """What to try when a run found no face at all (``where``: in what), from the face reading it ran with."""
    reading = options.face_reading
    wider = {"short": "--detector full (small or far faces; both for near and far)", "full": "--detector both"}
    now = f"{reading.min_score:g}"
    if reading.score(still=False) != reading.min_score:
        now += f" in photos, {reading.score(still=False):g} in video"
    tries = ([f"try {wider[reading.detector]}"] if reading.detector in wider else []) + [
        f"a lower --min-score (now {now}) for faint or partly hidden faces"]
    return f"no face found {where}; " + ", or ".join(tries)


def planned_frames(src: Source, options: Options) -> int | None:
    """How many frames of a file a run will take, for its progress bar (None where the file does not say)."""
    counts = [src.frame_count, options.max_frames,
              None if options.duration_s is None else math.ceil(options.duration_s * src.fps)]
    known = [n for n in counts if n is not None]
    return min(known) if known else None


@app.command()
def serve(
    source: Annotated[Optional[str], typer.Option("--source", help="also run one live source for /v1/stream.mjpg, /v1/events and the page: camera index (0), device path, stream URL, or a file played at its own pace, again and again")] = None,
    host: Annotated[str, typer.Option("--host", help="address to listen on; any but a loopback address needs --token")] = SERVE_DEFAULTS.host,
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="port to listen on (0: any free port, told on the ready line)")] = SERVE_DEFAULTS.port,
    token: Annotated[Optional[str], typer.Option("--token", envvar="EMOCAM_TOKEN", show_envvar=True, help="bearer token every /v1 request must carry ('Authorization: Bearer TOKEN'); a browser opens /?token=TOKEN once")] = SERVE_DEFAULTS.token,
    workers: Annotated[int, typer.Option("--workers", min=1, help="processes sharing the port, each with its own model (not with --source)")] = SERVE_DEFAULTS.workers,
    threads: Annotated[int, typer.Option("--threads", min=1, help="analysis threads in each process; their faces share the model's calls")] = SERVE_DEFAULTS.threads,
    queue: Annotated[int, typer.Option("--queue", min=0, help="requests that may wait for a thread; one more gets 503 with Retry-After")] = SERVE_DEFAULTS.queue,
    request_timeout: Annotated[float, typer.Option("--request-timeout", min=0.1, help="seconds a request may take, its upload included (408 for the upload, 504 for the analysis)")] = SERVE_DEFAULTS.request_timeout_s,
    max_upload_mb: Annotated[float, typer.Option("--max-upload-mb", min=0.001, help="largest upload (413 above)")] = SERVE_DEFAULTS.max_upload_mb,
    max_megapixels: Annotated[float, typer.Option("--max-megapixels", min=0.001, help="largest image or video frame, read from its header before decoding (413 above)")] = SERVE_DEFAULTS.max_megapixels,
    max_video_s: Annotated[float, typer.Option("--max-video-s", min=0.001, help="longest video (413 above)")] = SERVE_DEFAULTS.max_video_s,
    model: ModelOpt = DEFAULTS.model,
    backend: BackendOpt = DEFAULTS.backend,
    device: DeviceOpt = DEFAULTS.device,
    batch_frames: BatchFramesOpt = DEFAULTS.batch_frames,
    reading: ReadingOpt = DEFAULTS.reading,
    detector: DetectorOpt = DEFAULTS.detector,
    min_score: MinScoreOpt = DEFAULTS.min_score,
    tau: TauOpt = DEFAULTS.tau,
    hysteresis: HysteresisOpt = DEFAULTS.hysteresis,
) -> None:
    """Serve the HTTP API (POST /v1/analyze, /v1/health, /v1/schema, /v1/openapi.json) and the page at /; with
    --source, also the live video and events. Needs emocam's "serve" extra. SIGTERM lets the requests in flight end."""
    from .serve.server import serve as run_server

    recognizer = Options(model=model, reading=reading, detector=detector, min_score=min_score, backend=backend,
                         device=device, tau=tau, hysteresis=hysteresis, batch_frames=batch_frames)
    run_server(ServeOptions(recognizer, source, host, port, token, workers, threads, queue, request_timeout,
                            max_upload_mb, max_megapixels, max_video_s))


def bench_table(t: Timings, backend: str, rates: dict[int, float]) -> str:
    """Benchmark figures as text: one line per stage, end to end, then the classifier alone at each batch size."""
    ms = t.ms_per_frame()
    lines = [f"{t.frames} frames, {t.faces} faces", f"{'stage':<8} {'ms/frame':>9}"]
    lines += [f"{stage:<8} {ms[stage]:>9.3f}" for stage in STAGES]
    lines.append(f"{'e2e':<8} {1e3 * t.wall_s / max(t.frames, 1):>9.3f}   ({t.fps:.1f} fps; stages overlap in threads)")
    lines += ["", f"classifier alone ({backend})", f"{'batch':<8} {'faces/s':>9} {'ms/face':>9}"]
    lines += [f"{n:<8} {r:>9.1f} {1e3 / r:>9.3f}" for n, r in rates.items()]
    return "\n".join(lines)


def fail(message: str, code: int = EXIT_USER_ERROR) -> int:
    """Tell the user what went wrong in one line; returns the exit code ``code``."""
    print(f"emocam: error: {message}", file=sys.stderr, flush=True)
    return code


def run(argv: list[str] | None = None) -> int:
    """The ``emocam`` command on ``argv`` (default: the process's arguments) in this process; its exit code. Every
    error a user can cause is one line on stderr."""
    # FFmpeg would print its own lines for streams and files it cannot open; we report those ourselves.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    try:
        code = app(args=argv, prog_name="emocam", standalone_mode=False)
    except EndedEarly as e:
        return fail(str(e), EXIT_ENDED_EARLY)
    except USER_ERRORS + (UsageProblem,) as e:
        return fail(str(e))
    except typer.TyperException as e:  # bad or missing options and arguments
        return fail(e.format_message())
    except BrokenPipeError:  # whoever read standard output went away: an ordinary end, every output closed
        silence(1)
        return 0
    except SystemExit as e:
        return left_while_printing(e)
    except KeyboardInterrupt:
        return EXIT_SIGNALLED + signal.SIGINT
    except Stopped as e:
        return EXIT_SIGNALLED + e.signum
    return code if isinstance(code, int) else 0


def main() -> None:
    """Entry point of the ``emocam`` script: ``run`` with native libraries' log lines dropped and stop signals taken
    like Ctrl-C."""
    quiet_native_stderr()
    stop_on_signals()
    sys.exit(run())


if __name__ == "__main__":
    main()
