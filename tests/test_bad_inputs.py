"""Bad input, faults and signals, as a user meets them: each case gives one line and its exit code, and nothing the
user had is overwritten or lost (issue 10)."""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
import onnx
import pytest

from conftest import CLASSES
from emocam.contract import METADATA_KEY
from emocam.outputs import partial_name
from emocam.sources import open_source
from emocam.summary import Summary, Timeline

SAMPLE = Path(__file__).parents[1] / "samples" / "single_face.mp4"  # 72 frames, one face


def run(program: str, *args: object, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``emocam`` or ``emotrain`` in a fresh interpreter, as the installed scripts run."""
    module = {"emocam": "emocam.cli", "emotrain": "emocam.train.cli"}[program]
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True,
                          timeout=300, env=None if env is None else {**os.environ, **env}, cwd=cwd)


def says(result: subprocess.CompletedProcess, message: str, code: int = 2, program: str = "emocam") -> None:
    """The run ended with ``code`` and one error line containing ``message``, and no traceback."""
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith(f"{program}: error: ")]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert result.returncode == code, result.stderr


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def csv_rows(path: Path) -> list[list[str]]:
    """The rows of a CSV file, asserting that every one is whole (as many cells as the header)."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows and all(len(r) == len(rows[0]) for r in rows), f"{path} has a cut row"
    return rows


def leftovers(folder: Path) -> list[str]:
    """Partial files left in a folder."""
    return sorted(p.name for p in folder.iterdir() if ".partial" in p.name)


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    """The user's own video: a copy of the sample clip in a folder of its own."""
    return Path(shutil.copy(SAMPLE, tmp_path / "clip.mp4"))


@contextmanager
def tmpfs(folder: Path, size: str = "64k", read_only: bool = False,
          files: dict[str, bytes] | None = None) -> Iterator[Path]:
    """A small tmpfs mounted at ``folder`` holding ``files``, read-only if asked; skips where mounting is refused."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        for name, data in (files or {}).items():
            (folder / name).write_bytes(data)
        if read_only:
            subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


# --- 2: an output that is an input, or another output --------------------------------------------------------------

@pytest.mark.parametrize("option", ["--csv", "--out", "--summary", "--plot"])
def test_an_output_that_is_the_input_video_is_refused(clip: Path, tiny_model: Path, option: str) -> None:
    before = digest(clip)
    result = run("emocam", "--video", clip, "--model", tiny_model, "--no-display", option, clip)
    says(result, f"{option} {clip} is the same file as the input --video")
    assert digest(clip) == before and leftovers(clip.parent) == []


@pytest.mark.parametrize("link", ["symlink", "hardlink"])
def test_the_input_reached_through_a_link_is_refused(clip: Path, tiny_model: Path, link: str) -> None:
    other = clip.parent / "other" / "v.mp4"
    other.parent.mkdir()
    (os.symlink if link == "symlink" else os.link)(clip, other)
    before = digest(clip)
    result = run("emocam", "--video", clip, "--model", tiny_model, "--no-display", "--csv", other)
    says(result, "is the same file as the input --video")
    assert digest(clip) == before


def test_an_output_over_the_model_is_refused(clip: Path, tiny_model: Path, tmp_path: Path) -> None:
    model = Path(shutil.copy(tiny_model, tmp_path / "model.onnx"))
    result = run("emocam", "--video", clip, "--model", model, "--no-display", "--summary", model)
    says(result, "is the same file as the input --model")
    assert digest(model) == digest(tiny_model)


def test_two_outputs_that_are_one_file_are_refused(clip: Path, tiny_model: Path, tmp_path: Path) -> None:
    mine = tmp_path / "x"
    mine.write_text("my notes\n")
    result = run("emocam", "--video", clip, "--model", tiny_model, "--no-display", "--csv", mine, "--summary", mine)
    says(result, f"--summary {mine} is the same file as the output --csv")
    assert mine.read_text() == "my notes\n"


def test_bench_json_over_its_video_is_refused(clip: Path, tiny_model: Path) -> None:
    before = digest(clip)
    says(run("emocam", "bench", clip, "--model", tiny_model, "--json", clip), "is the same file as the input VIDEO")
    assert digest(clip) == before


# --- 7: every output checked first; written to a partial name and renamed at the end ---------------------------------

def test_a_bad_output_is_found_before_any_output_is_touched(clip: Path, tiny_model: Path, tmp_path: Path) -> None:
    old = tmp_path / "old.csv"
    old.write_text("frame,label\n0,happy\n")
    # The outputs are checked before the inputs are even opened: the missing model is not reached.
    result = run("emocam", "--video", clip, "--model", tmp_path / "missing.onnx", "--no-display", "--csv", old,
                 "--out", tmp_path / "a.xyz")
    says(result, "cannot write the video")
    assert old.read_text() == "frame,label\n0,happy\n" and leftovers(tmp_path) == []


def test_a_good_run_replaces_old_outputs_whole(clip: Path, tiny_model: Path, tmp_path: Path) -> None:
    names = {"--csv": "f.csv", "--out": "a.mp4", "--summary": "s.json", "--plot": "p.png"}
    for name in names.values():
        (tmp_path / name).write_text("old\n")
    args = [a for option, name in names.items() for a in (option, tmp_path / name)]
    result = run("emocam", "--video", clip, "--model", tiny_model, "--no-display", *args)
    assert result.returncode == 0, result.stderr
    assert len(csv_rows(tmp_path / "f.csv")) == 1 + 72
    assert json.loads((tmp_path / "s.json").read_text())["frames"] == 72
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    assert cv2.VideoCapture(str(tmp_path / "a.mp4")).get(cv2.CAP_PROP_FRAME_COUNT) == 72
    assert leftovers(tmp_path) == []


def test_an_output_through_a_symlink_replaces_the_file_it_points_to(clip: Path, tiny_model: Path,
                                                                    tmp_path: Path) -> None:
    real = tmp_path / "results" / "faces.csv"
    real.parent.mkdir()
    real.write_text("old\n")
    link = tmp_path / "latest.csv"
    link.symlink_to(real)
    result = run("emocam", "--video", clip, "--model", tiny_model, "--no-display", "--csv", link)
    assert result.returncode == 0, result.stderr
    assert link.is_symlink() and len(csv_rows(real)) == 1 + 72
    assert leftovers(tmp_path) == [] and leftovers(real.parent) == []


def test_a_csv_into_a_pipe_is_written_in_place(clip: Path, tiny_model: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "rows"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    result = run("emocam", "--video", clip, "--model", tiny_model, "--no-display", "--csv", fifo)
    reader.join(timeout=30)
    assert result.returncode == 0, result.stderr
    assert got and got[0].count(b"\n") == 1 + 72
    assert fifo.is_fifo() and leftovers(tmp_path) == []  # not replaced by a file


def test_after_sigkill_the_partial_csv_is_valid_and_the_old_one_untouched(tiny_model: Path, shared: Path,
                                                                          tmp_path: Path) -> None:
    old = tmp_path / "f.csv"
    old.write_text("my old results\n")
    partial = partial_name(old)
    proc = subprocess.Popen([sys.executable, "-m", "emocam.cli", "--video", shared / "videos" / "WolfgangLanger_Pexels.mp4",
                             "--model", tiny_model, "--no-display", "--csv", old, "--detector", "both"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_rows(partial, 20, proc)
    proc.kill()
    proc.wait(timeout=30)
    assert old.read_text() == "my old results\n"
    rows = csv_rows(partial)
    assert 20 <= len(rows) - 1 < 472
    # A later run never takes over the partial file a killed one left.
    kept = partial.read_bytes()
    result = run("emocam", "--video", SAMPLE, "--model", tiny_model, "--no-display", "--csv", old)
    assert result.returncode == 0, result.stderr
    assert partial.read_bytes() == kept and len(csv_rows(old)) == 1 + 72 and leftovers(tmp_path) == [partial.name]


def wait_for_rows(path: Path, rows: int, proc: subprocess.Popen, timeout_s: float = 90.0) -> None:
    """Wait until the CSV at ``path`` holds ``rows`` lines after its header."""
    deadline = time.monotonic() + timeout_s
    while not (path.exists() and path.read_bytes().count(b"\n") > rows):
        assert proc.poll() is None, "the run ended before it could be stopped"
        assert time.monotonic() < deadline, f"{path} did not reach {rows} rows"
        time.sleep(0.02)


# --- 5: SIGTERM and SIGHUP close outputs as Ctrl-C does ------------------------------------------------------------

@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_stop_signal_closes_every_output(tiny_model: Path, shared: Path, tmp_path: Path, signum: int) -> None:
    out = {"--csv": tmp_path / "f.csv", "--out": tmp_path / "a.mp4", "--summary": tmp_path / "s.json",
           "--plot": tmp_path / "p.png"}
    out["--csv"].write_text("my old results\n")
    args = [a for option, path in out.items() for a in (option, path)]
    proc = subprocess.Popen([sys.executable, "-m", "emocam.cli", "--video", shared / "videos" / "WolfgangLanger_Pexels.mp4",
                             "--model", tiny_model, "--no-display", "--detector", "both", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_rows(partial_name(out["--csv"]), 20, proc)
    assert out["--csv"].read_text() == "my old results\n"  # replaced only when the run ends
    proc.send_signal(signum)
    time.sleep(0.3)
    proc.send_signal(signum)  # a second one, while the outputs close, does not cut that short
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum and "Traceback" not in stderr, stderr
    rows = csv_rows(out["--csv"])
    frames = json.loads(out["--summary"].read_text())["frames"]
    assert 20 <= len(rows) - 1 <= frames < 472
    video = cv2.VideoCapture(str(out["--out"]))
    # The signal may land between two sinks' writes of one frame: the video then holds a frame more or less.
    assert video.isOpened() and abs(video.get(cv2.CAP_PROP_FRAME_COUNT) - frames) <= 1
    assert out["--plot"].read_bytes()[:4] == b"\x89PNG" and "face(s)" in stdout
    assert leftovers(tmp_path) == []


# --- 3: a full disk -------------------------------------------------------------------------------------------------

def test_a_full_disk_keeps_the_csv_valid_to_its_last_row(clip: Path, tiny_model: Path, tmp_path: Path) -> None:
    with tmpfs(tmp_path / "small", size="8k") as small:
        result = run("emocam", "--video", clip, "--model", tiny_model, "--no-display", "--csv", small / "f.csv")
        says(result, "No space left on device; it keeps the rows before frame")
        rows = csv_rows(small / "f.csv")
        assert 1 < len(rows) < 1 + 72 and leftovers(small) == []


def test_a_full_disk_with_out_is_an_error_and_keeps_the_old_video(clip: Path, tiny_model: Path,
                                                                   tmp_path: Path) -> None:
    # The H.264 video of the sample clip takes about 93 kB: half of that fills the disk midway.
    with tmpfs(tmp_path / "small", size="48k", files={"a.mp4": b"my old video"}) as small:
        result = run("emocam", "--video", clip, "--model", tiny_model, "--no-display", "--out", small / "a.mp4")
        says(result, f"could not write the video {small / 'a.mp4'}")
        assert (small / "a.mp4").read_bytes() == b"my old video" and leftovers(small) == []


def test_a_plot_that_no_longer_fits_at_the_end_is_one_line_and_keeps_the_old_one(clip: Path, tiny_model: Path,
                                                                                 tmp_path: Path) -> None:
    with tmpfs(tmp_path / "small", size="16k", files={"p.png": b"my old plot"}) as small:
        result = run("emocam", "--video", clip, "--model", tiny_model, "--no-display", "--plot", small / "p.png",
                     "--summary", small / "s.json")
        says(result, f"cannot write {small / 'p.png'}: No space left on device")
        assert "72 frames" in result.stdout  # the run itself went through
        assert (small / "p.png").read_bytes() == b"my old plot" and leftovers(small) == []
        assert json.loads((small / "s.json").read_text())["frames"] == 72  # the other output is whole


# --- 9: writes that cannot succeed are found up front ---------------------------------------------------------------

@pytest.mark.parametrize("case", ["summary_folder", "summary_read_only", "plot_type", "bench_json_read_only"])
def test_an_output_that_cannot_be_written_is_refused_before_the_run(clip: Path, tiny_model: Path, tmp_path: Path,
                                                                    case: str) -> None:
    with tmpfs(tmp_path / "ro", read_only=True, files={"s.json": b"{}"}) as ro:
        live = ("--video", clip, "--model", tiny_model, "--no-display")
        args, message = {
            "summary_folder": ((*live, "--summary", tmp_path), "it is a folder"),
            "summary_read_only": ((*live, "--summary", ro / "s.json"), "Read-only file system"),
            "plot_type": ((*live, "--plot", tmp_path / "p.xyz"), "cannot write the plot"),
            "bench_json_read_only": (("bench", clip, "--model", tiny_model, "--json", ro / "b.json"),
                                     "Read-only file system"),
        }[case]
        result = run("emocam", *args)
        says(result, message)
        assert "frames" not in result.stdout  # refused before the run, not after it
        assert (ro / "s.json").read_bytes() == b"{}"


def test_emotrain_evaluate_out_read_only_is_refused_before_evaluating(tiny_model: Path, tmp_path: Path) -> None:
    with tmpfs(tmp_path / "ro", read_only=True) as ro:
        result = run("emotrain", "evaluate", tiny_model, "--fer", tmp_path / "never-read.csv", "--out", ro / "eval")
        says(result, "Read-only file system", program="emotrain")


# --- 6: a DISPLAY with no server behind it -------------------------------------------------------------------------

def test_a_display_without_a_server_falls_back_to_no_window(clip: Path, tiny_model: Path, tmp_path: Path) -> None:
    old = tmp_path / "old.csv"
    old.write_text("my old results\n")
    result = run("emocam", "--video", clip, "--model", tiny_model, "--csv", old,
                 env={"DISPLAY": ":77", "WAYLAND_DISPLAY": ""})
    assert result.returncode == 0, result.stderr
    assert "emocam: no window opens on display :77; going on without the preview window" in result.stderr
    assert len(csv_rows(old)) == 1 + 72


# --- 11: the model's contract checked against its network ------------------------------------------------------------

def model_with_contract(tiny_model: Path, folder: Path, change: dict) -> Path:
    """A copy of the tiny model whose metadata has ``change`` applied (keys into the contract's JSON)."""
    model = onnx.load(str(tiny_model))
    entry = next(p for p in model.metadata_props if p.key == METADATA_KEY)
    contract = json.loads(entry.value)
    for key, value in change.items():
        if key in contract["preprocess"]:
            contract["preprocess"][key] = value
        else:
            contract[key] = value
    entry.value = json.dumps(contract)
    path = folder / "changed.onnx"
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("change, message", [
    ({"size": 64}, "metadata says input height 64, but the network has input height 48"),
    ({"channels": 3}, "metadata says input channels 3, but the network has input channels 1"),
    ({"std": 0}, "std must be positive"),
    ({"classes": [*CLASSES, "contempt", "unknown"]}, "metadata says 9 classes, but the network has outputs 7"),
    ({"classes": "angry"}, "'classes' must be a list of class names"),
], ids=["size", "channels", "std0", "classes9", "classes_string"])
def test_a_contract_that_does_not_fit_the_network_is_named(clip: Path, tiny_model: Path, tmp_path: Path,
                                                           change: dict, message: str) -> None:
    model = model_with_contract(tiny_model, tmp_path, change)
    result = run("emocam", "--video", clip, "--model", model, "--no-display", "--csv", tmp_path / "f.csv")
    says(result, message)
    assert not (tmp_path / "f.csv").exists() and leftovers(tmp_path) == []


# --- 12: emotrain export on what is not a checkpoint, or into a read-only place ---------------------------------------

@pytest.mark.parametrize("kind", ["text", "onnx", "other_dict"])
def test_export_of_what_is_not_a_checkpoint_says_so(tiny_model: Path, tmp_path: Path, kind: str) -> None:
    torch = pytest.importorskip("torch", reason="the training extra is not installed")
    given = tmp_path / "best.pt"
    if kind == "text":
        given.write_text("not a checkpoint\n")
    elif kind == "onnx":
        shutil.copy(tiny_model, given)
    else:
        torch.save({"weights": torch.zeros(3)}, given)
    result = run("emotrain", "export", given, "--out", tmp_path / "m.onnx")
    says(result, f"{given} is not an emotrain checkpoint", program="emotrain")
    assert not (tmp_path / "m.onnx").exists() and leftovers(tmp_path) == []


def test_export_into_a_read_only_folder_is_refused(tmp_path: Path) -> None:
    pytest.importorskip("torch", reason="the training extra is not installed")
    with tmpfs(tmp_path / "ro", read_only=True) as ro:
        result = run("emotrain", "export", tmp_path / "any.pt", "--out", ro / "m.onnx")
        says(result, "Read-only file system", program="emotrain")


def test_export_over_its_checkpoint_is_refused(tmp_path: Path) -> None:
    pytest.importorskip("torch", reason="the training extra is not installed")
    ckpt = tmp_path / "best.pt"
    ckpt.write_bytes(b"weights I trained for a day")
    result = run("emotrain", "export", ckpt, "--out", ckpt)
    says(result, "is the same file as the input checkpoint", program="emotrain")
    assert ckpt.read_bytes() == b"weights I trained for a day"


# --- 15, 17: FER-2013 csv errors name the row -------------------------------------------------------------------------

def fer_csv(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    """A small FER-2013 csv (gzipped) with ``rows`` of (emotion, pixels, Usage)."""
    with gzip.open(path, "wt", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["emotion", "pixels", "Usage"])
        writer.writerows(rows)
    return path


FACE = " ".join(["128"] * 48 * 48)


@pytest.mark.parametrize("rows, message", [
    ([("3", FACE, "PrivateTest"), ("3", " ".join(["999"] + ["0"] * 2303), "PrivateTest")],
     "row 3: pixel value 999 is outside 0..255"),
    ([("3", FACE, "Private")], "row 2: Usage 'Private' is not one of Training, PublicTest, PrivateTest"),
    ([("9", FACE, "PrivateTest")], "row 2: emotion '9' is not a class number 0..6"),
    ([("3", "1 2 3", "PrivateTest")], "row 2 has 3 pixel values"),
    ([], "no faces, only a header"),
    ([("3", FACE, "Training")], "has no PrivateTest rows"),
], ids=["pixel_999", "usage", "emotion", "pixel_count", "header_only", "no_split_rows"])
def test_a_bad_fer_csv_names_the_row(tiny_model: Path, tmp_path: Path, rows: list, message: str) -> None:
    data = fer_csv(tmp_path / "fer.csv.gz", rows)
    result = run("emotrain", "evaluate", tiny_model, "--fer", data, env={"EMOCAM_CACHE": str(tmp_path / "cache")})
    says(result, message, program="emotrain")


# --- 16: a URL where a file is expected -------------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["video", "bench"])
def test_a_url_given_as_a_file_says_to_use_source(tiny_model: Path, command: str) -> None:
    url = "http://example.com/live/stream.mp4"
    args = ("--video", url, "--no-display") if command == "video" else ("bench", url)
    says(run("emocam", *args, "--model", tiny_model), f"streams are live: use --source {url}")


# --- 10: a stream server that accepts and never answers -----------------------------------------------------------------

def test_a_silent_stream_server_is_given_up_after_timeout(tiny_model: Path) -> None:
    server = socket.create_server(("127.0.0.1", 0))
    held = []  # accepted connections, kept open and never answered
    threading.Thread(target=lambda: [held.append(server.accept()) for _ in range(4)], daemon=True).start()
    url = f"http://127.0.0.1:{server.getsockname()[1]}/live"
    try:
        start = time.monotonic()
        result = run("emocam", "--source", url, "--timeout", "1.5", "--model", tiny_model, "--no-display")
        elapsed = time.monotonic() - start
    finally:
        server.close()
    says(result, f"stream {url} did not answer within 1.5 s")
    assert elapsed < 8.0  # the default, 10 s, would wait longer: the option reached the capture


# --- 17: unclear messages ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (("single", "--batch", "0"), "Invalid value for '--batch'"),
    (("fer", "--epochs", "0"), "Invalid value for '--epochs'"),
], ids=["batch0", "epochs0"])
def test_emotrain_options_out_of_range_are_one_line(tmp_path: Path, args: tuple, message: str) -> None:
    says(run("emotrain", *args, "--out", tmp_path / "run"), message, program="emotrain")
    assert not (tmp_path / "run").exists()


def test_cascade_with_a_missing_target_leaves_no_stage_folder(tmp_path: Path) -> None:
    result = run("emotrain", "cascade", "--fer", tmp_path / "f.csv", "--target", tmp_path / "bogus",
                 "--out", tmp_path / "run")
    says(result, "target set folder not found", program="emotrain")
    assert not (tmp_path / "run").exists()


# --- 4: a video file under /dev ---------------------------------------------------------------------------------------

def test_a_video_file_under_dev_is_a_file_not_a_camera(tiny_model: Path, tmp_path: Path) -> None:
    if not Path("/dev/shm").is_dir():
        pytest.skip("no /dev/shm here")
    video = Path(shutil.copy(SAMPLE, f"/dev/shm/emocam-test-{os.getpid()}.mp4"))
    try:
        with open_source(str(video)) as source:  # --source with a path: a camera only if it is a capture device
            assert not source.live
        result = run("emocam", "--video", video, "--model", tiny_model, "--no-display", "--csv", tmp_path / "f.csv")
        assert result.returncode == 0, result.stderr
        rows = csv_rows(tmp_path / "f.csv")
        assert len(rows) == 1 + 72 and float(rows[-1][1]) == pytest.approx(71 / 30, abs=0.01)  # container times
    finally:
        video.unlink()


# --- 8: a truncated video ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("share, frames", [(2, 228), (5, 87)], ids=["half", "fifth"])
def test_a_cut_video_says_it_ended_early(tiny_model: Path, shared: Path, tmp_path: Path, share: int,
                                         frames: int) -> None:
    whole = (shared / "videos" / "WolfgangLanger_Pexels.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole[:len(whole) // share])
    result = run("emocam", "--video", cut, "--model", tiny_model, "--no-display", "--csv", tmp_path / "f.csv")
    says(result, f"cut.mp4 ended early: frames stopped at frame {frames} of 472", code=3)
    assert "skipped" not in result.stderr  # nothing after the cut is taken for a frame
    rows = csv_rows(tmp_path / "f.csv")
    assert int(rows[-1][0]) == frames - 1  # the frames before the cut are all there


def test_a_video_damaged_in_the_middle_goes_on_after_the_damage(tiny_model: Path, shared: Path,
                                                                tmp_path: Path) -> None:
    data = bytearray((shared / "videos" / "WolfgangLanger_Pexels.mp4").read_bytes())
    middle = len(data) // 2
    data[middle:middle + 200_000] = np.random.default_rng(0).bytes(200_000)
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    result = run("emocam", "--video", damaged, "--model", tiny_model, "--no-display", "--csv", tmp_path / "f.csv")
    says(result, "could not be decoded (the file is damaged there) and were skipped", code=3)
    frames = sorted({int(r[0]) for r in csv_rows(tmp_path / "f.csv")[1:]})
    assert frames[0] == 0 and frames[-1] == 471  # read up to the damage, and again from after it to the end
    assert 200 < len(frames) < 472


def test_a_whole_video_is_not_reported_as_ended_early(tiny_model: Path, shared: Path) -> None:
    # no_face.mp4's container lists 98 frames, of which 95 decode: a few frames short is not a cut file.
    result = run("emocam", "--video", shared / "videos" / "no_face.mp4", "--model", tiny_model, "--no-display")
    assert result.returncode == 0 and "ended early" not in result.stderr, result.stderr


# --- 13: the container's rotation -------------------------------------------------------------------------------------

def sideways_clip(path: Path) -> Path:
    """The sample clip stored turned 90 degrees clockwise, with an mp4 rotation tag that turns it back upright."""
    cap = cv2.VideoCapture(str(SAMPLE))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (360, 640))
    while True:
        ok, image = cap.read()
        if not ok:
            break
        writer.write(cv2.rotate(image, cv2.ROTATE_90_CLOCKWISE))
    writer.release()
    data = bytearray(path.read_bytes())
    tkhd = data.find(b"tkhd")
    assert data[tkhd + 4] == 0  # version 0: the matrix sits 40 bytes after the box's flags
    matrix = tkhd + 4 + 4 + 20 + 8 + 8
    data[matrix:matrix + 36] = struct.pack(">9i", 0, -0x10000, 0, 0x10000, 0, 0, 0, 0, 0x40000000)
    path.write_bytes(bytes(data))
    return path


def test_a_rotation_tag_is_honoured(tiny_model: Path, tmp_path: Path) -> None:
    video = sideways_clip(tmp_path / "phone.mp4")
    with open_source(str(video)) as source:
        assert next(iter(source)).image.shape == (360, 640, 3)  # upright, as a player shows it
    result = run("emocam", "--video", video, "--model", tiny_model, "--no-display", "--csv", tmp_path / "f.csv")
    assert result.returncode == 0, result.stderr
    rows = csv_rows(tmp_path / "f.csv")
    assert len(rows) - 1 >= 60  # the upright face is found in (nearly) every frame
    assert max(float(dict(zip(rows[0], r))["x"]) for r in rows[1:]) > 150  # boxes in the landscape frame


# --- memory: the summary's timelines are bounded -----------------------------------------------------------------------

def test_a_timeline_keeps_a_bounded_number_of_points() -> None:
    timeline = Timeline(len(CLASSES), points=64)
    probs = np.eye(len(CLASSES))[np.arange(10_000) // 5_000 * 3]  # class 0 for the first half, then class 3
    for i, p in enumerate(probs):
        timeline.add(i / 25.0, p)
    times, means = timeline.points()
    assert 32 <= len(times) <= 64 and timeline._sums.shape[0] == 64  # bounded, whatever the length
    assert np.all(np.diff(times) > 0) and times[0] < 10.0 and times[-1] > 390.0  # each point: its frames' mean time
    assert means[:10, 0].min() == 1.0 and means[-10:, 3].min() == 1.0  # each point averages its own frames


def test_the_summary_plot_of_a_long_run_uses_bounded_points(tmp_path: Path) -> None:
    from test_sinks import frame_with_faces

    with Summary(CLASSES, plot_path=tmp_path / "p.png") as summary:
        for i in range(3000):
            summary.write(*frame_with_faces(i, n=1))
        assert summary._faces[0]["timeline"].n <= summary._faces[0]["timeline"].points_max
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


def test_a_cut_video_is_probed_a_few_times_not_once_for_every_missing_second(shared: Path, tmp_path: Path,
                                                                               monkeypatch) -> None:
    from emocam import sources

    whole = (shared / "videos" / "WolfgangLanger_Pexels.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole[:len(whole) // 5])
    opened = []
    real_open = sources.open_capture
    monkeypatch.setattr(sources, "open_capture", lambda target: opened.append(target) or real_open(target))
    with sources.VideoFile(cut) as video:
        frames = sum(1 for _ in video)
    assert frames == 87 and "ended early" in str(video.ended_early)
    # The first open, then 1, 2, 4 and 8 seconds past the cut and the last frame; one a second would be 16 in all.
    assert len(opened) <= 6, opened
