"""emocam batch: many files (videos and images, named, in folders or by glob) into one CSV and summary each, with an
index that a rerun reads to skip what is finished; in this process, in N worker processes, or as Ray tasks."""

from __future__ import annotations

import csv
import fcntl
import functools
import glob
import hashlib
import io
import itertools
import json
import os
import socket
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from .contract import ModelError
from .extras import require
from .outputs import SinkError, Staged, append_whole, can_write, check_paths, file_identity, writable
from .provenance import VERSION, model_sha256, options_record, provenance
from .recognizer import Options, Recognizer, UsageProblem
from .records import read_csv, schema
from .sinks import CsvSink
from .sources import IMAGE_SUFFIXES, VIDEO_SUFFIXES, SourceError, open_source
from .summary import Summary
from .workers import run_in_workers, usable_workers

# What a folder is searched for (a file named on the command line is taken whatever its name): what FFmpeg reads as
# a video, animated GIFs included (sources.VIDEO_SUFFIXES), and the still images.
MEDIA_SUFFIXES = VIDEO_SUFFIXES + IMAGE_SUFFIXES
# Bytes of an input's own name kept in its outputs' names (then a hash of its full path): a name of up to 255 bytes,
# the most a file system takes, must leave room for the hash, ".summary.json" and a partial file's ".partial2".
NAME_BYTES = 100

DONE, NO_FACE, ENDED_EARLY, FAILED = "done", "no face", "ended early", "failed"
INDEX = "index.csv"
# face_rows: rows in the CSV (a face in a frame); distinct_faces: face ids (people, as far as tracking tells them
# apart). model_sha256, options and emocam_version: how the row's results were made (see emocam.provenance).
INDEX_COLUMNS = ("input", "status", "frames", "face_rows", "distinct_faces", "seconds", "error", "csv", "summary",
                 "model_sha256", "options", "emocam_version", "key", "worker")


@dataclass(frozen=True)
class Job:
    """One input and everything its outputs depend on; ``key`` changes when any of it does. ``input`` is its path as
    the file system has it, ``shown`` as the index and messages give it (``printable``)."""

    input: str
    out_dir: str
    name: str
    options: Options
    every_frame: bool
    key: str

    @property
    def shown(self) -> str:
        """The input's path as the index and messages give it."""
        return printable(self.input)


def printable(text: str) -> str:
    """``text`` (a path) as valid UTF-8: bytes of a file name that are not UTF-8 (which Python holds as surrogates)
    written as \\xNN, so that the index and every message stay readable text."""
    return os.fsencode(text).decode("utf-8", "backslashreplace")


def expand(specs: Iterable[str | Path]) -> tuple[list[Path], dict[Path, str]]:
    """Absolute paths of the inputs: files as named, folders searched (recursively, not into linked folders) for
    videos and images, globs (``*``, ``?``, ``[``, ``**``) matched; in order, each file once however many ways it is
    reached (links, ``..``). A name that matches nothing is kept, to be recorded as failed. Also the folders that could
    not be searched, with why."""
    found: dict[tuple, Path] = {}
    unreadable: dict[Path, str] = {}
    for spec in map(str, specs):
        if not os.path.lexists(spec) and glob.has_magic(spec):
            matches = sorted(glob.glob(spec, recursive=True))
            if not matches:
                raise UsageProblem(f"no file matches {printable(spec)}")
        else:
            matches = [spec]
        for match in map(Path, matches):
            for f in search(match, unreadable) if match.is_dir() else [match]:
                found.setdefault(file_identity(f), f.absolute())
    return list(found.values()), unreadable


def search(folder: Path, unreadable: dict[Path, str]) -> list[Path]:
    """The videos and images under ``folder``, sorted; a folder that cannot be listed goes into ``unreadable``."""
    def failed(e: OSError) -> None:
        unreadable[Path(e.filename).absolute()] = f"cannot search this folder: {e.strerror}; its files are not in the batch"

    files = []
    for parent, _, names in os.walk(folder, onerror=failed):
        files += [Path(parent, n) for n in names if Path(n).suffix.lower() in MEDIA_SUFFIXES]
    return sorted(f for f in files if f.is_file())


def output_name(path: Path) -> str:
    """The file name stem of an input's outputs: its own stem (as UTF-8, cut to NAME_BYTES) and a hash of its full
    path, so that inputs of the same name in different folders, or whose names differ only past the cut, never share
    outputs."""
    stem = os.fsencode(path.stem).decode("utf-8", "replace").replace("\ufffd", "_")
    stem = stem.encode()[:NAME_BYTES].decode("utf-8", "ignore")  # whole characters only
    return f"{stem}-{hashlib.sha1(os.fsencode(str(path))).hexdigest()[:8]}"


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
    return Recognizer(**vars(options))


def process(job: Job) -> dict:
    """Run one input into its CSV and summary; the index row that records it. An input that cannot be read, or that
    fails in any other way, is recorded as failed, so that the batch goes on; a model that cannot be loaded or an
    output that cannot be written stops the batch (every other input would fail the same way)."""
    out_dir = Path(job.out_dir)
    row = new_row(job, os.getpid())
    # What a killed run left half written for this input.
    for stale in out_dir.glob(f"{glob.escape(job.name)}.*partial*"):
        stale.unlink(missing_ok=True)
    rec = recognizer(job.options)  # built once per process, and not timed
    start = time.perf_counter()
    try:
        csv_path, summary_path = out_dir / f"{job.name}.csv", out_dir / f"{job.name}.summary.json"
        about = provenance(job.shown, job.options, rec.backend)
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


def new_row(job: Job, pid: int) -> dict:
    """``job``'s index row before it runs, worked on by process ``pid`` of this machine: what it will be made with
    (model, options, version) already recorded."""
    return dict.fromkeys(INDEX_COLUMNS, "") | {
        "input": job.shown, "key": job.key, "frames": 0, "face_rows": 0, "distinct_faces": 0,
        "model_sha256": model_sha256(job.options.model_path), "options": options_facts(job.options, job.every_frame),
        "emocam_version": VERSION, "worker": f"{socket.gethostname()}:{pid}"}


def worker_died(job: Job, pid: int, how: str) -> dict:
    """The row of a job whose worker process died on it (a crash, the kernel's OOM killer): failed, and the batch
    goes on."""
    return new_row(job, pid) | {"status": FAILED, "error": f"the worker process died ({how}) on this input"}


def read_index(path: Path) -> dict[str, dict]:
    """The index's rows by input (the last row of an input wins); a line a killed run left unfinished is ignored."""
    if not path.is_file():
        return {}
    name = printable(str(path))
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None or tuple(header) != INDEX_COLUMNS:
                earlier = header is not None and header[:2] == ["input", "status"]
                what = "the index of an earlier emocam batch" if earlier else "not an emocam batch index"
                raise UsageProblem(f"{name} is {what}; choose another --out-dir")
            return {r[0]: dict(zip(INDEX_COLUMNS, r)) for r in reader if len(r) == len(INDEX_COLUMNS)}
    except UnicodeDecodeError:
        raise UsageProblem(f"{name} is not an emocam batch index (it is not UTF-8 text); choose another "
                           f"--out-dir") from None
    except OSError as e:
        raise SinkError(f"cannot read {name}: {e.strerror}") from None


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
        """Append one row, whole; it is on disk when this returns. A full disk is a SinkError, the index ending with
        the row before."""
        line = _csv_text([[printable(str(row[c])) for c in INDEX_COLUMNS]]).encode()
        append_whole(self._fd, line, self.path, f"rows before {row['input']}")
        try:
            os.fsync(self._fd)
        except OSError as e:
            raise SinkError(f"cannot write {self.path}: {e.strerror}") from None

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


def jobs_for(inputs: Sequence[Path], out_dir: Path, options: Options, every_frame: bool) -> list[Job]:
    """A job for each input, with its outputs' name and its key."""
    digest = options_key(options, every_frame)
    return [Job(str(p), str(out_dir), output_name(p), options, every_frame, input_key(p, digest)) for p in inputs]


def plan(jobs: list[Job], out_dir: Path, options: Options, every_frame: bool) -> Plan:
    """Which jobs to run: all but those the index records as finished with the same input, model and options; a
    UsageProblem where the index records other ones (``refuse_other_options``). Rows of folders that could not be
    searched (no key) are not kept: each run searches them again."""
    rows = read_index(out_dir / INDEX)
    refuse_other_options((r for r in rows.values() if r["key"]), out_dir, options, every_frame)
    todo = [j for j in jobs if not finished(rows.get(j.shown), j, out_dir)]
    redo = {j.shown for j in todo}
    return Plan(jobs, todo, [r for i, r in rows.items() if i not in redo and r["key"]])


def refuse_other_options(rows: Iterable[dict], out_dir: Path, options: Options, every_frame: bool) -> None:
    """UsageProblem if ``out_dir`` holds results made with another model or other options: one folder holds one set of
    options, so that its files can be compared with each other and a rerun never mixes two."""
    model, facts = model_sha256(options.model_path), json.loads(options_facts(options, every_frame))
    folder = printable(str(out_dir))
    for row in rows:
        if row["model_sha256"] != model:
            raise UsageProblem(f"{folder} holds results made with another model (sha256 {row['model_sha256'][:12]}, "
                               f"this one {model[:12]}); choose another --out-dir for these")
        before = json.loads(row["options"])
        changed = [f"{k} {before.get(k)} -> {v}" for k, v in facts.items() if before.get(k) != v]
        if changed:
            raise UsageProblem(f"{folder} holds results made with other options ({', '.join(changed)}); choose "
                               f"another --out-dir for these, or run again with the options it was made with")


def run_local(jobs: Sequence[Job], workers: int) -> Iterator[dict]:
    """Each job's row as it finishes: in this process (one worker) or in ``workers`` processes, each dying with this
    one; a worker that dies on an input records it as failed."""
    if workers <= 1:
        yield from map(process, jobs)
        return
    yield from run_in_workers(process, jobs, workers, worker_died)


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
    """Every output CSV of ``rows`` in one Parquet file, with the input's path as a first column; the rows written.
    Its schema is the record schema's, declared, not guessed from the first CSV (which may hold no row)."""
    require("pandas")
    pq = require("pyarrow.parquet")
    pa = require("pyarrow")
    kinds = {int: pa.int64(), float: pa.float64(), str: pa.string()}
    writer, total = None, 0
    with Staged(parquet) as staged:
        try:
            for row in rows:
                if not row["csv"]:
                    continue
                table = read_csv(out_dir / row["csv"])
                table.insert(0, "input", row["input"])
                if writer is None:
                    classes = [c[2:] for c in table.columns if c.startswith("p_")]
                    declared = pa.schema([("input", pa.string())] + [(c.name, kinds[c.kind]) for c in schema(classes)])
                    writer = pq.ParquetWriter(staged.path, declared)
                writer.write_table(pa.Table.from_pandas(table, schema=writer.schema, preserve_index=False))
                total += len(table)
        finally:
            if writer is not None:
                writer.close()
        if writer is None:
            raise UsageProblem(f"no input gave a CSV, so there is nothing to put in {parquet}")
        staged.commit()
    return total


@contextmanager
def locked(out_dir: Path) -> Iterator[None]:
    """Hold ``out_dir`` for this batch: another batch on it is refused at once rather than let in to race this one for
    the index and the outputs. The lock goes with the process, however it ends (kill -9 included)."""
    fd = os.open(out_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise UsageProblem(f"another emocam batch is writing to {printable(str(out_dir))}; wait for it to end or "
                           f"choose another --out-dir") from None
    try:
        yield
    finally:
        os.close(fd)


def make_out_dir(out_dir: Path) -> None:
    """``out_dir``, made if it is not there; SinkError if it cannot be (its parent is missing, it is a file, the
    file system is read-only)."""
    if out_dir.is_dir():
        return
    if out_dir.exists():
        raise SinkError(f"--out-dir {out_dir} is not a folder; give a folder (it is made if it is not there)")
    writable(out_dir)  # a missing parent is a one-line error
    try:
        out_dir.mkdir()
    except OSError as e:
        raise SinkError(f"cannot make --out-dir {out_dir}: {e.strerror}") from None


def check_outputs(jobs: Sequence[Job], out_dir: Path, model: Path, parquet: Path | None) -> None:
    """The live command's checks for everything a batch writes (the index, each input's CSV and summary, --parquet),
    before any input runs: SinkError if one cannot be written, or is an input, the model or another output."""
    inputs = [("--model", model)] + [("INPUT", Path(j.input)) for j in jobs]
    outputs = [("--parquet", parquet), ("the index", out_dir / INDEX)]
    for j in jobs:
        outputs += [(f"CSV of {j.shown}", out_dir / f"{j.name}.csv"),
                    (f"summary of {j.shown}", out_dir / f"{j.name}.summary.json")]
    check_paths(inputs, outputs)
    if parquet is not None:
        can_write(parquet)


def run_batch(inputs: Sequence[str | Path], out_dir: str | Path, options: Options = Options(),
              every_frame: bool = False, workers: int = 1, ray: str | None = None, parquet: str | Path | None = None,
              progress: bool = True, on_row: Callable[[dict], None] | None = None) -> dict[str, int]:
    """Run a batch (see the module's docstring); returns how many inputs this run ended in each status, "skipped" (those
    a previous run finished) and, where there are any, "failed before" (those of them it recorded as failed or ended
    early). Every output is checked before any input runs, and one batch at a time writes into an ``out_dir``."""
    if workers < 1:
        raise UsageProblem(f"--workers must be at least 1, got {workers}")
    if ray is not None and workers != 1:
        raise UsageProblem("give --workers or --ray, not both: on Ray every input is one task")
    out_dir = Path(out_dir).absolute()
    make_out_dir(out_dir)
    if parquet is not None:
        parquet = Path(parquet).absolute()
        require("pyarrow")
    if ray is not None:
        require("ray")
        ray = ray_head(ray)
    if options.model is not None:
        options = replace(options, model=Path(options.model).absolute())
    if not options.model_path.is_file():
        raise ModelError(f"model file not found: {options.model_path}")
    with locked(out_dir):
        found, unreadable = expand(inputs)
        jobs = jobs_for(found, out_dir, options, every_frame)
        check_outputs(jobs, out_dir, options.model_path, parquet)
        if ray is None and workers == 1:
            recognizer(options)  # loaded here, where it will run, so that a model or backend problem is told first
        todo = plan(jobs, out_dir, options, every_frame)
        if ray is None:
            workers, capped = usable_workers(workers, len(todo.todo))
            if capped:
                print(f"emocam: {capped}", file=sys.stderr, flush=True)
        ours = {j.shown for j in todo.jobs}
        counts = {"skipped": len(todo.jobs) - len(todo.todo)}
        failed_before = sum(r["input"] in ours and r["status"] in (FAILED, ENDED_EARLY) for r in todo.kept)
        if failed_before:
            counts["failed before"] = failed_before
        index = Index(out_dir / INDEX, todo.kept)
        from tqdm import tqdm

        bar = tqdm(total=len(todo.todo), unit="file", desc="emocam batch", disable=not progress, dynamic_ncols=True)
        try:
            searched = ({c: "" for c in INDEX_COLUMNS} | {"input": printable(str(folder)), "status": FAILED,
                                                           "error": why} for folder, why in unreadable.items())
            rows = run_ray(todo.todo, ray) if ray is not None and todo.todo else run_local(todo.todo, workers)
            for row in itertools.chain(searched, rows):
                index.add(row)
                counts[row["status"]] = counts.get(row["status"], 0) + 1
                bar.update(bool(row["key"]))  # a folder that could not be searched is none of the files counted
                bar.set_postfix({k: v for k, v in counts.items() if k not in ("skipped", "failed before")},
                                refresh=False)
                if on_row is not None:
                    on_row(row)
        finally:
            bar.close()
            index.close()
        if parquet is not None:
            combine((r for r in read_index(out_dir / INDEX).values() if r["input"] in ours), out_dir, parquet)
    return counts
