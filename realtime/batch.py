"""emocam batch: many files (videos and images, named, in folders or by glob) into one CSV and summary each, with an
index that a rerun reads to skip what is finished; in this process, in N worker processes, or as Ray tasks."""

from __future__ import annotations

import csv
import functools
import glob
import hashlib
import io
import json
import os
import socket
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from .contract import ModelError
from .extras import require
from .outputs import SinkError, Staged, writable
from .provenance import VERSION, model_sha256, options_record, provenance
from .recognizer import Options, Recognizer, UsageProblem
from .records import read_csv
from .sinks import CsvSink
from .sources import IMAGE_SUFFIXES, SourceError, open_source
from .summary import Summary

# What a folder is searched for (a file named on the command line is taken whatever its name).
VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".mkv", ".avi", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".ts", ".3gp")
MEDIA_SUFFIXES = VIDEO_SUFFIXES + IMAGE_SUFFIXES

DONE, NO_FACE, ENDED_EARLY, FAILED = "done", "no face", "ended early", "failed"
INDEX = "index.csv"
# face_rows: rows in the CSV (a face in a frame); distinct_faces: face ids (people, as far as tracking tells them
# apart). model_sha256, options and emocam_version: how the row's results were made (see emocam.provenance).
INDEX_COLUMNS = ("input", "status", "frames", "face_rows", "distinct_faces", "seconds", "error", "csv", "summary",
                 "model_sha256", "options", "emocam_version", "key", "worker")


@dataclass(frozen=True)
class Job:
    """One input and everything its outputs depend on; ``key`` changes when any of it does."""

    input: str
    out_dir: str
    name: str
    options: Options
    every_frame: bool
    key: str


def expand(specs: Iterable[str | Path]) -> list[Path]:
    """Absolute paths of the inputs: files as named, folders searched (recursively) for videos and images, globs
    (``*``, ``?``, ``[``, ``**``) matched; in order, each once. A name that matches nothing is kept, to be recorded
    as failed."""
    found: dict[str, Path] = {}
    for spec in map(str, specs):
        if not os.path.lexists(spec) and glob.has_magic(spec):
            matches = sorted(glob.glob(spec, recursive=True))
            if not matches:
                raise UsageProblem(f"no file matches {spec}")
        else:
            matches = [spec]
        for match in map(Path, matches):
            files = sorted(p for p in match.rglob("*") if p.is_file() and p.suffix.lower() in MEDIA_SUFFIXES) \
                if match.is_dir() else [match]
            for f in files:
                found.setdefault(str(f.absolute()), f.absolute())
    return list(found.values())


def output_name(path: Path) -> str:
    """The file name stem of an input's outputs: its own stem and a hash of its full path, so that inputs of the same
    name in different folders never share outputs."""
    return f"{path.stem}-{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"


def options_facts(options: Options, every_frame: bool) -> str:
    """Every option that changes an output's content, as the JSON the index records (the model apart, by its hash)."""
    facts = {k: v for k, v in options_record(options).items() if k not in ("device", "batch_frames")}
    return json.dumps(facts | {"every_frame": every_frame}, sort_keys=True)


def options_key(options: Options, every_frame: bool) -> str:
    """A digest of what decides the outputs' content: the model's bytes and every option that changes an answer."""
    facts = f"{model_sha256(options.model_path)}:{options_facts(options, every_frame)}"
    return hashlib.sha256(facts.encode()).hexdigest()[:16]


def input_key(path: Path, options_digest: str) -> str:
    """``options_digest`` combined with the input file's size and modification time (a changed file is redone)."""
    try:
        st = path.stat()
        stamp = f"{st.st_size}:{st.st_mtime_ns}"
    except OSError:
        stamp = "missing"
    return hashlib.sha256(f"{options_digest}:{stamp}".encode()).hexdigest()[:16]


@functools.lru_cache(maxsize=1)
def recognizer(options: Options) -> Recognizer:
    """The recognizer of this process for ``options``, built on first use: a worker loads the model once, not once
    per input."""
    return Recognizer(**asdict(options))


def process(job: Job) -> dict:
    """Run one input into its CSV and summary; the index row that records it. An input that cannot be read, or that
    fails in any other way, is recorded as failed, so that the batch goes on; a model that cannot be loaded or an
    output that cannot be written stops the batch (every other input would fail the same way)."""
    out_dir = Path(job.out_dir)
    row = dict.fromkeys(INDEX_COLUMNS, "") | {
        "input": job.input, "key": job.key, "frames": 0, "face_rows": 0, "distinct_faces": 0,
        "model_sha256": model_sha256(job.options.model_path), "options": options_facts(job.options, job.every_frame),
        "emocam_version": VERSION, "worker": f"{socket.gethostname()}:{os.getpid()}"}
    # What a killed run left half written for this input.
    for stale in out_dir.glob(f"{glob.escape(job.name)}.*partial*"):
        stale.unlink(missing_ok=True)
    rec = recognizer(job.options)  # built once per process, and not timed
    start = time.perf_counter()
    try:
        csv_path, summary_path = out_dir / f"{job.name}.csv", out_dir / f"{job.name}.summary.json"
        about = provenance(job.input, job.options, rec.backend)
        with open_source(Path(job.input), live=False) as src:
            with CsvSink(csv_path, rec.classes, job.every_frame) as rows, \
                    Summary(rec.classes, summary_path, out=io.StringIO(), about=about) as summary:
                timings = rec.run(src, [rows, summary])
        row.update(frames=timings.frames, face_rows=timings.faces, distinct_faces=summary.distinct_faces,
                   csv=csv_path.name, summary=summary_path.name)
        if src.ended_early is not None:
            row.update(status=ENDED_EARLY, error=str(src.ended_early))
        else:
            row["status"] = DONE if timings.faces else NO_FACE
    except SourceError as e:
        row.update(status=FAILED, error=str(e))
    except SinkError:
        raise
    except Exception as e:  # noqa: BLE001 - one input a library chokes on must not end a batch of thousands
        row.update(status=FAILED, error=f"{type(e).__name__}: {e}".splitlines()[0])
    row["seconds"] = round(time.perf_counter() - start, 3)
    return row


def read_index(path: Path) -> dict[str, dict]:
    """The index's rows by input (the last row of an input wins); a line a killed run left unfinished is ignored."""
    if not path.is_file():
        return {}
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or tuple(header) != INDEX_COLUMNS:
            what = "the index of an earlier emocam" if header and header[:2] == ["input", "status"] else "not an emocam"
            raise UsageProblem(f"{path} is {what} batch index; choose another --out-dir")
        return {r[0]: dict(zip(INDEX_COLUMNS, r)) for r in reader if len(r) == len(INDEX_COLUMNS)}


def finished(row: dict | None, job: Job, out_dir: Path) -> bool:
    """Whether ``row`` records ``job`` as finished with the same input, model and options, its outputs in place."""
    if row is None or row["key"] != job.key or row["status"] not in (DONE, NO_FACE, ENDED_EARLY, FAILED):
        return False
    return row["status"] == FAILED or (out_dir / row["csv"]).is_file()


class Index:
    """The batch's index file: rewritten whole (atomically) at the start, then one row appended and synced per
    finished input, so that it is current while the batch runs and a killed batch loses at most the row in flight."""

    def __init__(self, path: Path, rows: Iterable[dict]) -> None:
        self.path = path
        with Staged(path) as staged:
            staged.fill(lambda p: p.write_text(_csv_text([INDEX_COLUMNS, *([r[c] for c in INDEX_COLUMNS] for r in rows)])))
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND)

    def add(self, row: dict) -> None:
        """Append one row; it is on disk when this returns."""
        os.write(self._fd, _csv_text([[row[c] for c in INDEX_COLUMNS]]).encode())
        os.fsync(self._fd)

    def close(self) -> None:
        os.close(self._fd)


def _csv_text(rows: Iterable[Sequence]) -> str:
    text = io.StringIO()
    csv.writer(text).writerows(rows)
    return text.getvalue()


@dataclass
class Plan:
    """The jobs of a batch: those to run and the rows of those already finished."""

    jobs: list[Job]
    todo: list[Job]
    kept: list[dict]


def plan(inputs: Sequence[Path], out_dir: Path, options: Options, every_frame: bool) -> Plan:
    """Which inputs to run: all but those the index records as finished with the same input, model and options."""
    digest = options_key(options, every_frame)
    jobs = [Job(str(p), str(out_dir), output_name(p), options, every_frame, input_key(p, digest)) for p in inputs]
    rows = read_index(out_dir / INDEX)
    refuse_other_options(rows.values(), out_dir, options, every_frame)
    todo = [j for j in jobs if not finished(rows.get(j.input), j, out_dir)]
    redo = {j.input for j in todo}
    return Plan(jobs, todo, [r for i, r in rows.items() if i not in redo])


def refuse_other_options(rows: Iterable[dict], out_dir: Path, options: Options, every_frame: bool) -> None:
    """UsageProblem if ``out_dir`` holds results made with another model or other options: one folder holds one set of
    options, so that its files can be compared with each other and a rerun never mixes two."""
    model, facts = model_sha256(options.model_path), json.loads(options_facts(options, every_frame))
    for row in rows:
        if row["model_sha256"] != model:
            raise UsageProblem(f"{out_dir} holds results made with another model (sha256 {row['model_sha256'][:12]}, "
                               f"this one {model[:12]}); choose another --out-dir for these")
        before = json.loads(row["options"])
        changed = [f"{k} {before.get(k)} -> {v}" for k, v in facts.items() if before.get(k) != v]
        if changed:
            raise UsageProblem(f"{out_dir} holds results made with other options ({', '.join(changed)}); choose "
                               f"another --out-dir for these, or run again with the options it was made with")


def run_local(jobs: Sequence[Job], workers: int) -> Iterator[dict]:
    """Each job's row as it finishes: in this process (one worker) or in ``workers`` processes."""
    if workers <= 1:
        yield from map(process, jobs)
        return
    # Spawned, not forked: the parent's decode and detect threads must not be copied mid-flight.
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(process, job) for job in jobs]
        try:
            for done in as_completed(futures):
                yield done.result()
        finally:
            for f in futures:
                f.cancel()


def run_ray(jobs: Sequence[Job], address: str) -> Iterator[dict]:
    """Each job's row as it finishes, one Ray task per input on the cluster at ``address`` ("auto": the one this
    machine belongs to; see ``ray_head``). Inputs and outputs are absolute paths, which every node must see (shared
    storage)."""
    ray = require("ray")
    try:
        ray.init(address=address, logging_level="ERROR", log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise UsageProblem(f"cannot join the Ray cluster at {address} ({str(e).splitlines()[0][:120]})") from None
    try:
        task = ray.remote(num_cpus=1)(process)
        pending = [task.remote(job) for job in jobs]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            try:
                yield ray.get(done[0])
            except ray.exceptions.RayTaskError as e:  # the task's own exception, told as it would be locally
                raise e.cause from None
    finally:
        ray.shutdown()


def ray_head(address: str, timeout_s: float = 5.0) -> str:
    """The head's host:port ("auto": of the cluster this machine last started or joined); UsageProblem where none
    answers. Checked first because ray.init waits on an address that does not answer, for many minutes."""
    if address == "auto":
        from ray._private.services import canonicalize_bootstrap_address

        found = canonicalize_bootstrap_address("auto")
        if not found:
            raise UsageProblem("no Ray cluster was started on this machine; run 'ray start --head' or give --ray HOST:PORT")
        address = found
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except (OSError, ValueError):
        raise UsageProblem(f"no Ray cluster answers at {address}; start one with 'ray start --head'") from None
    return address


def combine(rows: Iterable[dict], out_dir: Path, parquet: Path) -> int:
    """Every output CSV of ``rows`` in one Parquet file, with the input's path as a first column; the rows written."""
    require("pandas")
    pq = require("pyarrow.parquet")
    pa = require("pyarrow")
    writer, total = None, 0
    with Staged(parquet) as staged:
        try:
            for row in rows:
                if not row["csv"]:
                    continue
                table = read_csv(out_dir / row["csv"])
                table.insert(0, "input", row["input"])
                part = pa.Table.from_pandas(table, preserve_index=False)
                if writer is None:
                    writer = pq.ParquetWriter(staged.path, part.schema)
                writer.write_table(part.cast(writer.schema))
                total += len(table)
        finally:
            if writer is not None:
                writer.close()
        if writer is None:
            raise UsageProblem(f"no input gave a CSV, so there is nothing to put in {parquet}")
        staged.commit()
    return total


def run_batch(inputs: Sequence[str | Path], out_dir: str | Path, options: Options = Options(),
              every_frame: bool = False, workers: int = 1, ray: str | None = None, parquet: str | Path | None = None,
              progress: bool = True, on_row: Callable[[dict], None] | None = None) -> dict[str, int]:
    """Run a batch (see the module's docstring); returns how many inputs this run ended in each status, "skipped" (those
    a previous run finished) and "failed before" (those of them it recorded as failed or ended early)."""
    if workers < 1:
        raise UsageProblem(f"--workers must be at least 1, got {workers}")
    if ray is not None and workers != 1:
        raise UsageProblem("give --workers or --ray, not both: on Ray every input is one task")
    out_dir = Path(out_dir).absolute()
    if not out_dir.is_dir():
        writable(out_dir)  # a missing parent is a one-line error
        out_dir.mkdir()
    if parquet is not None:
        parquet = writable(Path(parquet).absolute())
        require("pyarrow")
    if ray is not None:
        require("ray")
        ray = ray_head(ray)
    if options.model is not None:
        options = Options(**(asdict(options) | {"model": Path(options.model).absolute()}))
    if not options.model_path.is_file():
        raise ModelError(f"model file not found: {options.model_path}")
    if ray is None and workers == 1:
        recognizer(options)  # loaded here, where it will run, so that a model or backend problem is told first
    todo = plan(expand(inputs), out_dir, options, every_frame)
    ours = {j.input for j in todo.jobs}
    counts = {"skipped": len(todo.jobs) - len(todo.todo),
              "failed before": sum(r["input"] in ours and r["status"] in (FAILED, ENDED_EARLY) for r in todo.kept)}
    index = Index(out_dir / INDEX, todo.kept)
    from tqdm import tqdm

    bar = tqdm(total=len(todo.todo), unit="file", desc="emocam batch", disable=not progress, dynamic_ncols=True)
    try:
        rows = run_ray(todo.todo, ray) if ray is not None and todo.todo else run_local(todo.todo, workers)
        for row in rows:
            index.add(row)
            counts[row["status"]] = counts.get(row["status"], 0) + 1
            bar.update(1)
            bar.set_postfix({k: v for k, v in counts.items() if k not in ("skipped", "failed before")}, refresh=False)
            if on_row is not None:
                on_row(row)
    finally:
        bar.close()
        index.close()
    if parquet is not None:
        combine((r for r in read_index(out_dir / INDEX).values() if r["input"] in ours), out_dir, parquet)
    return counts
