"""What a run writes, when things go wrong: every output checked before the run, none of them over an input or
another output, each staged and renamed whole at the end, and whole after a full disk, SIGKILL or a stop signal;
a missing display costs only the preview window."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import pytest

from conftest import SAMPLE, csv_rows, digest, leftovers, run_command, run_here, says, tmpfs
from emocam.outputs import partial_name


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    """The user's own video: a copy of the sample clip in a folder of its own."""
    return Path(shutil.copy(SAMPLE, tmp_path / "clip.mp4"))


# --- 2: an output that is an input, or another output --------------------------------------------------------------

@pytest.mark.parametrize("option", ["--csv", "--out", "--summary", "--plot"])
def test_an_output_that_is_the_input_video_is_refused(clip: Path, tiny_model: Path, option: str) -> None:
    before = digest(clip)
    result = run_here("emocam", "--video", clip, "--model", tiny_model, "--no-display", option, clip)
    says(result, f"{option} {clip} is the same file as the input --video")
    assert digest(clip) == before and leftovers(clip.parent) == []


@pytest.mark.parametrize("link", ["symlink", "hardlink"])
def test_the_input_reached_through_a_link_is_refused(clip: Path, tiny_model: Path, link: str) -> None:
    other = clip.parent / "other" / "v.mp4"
    other.parent.mkdir()
    (os.symlink if link == "symlink" else os.link)(clip, other)
    before = digest(clip)
    result = run_here("emocam", "--video", clip, "--model", tiny_model, "--no-display", "--csv", other)
    says(result, "is the same file as the input --video")
    assert digest(clip) == before


def test_an_output_over_the_model_is_refused(clip: Path, tiny_model: Path, tmp_path: Path) -> None:
    model = Path(shutil.copy(tiny_model, tmp_path / "model.onnx"))
    result = run_here("emocam", "--video", clip, "--model", model, "--no-display", "--summary", model)
    says(result, "is the same file as the input --model")
    assert digest(model) == digest(tiny_model)


def test_two_outputs_that_are_one_file_are_refused(clip: Path, tiny_model: Path, tmp_path: Path) -> None:
    mine = tmp_path / "x"
    mine.write_text("my notes\n")
    result = run_here("emocam", "--video", clip, "--model", tiny_model, "--no-display", "--csv", mine, "--summary", mine)
    says(result, f"--summary {mine} is the same file as the output --csv")
    assert mine.read_text() == "my notes\n"


def test_bench_json_over_its_video_is_refused(clip: Path, tiny_model: Path) -> None:
    before = digest(clip)
    says(run_here("emocam", "bench", clip, "--model", tiny_model, "--json", clip), "is the same file as the input VIDEO")
    assert digest(clip) == before


# --- 7: every output checked first; written to a partial name and renamed at the end ---------------------------------

def test_a_bad_output_is_found_before_any_output_is_touched(clip: Path, tiny_model: Path, tmp_path: Path) -> None:
    old = tmp_path / "old.csv"
    old.write_text("frame,label\n0,happy\n")
    # The outputs are checked before the inputs are even opened: the missing model is not reached.
    result = run_here("emocam", "--video", clip, "--model", tmp_path / "missing.onnx", "--no-display", "--csv", old,
                 "--out", tmp_path / "a.xyz")
    says(result, "cannot write the video")
    assert old.read_text() == "frame,label\n0,happy\n" and leftovers(tmp_path) == []


def test_a_good_run_replaces_old_outputs_whole(clip: Path, tiny_model: Path, tmp_path: Path) -> None:
    names = {"--csv": "f.csv", "--out": "a.mp4", "--summary": "s.json", "--plot": "p.png"}
    for name in names.values():
        (tmp_path / name).write_text("old\n")
    args = [a for option, name in names.items() for a in (option, tmp_path / name)]
    result = run_here("emocam", "--video", clip, "--model", tiny_model, "--no-display", *args)
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
    result = run_here("emocam", "--video", clip, "--model", tiny_model, "--no-display", "--csv", link)
    assert result.returncode == 0, result.stderr
    assert link.is_symlink() and len(csv_rows(real)) == 1 + 72
    assert leftovers(tmp_path) == [] and leftovers(real.parent) == []


@pytest.mark.slow
def test_a_csv_into_a_pipe_is_written_in_place(clip: Path, tiny_model: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "rows"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    result = run_command("emocam", "--video", clip, "--model", tiny_model, "--no-display", "--csv", fifo)
    reader.join(timeout=30)
    assert result.returncode == 0, result.stderr
    assert got and got[0].count(b"\n") == 1 + 72
    assert fifo.is_fifo() and leftovers(tmp_path) == []  # not replaced by a file


@pytest.mark.slow
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
    result = run_here("emocam", "--video", SAMPLE, "--model", tiny_model, "--no-display", "--csv", old)
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

@pytest.mark.slow
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
        result = run_here("emocam", "--video", clip, "--model", tiny_model, "--no-display", "--csv", small / "f.csv")
        says(result, "No space left on device; it keeps the rows before frame")
        rows = csv_rows(small / "f.csv")
        assert 1 < len(rows) < 1 + 72 and leftovers(small) == []


def test_a_full_disk_with_out_is_an_error_and_keeps_the_old_video(clip: Path, tiny_model: Path,
                                                                   tmp_path: Path) -> None:
    # The H.264 video of the sample clip takes about 93 kB: half of that fills the disk midway.
    with tmpfs(tmp_path / "small", size="48k", files={"a.mp4": b"my old video"}) as small:
        result = run_here("emocam", "--video", clip, "--model", tiny_model, "--no-display", "--out", small / "a.mp4")
        says(result, f"could not write the video {small / 'a.mp4'}")
        assert (small / "a.mp4").read_bytes() == b"my old video" and leftovers(small) == []


def test_a_plot_that_no_longer_fits_at_the_end_is_one_line_and_keeps_the_old_one(clip: Path, tiny_model: Path,
                                                                                 tmp_path: Path) -> None:
    with tmpfs(tmp_path / "small", size="16k", files={"p.png": b"my old plot"}) as small:
        result = run_here("emocam", "--video", clip, "--model", tiny_model, "--no-display", "--plot", small / "p.png",
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
        result = run_here("emocam", *args)
        says(result, message)
        assert "frames" not in result.stdout  # refused before the run, not after it
        assert (ro / "s.json").read_bytes() == b"{}"


# --- 6: a DISPLAY with no server behind it -------------------------------------------------------------------------

@pytest.mark.slow
def test_a_display_without_a_server_falls_back_to_no_window(clip: Path, tiny_model: Path, tmp_path: Path) -> None:
    old = tmp_path / "old.csv"
    old.write_text("my old results\n")
    result = run_command("emocam", "--video", clip, "--model", tiny_model, "--csv", old,
                         env={"DISPLAY": ":77", "WAYLAND_DISPLAY": ""})
    assert result.returncode == 0, result.stderr
    assert "emocam: no window opens on display :77; going on without the preview window" in result.stderr
    assert len(csv_rows(old)) == 1 + 72
