"""emocam batch against what users throw at it: outputs that would clobber inputs, crafted images, odd and long
names, a faceless first input, two batches on one folder, kill -9, a full disk, bad folders and indexes, discovery,
load (issue 19: 1-7, 11, 12, 14, 15)."""

from __future__ import annotations

import csv
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import emocam
from crafted import png
from emocam.batch import INDEX, INDEX_COLUMNS
from emocam.cli import EXIT_SOME_FAILED
from conftest import digest, tmpfs

# The long-batch memory script's finder of a batch's worker processes, shared with the tests below.
_spec = importlib.util.spec_from_file_location("batch_memory", Path(__file__).parents[1] / "scripts" / "batch_memory.py")
batch_memory = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(batch_memory)


def batch(*args: object, timeout: float = 300, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """``emocam batch ...`` in a fresh interpreter (after ``prefix``, a command that runs it)."""
    return subprocess.run([*prefix, sys.executable, "-m", "emocam.cli", "batch", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


def run(tiny_model: Path, *inputs: object, out: Path, **options) -> dict[str, int]:
    """``emocam.run_batch`` in this process (what ``emocam batch`` runs) with the tiny model; the counts."""
    return emocam.run_batch(list(inputs), out, emocam.Options(model=tiny_model, backend="onnxruntime"),
                            progress=False, **options)


def refused(call, message: str) -> None:
    """``call()`` raises one of emocam.USER_ERRORS (which the command prints as one line, exit code 2) with
    ``message`` in it."""
    with pytest.raises(emocam.USER_ERRORS) as caught:
        call()
    assert message in str(caught.value) and "\n" not in str(caught.value), str(caught.value)


def index_rows(out: Path) -> list[dict]:
    """The index's rows, checking that the file is UTF-8 and that every row is whole."""
    text = (out / INDEX).read_bytes().decode("utf-8")
    rows = list(csv.reader(text.splitlines()))
    assert rows[0] == list(INDEX_COLUMNS) and all(len(r) == len(INDEX_COLUMNS) for r in rows), text[-500:]
    return [dict(zip(INDEX_COLUMNS, r)) for r in rows[1:]]


@pytest.fixture
def photo(shared: Path, tmp_path: Path) -> Path:
    """The user's own photo with one face, in a folder of its own."""
    folder = tmp_path / "in"
    folder.mkdir()
    return Path(shutil.copy(shared / "images" / "single_face.jpg", folder / "face.jpg"))


def model_args(tiny_model: Path) -> tuple:
    return "--model", tiny_model, "--backend", "onnxruntime"


def copies(video: Path, folder: Path, n: int) -> Path:
    """``folder`` holding ``n`` copies of ``video`` (copies, not links: a batch takes one file reached twice once)."""
    folder.mkdir()
    for i in range(n):
        shutil.copy(video, folder / f"clip{i}.mp4")
    return folder


# --- 1: every path batch writes is checked first --------------------------------------------------------------------

@pytest.mark.parametrize("target", ["input", "model", "index", "output", "folder"])
def test_parquet_that_would_clobber_something_is_refused_before_any_work(photo: Path, tiny_model: Path,
                                                                         tmp_path: Path, target: str) -> None:
    model = Path(shutil.copy(tiny_model, tmp_path / "model.onnx"))
    out = tmp_path / "out"
    run(model, photo, out=out)  # a batch already ran here: its outputs are there
    rows = index_rows(out)
    given = {"input": photo, "model": model, "index": out / INDEX, "output": out / rows[0]["csv"],
             "folder": out}[target]
    before = {p: digest(p) for p in (photo, model, out / INDEX, out / rows[0]["csv"])}
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    refused(lambda: run(model, photo, tmp_path / "other.jpg", out=out, parquet=given), "--parquet")
    assert {p: digest(p) for p in before} == before
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamps  # not even the index was rewritten
    assert "other.jpg" not in (out / INDEX).read_text()  # checked before any input ran


def test_an_input_that_is_an_output_of_the_batch_is_refused(photo: Path, tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    index = out / INDEX
    out.mkdir()
    index.write_text("my own notes, not an index\n")
    refused(lambda: run(tiny_model, index, photo, out=out), "is the same file as")
    assert index.read_text() == "my own notes, not an index\n"


# --- 2: crafted images are recorded as failed and the batch goes on --------------------------------------------------

@pytest.mark.parametrize("workers", [1, 2])
def test_crafted_images_are_failed_rows_and_the_batch_goes_on(photo: Path, tiny_model: Path, tmp_path: Path,
                                                              workers: int) -> None:
    png(photo.parent / "thin.png", 1, 100_000)
    png(photo.parent / "huge.png", 12_000, 12_000)
    out = tmp_path / "out"
    # In a process of its own: without the checks these images abort the process that decodes them.
    result = batch(photo.parent, "--out-dir", out, *model_args(tiny_model), "--workers", workers)
    assert result.returncode == EXIT_SOME_FAILED and "Traceback" not in result.stderr, result.stderr
    assert "this run: 1 done, 2 failed" in result.stdout
    rows = {Path(r["input"]).name: r for r in index_rows(out)}
    assert rows["face.jpg"]["status"] == "done"
    assert rows["thin.png"]["status"] == "failed" and "1x100000" in rows["thin.png"]["error"]
    assert rows["huge.png"]["status"] == "failed" and "12000x12000" in rows["huge.png"]["error"]
    # A rerun does not retry them, and counts them.
    assert run(tiny_model, photo.parent, out=out, workers=workers) == {"skipped": 3, "failed before": 2}


def test_a_worker_killed_on_an_input_is_a_failed_row_and_the_batch_goes_on(shared: Path, tiny_model: Path,
                                                                          tmp_path: Path) -> None:
    # Clips of several seconds each, so that both workers are inside an input when one is killed.
    folder = copies(shared / "videos" / "WolfgangLanger_Pexels.mp4", tmp_path / "clips", 4)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "emocam.cli", "batch", folder, "--out-dir", out,
                             *model_args(tiny_model), "--workers", "2"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    victim = wait_for_workers(proc.pid, 2)[0]
    deadline = time.monotonic() + 120
    # Each input being written has its partial files: wait until both workers are inside one, then kill one of them
    # (as the kernel's OOM killer would pick it).
    while len({p.name.split(".")[0] for p in out.glob("*.partial*")}) < 2:
        assert time.monotonic() < deadline and proc.poll() is None, "the workers did not start their inputs"
        time.sleep(0.05)
    os.kill(victim, signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == EXIT_SOME_FAILED and "Traceback" not in stderr, stderr
    rows = index_rows(out)
    assert len(rows) == 4 and sorted(r["input"] for r in rows) == sorted(str(p) for p in folder.iterdir())
    died = [r for r in rows if r["status"] == "failed"]
    assert len(died) == 1 and "worker process died" in died[0]["error"] and "SIGKILL" in died[0]["error"]
    assert [r["status"] for r in rows].count("done") == 3


def wait_for_workers(pid: int, n: int, timeout_s: float = 120.0) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while len(found := batch_memory.workers(pid)) < n:
        assert time.monotonic() < deadline, "the workers did not start"
        time.sleep(0.1)
    return found


# --- 3, 4: names that are not UTF-8, and names too long to derive outputs from --------------------------------------

def test_names_that_are_not_utf8_are_processed_and_rerun(photo: Path, clip: Path, tiny_model: Path,
                                                         tmp_path: Path) -> None:
    folder = os.fsencode(photo.parent)
    shutil.copy(photo, folder + b"/caf\xe9 \xff.jpg")  # Latin-1 bytes, as an old archive holds them
    shutil.copy(clip, folder + b"/d\xe9j\xe0 vu.mp4")  # OpenCV, given such a name, kills the process
    out = tmp_path / "out"
    assert run(tiny_model, photo.parent, out=out) == {"skipped": 0, "done": 3}
    rows = index_rows(out)  # valid UTF-8
    assert sum(int(r["frames"]) for r in rows) == 1 + 1 + 72
    for name in os.listdir(os.fsencode(out)):
        name.decode("utf-8")  # every output's name is valid UTF-8 too
    assert sum("\\xe9" in r["input"] for r in rows) == 2  # the undecodable bytes are shown, escaped
    assert run(tiny_model, photo.parent, out=out, parquet=tmp_path / "all.parquet") == {"skipped": 3}
    import pandas as pd

    assert pd.read_parquet(tmp_path / "all.parquet")["input"].nunique() == 3


def test_the_live_command_reads_and_writes_names_that_are_not_utf8(clip: Path, tiny_model: Path,
                                                                   tmp_path: Path) -> None:
    video = os.fsencode(tmp_path) + b"/d\xe9j\xe0 vu.mp4"
    shutil.copy(clip, video)
    annotated = os.fsencode(tmp_path) + b"/annot\xe9.mp4"
    result = subprocess.run([sys.executable, "-m", "emocam.cli", "--video", video, "--out", annotated,
                             *model_args(tiny_model), "--no-display"], capture_output=True, timeout=300)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    import cv2

    os.rename(annotated, tmp_path / "annotated.mp4")
    assert cv2.VideoCapture(str(tmp_path / "annotated.mp4")).get(cv2.CAP_PROP_FRAME_COUNT) == 72


def test_long_names_give_short_distinct_outputs(photo: Path, tiny_model: Path, tmp_path: Path) -> None:
    stem = "é" * 100 + "x" * 40  # 240 bytes in UTF-8: the longest a file name can be, with .jpg
    names = [f"{stem}{tail}.jpg" for tail in ("a" * 11, "b" * 11)]
    for name in names:
        shutil.copy(photo, photo.parent / name)
    out = tmp_path / "out"
    assert run(tiny_model, photo.parent, out=out) == {"skipped": 0, "done": 3}
    rows = index_rows(out)
    outputs = [r["csv"] for r in rows] + [r["summary"] for r in rows]
    assert len(set(outputs)) == 6 and all((out / name).is_file() for name in outputs)
    assert max(len(name.encode()) for name in outputs) <= 200


# --- 5: Parquet whatever comes first ---------------------------------------------------------------------------------

@pytest.mark.parametrize("every_frame", [False, True])
def test_parquet_with_a_faceless_first_input(shared: Path, photo: Path, tiny_model: Path, tmp_path: Path,
                                             every_frame: bool) -> None:
    faceless = shutil.copy(shared / "videos" / "no_face.mp4", photo.parent / "a_first.mp4")
    run(tiny_model, faceless, photo, out=tmp_path / "out", every_frame=every_frame, parquet=tmp_path / "all.parquet")
    import pandas as pd
    import pyarrow.parquet as pq

    assert len(pd.read_parquet(tmp_path / "all.parquet")) == 1 + (95 if every_frame else 0)
    types = {f.name: str(f.type) for f in pq.read_schema(tmp_path / "all.parquet")}
    assert types["input"] == types["label"] == "string" and types["face_id"] == "int64"  # the schema's, declared
    assert types["p_happy"] == types["timestamp_s"] == "double"


# --- 6: two batches on one folder ----------------------------------------------------------------------------------

def test_a_second_batch_on_a_busy_folder_is_refused_and_the_first_ends_whole(shared: Path, tiny_model: Path,
                                                                            tmp_path: Path) -> None:
    # Long enough to be running still when the second batch starts.
    folder = copies(shared / "videos" / "WolfgangLanger_Pexels.mp4", tmp_path / "clips", 2)
    out = tmp_path / "out"
    first = subprocess.Popen([sys.executable, "-m", "emocam.cli", "batch", folder, "--out-dir", out,
                              *model_args(tiny_model)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out / INDEX).exists():
        assert time.monotonic() < deadline and first.poll() is None, "the first batch did not start"
        time.sleep(0.05)
    refused(lambda: run(tiny_model, folder, out=out), f"another emocam batch is writing to {out}")
    assert first.poll() is None, "the first batch ended before the second was refused: no race was tried"
    stdout, stderr = first.communicate(timeout=300)
    assert first.returncode == 0 and "2 inputs: 0 already finished; this run: 2 done" in stdout, stderr
    assert len(index_rows(out)) == 2 and not [p for p in out.iterdir() if "partial" in p.name]
    assert run(tiny_model, folder, out=out) == {"skipped": 2}  # free again


# --- 7: workers die with their parent --------------------------------------------------------------------------------

def test_kill_9_of_a_batch_takes_its_workers_with_it(shared: Path, tiny_model: Path, tmp_path: Path) -> None:
    folder = copies(shared / "videos" / "WolfgangLanger_Pexels.mp4", tmp_path / "clips", 4)
    proc = subprocess.Popen([sys.executable, "-m", "emocam.cli", "batch", folder, "--out-dir", tmp_path / "out",
                             *model_args(tiny_model), "--workers", "2"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    workers = wait_for_workers(proc.pid, 2)
    proc.kill()
    proc.wait(timeout=30)
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{w}").exists() and b"spawn_main" in Path(f"/proc/{w}/cmdline").read_bytes()
              for w in workers):
        assert time.monotonic() < deadline, "the workers outlived their batch"
        time.sleep(0.1)


# --- 11: a full disk ---------------------------------------------------------------------------------------------------

def test_a_full_disk_keeps_the_index_whole_and_fails_the_batch(tiny_model: Path, tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    for i in range(40):  # each a failed row in the index, and nothing else written
        (folder / f"notes{i:02d}.mp4").write_text("not a video\n")
    with tmpfs(tmp_path / "small", size="8k", files={"filler": bytes(4096)}) as small:
        refused(lambda: run(tiny_model, folder, out=small / "out"), "No space left on device")
        rows = index_rows(small / "out")
        assert 5 < len(rows) < 40 and all(r["status"] == "failed" for r in rows)


# --- 12: bad folders and indexes are one line -------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["out_dir_file", "out_dir_read_only", "index_not_utf8", "index_folder",
                                  "parquet_read_only", "out_dir_link_to_file"])
def test_bad_output_folders_and_indexes_are_one_line(photo: Path, tiny_model: Path, tmp_path: Path,
                                                     case: str) -> None:
    with tmpfs(tmp_path / "ro", read_only=True, files={"notes.txt": b"mine"}) as ro:
        out = tmp_path / "out"
        expected = {"out_dir_file": "not a folder", "out_dir_read_only": "Read-only file system",
                    "index_not_utf8": "not an emocam batch index", "index_folder": "it is a folder",
                    "parquet_read_only": "Read-only file system", "out_dir_link_to_file": "not a folder"}[case]
        extra: dict = {}
        if case == "out_dir_file":
            out.write_text("mine")
        elif case == "out_dir_read_only":
            out = ro / "out"
        elif case == "index_not_utf8":
            out.mkdir()
            (out / INDEX).write_bytes(",".join(INDEX_COLUMNS).encode() + b"\n\xff\xfe" + b"," * 9 + b"\n")
        elif case == "index_folder":
            (out / INDEX).mkdir(parents=True)
        elif case == "parquet_read_only":
            extra = {"parquet": ro / "all.parquet"}
        else:
            out.symlink_to(ro / "notes.txt")
        refused(lambda: run(tiny_model, photo, out=out, **extra), expected)
        assert (ro / "notes.txt").read_bytes() == b"mine"


# --- 14: discovery -------------------------------------------------------------------------------------------------------

def test_one_file_through_many_spellings_is_one_input(photo: Path, tiny_model: Path, tmp_path: Path) -> None:
    folder = photo.parent
    os.symlink(photo, tmp_path / "link.jpg")
    os.link(photo, tmp_path / "hard.jpg")
    spellings = (photo, folder / "." / "face.jpg", folder / ".." / "in" / "face.jpg", tmp_path / "link.jpg",
                 tmp_path / "hard.jpg", folder)
    assert run(tiny_model, *spellings, out=tmp_path / "out") == {"skipped": 0, "done": 1}
    assert [r["input"] for r in index_rows(tmp_path / "out")] == [str(photo)]


def test_an_unreadable_folder_is_a_failed_row(photo: Path, tiny_model: Path, tmp_path: Path) -> None:
    locked = photo.parent / "locked"
    locked.mkdir()
    shutil.copy(photo, locked / "hidden.jpg")
    locked.chmod(0)
    # Root reads any folder: drop that power for the batch, as an ordinary user runs it.
    prefix = ("setpriv", "--inh-caps=-dac_override,-dac_read_search",
              "--bounding-set=-dac_override,-dac_read_search") if os.geteuid() == 0 else ()
    if prefix and not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv: every folder is readable")
    try:
        result = batch(photo.parent, "--out-dir", tmp_path / "out", *model_args(tiny_model), prefix=prefix)
    finally:
        locked.chmod(0o755)
    assert result.returncode == EXIT_SOME_FAILED, result.stderr
    rows = {Path(r["input"]).name: r for r in index_rows(tmp_path / "out")}
    assert rows["face.jpg"]["status"] == "done"
    assert rows["locked"]["status"] == "failed" and "Permission denied" in rows["locked"]["error"]
    # Readable again, the next run finds the file inside.
    assert run(tiny_model, photo.parent, out=tmp_path / "out") == {"skipped": 1, "done": 1}
    rows = {Path(r["input"]).name: r for r in index_rows(tmp_path / "out")}
    assert rows["hidden.jpg"]["status"] == "done" and "locked" not in rows


def test_a_folder_search_finds_what_a_named_file_reads(photo: Path, tiny_model: Path, tmp_path: Path) -> None:
    from PIL import Image

    picture = Image.open(photo)
    picture.save(photo.parent / "moving.gif", save_all=True, append_images=[picture] * 2, duration=100)
    assert run(tiny_model, photo.parent / "moving.gif", out=tmp_path / "named") == {"skipped": 0, "done": 1}
    run(tiny_model, photo.parent, out=tmp_path / "searched")
    assert index_rows(tmp_path / "named")[0]["status"] == "done"
    assert sorted(Path(r["input"]).name for r in index_rows(tmp_path / "searched")) == ["face.jpg", "moving.gif"]


# --- 15: load -------------------------------------------------------------------------------------------------------------

def test_workers_are_capped_at_what_the_machine_runs(photo: Path, tiny_model: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    cpus = len(os.sched_getaffinity(0))
    for i in range(cpus + 2):
        shutil.copy(photo, photo.parent / f"copy{i}.jpg")
    assert run(tiny_model, photo.parent, out=tmp_path / "out", workers=1000) == {"skipped": 0, "done": cpus + 3}
    told = re.search(r"emocam: --workers 1000: this machine runs (\d+) at once \((\d+) CPUs", capsys.readouterr().err)
    assert told and int(told[2]) == cpus and 1 <= int(told[1]) <= cpus  # fewer where memory is short
    assert len({r["worker"] for r in index_rows(tmp_path / "out")}) <= int(told[1])
