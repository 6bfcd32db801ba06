"""emocam batch: many inputs, an index, reruns, a killed batch, worker processes and a Ray cluster."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest

from conftest import Ran, build_tiny_model, run_command, run_here, says
from emocam.batch import INDEX, INDEX_COLUMNS
from emocam.cli import EXIT_SOME_FAILED
from emocam.records import columns

# Wild photos in which the short-range detector finds one face.
WILD_FACES = ("AJ_Lamas_0001", "Al_Pacino_0003", "Alan_Ball_0002", "Alejandro_Gonzalez_Inarritu_0001",
              "Alejandro_Lembo_0001", "Anders_Ebbeson_0001", "Anita_DeFrantz_0001", "Anna_Kournikova_0012",
              "Art_Howe_0004", "Barrett_Jackman_0001", "Beecher_Ray_Kirby_0001", "Brian_Cashman_0001",
              "Brian_Van_Dusen_0001")


def batch(*args: object, cwd: Path | None = None) -> Ran:
    """``emocam batch ...`` in this process."""
    return run_here("emocam", "batch", *args, cwd=cwd)


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def index_rows(out: Path) -> list[dict]:
    rows = read_rows(out / INDEX)
    assert rows and list(rows[0]) == list(INDEX_COLUMNS)
    return rows


def outputs(out: Path) -> dict[str, str]:
    """Every file in ``out`` but the index, by name, with its content."""
    return {p.name: p.read_text() for p in sorted(out.iterdir()) if p.name != INDEX}


@pytest.fixture
def twenty_inputs(shared: Path, clip: Path, tmp_path: Path) -> tuple[list[str], Path]:
    """20 inputs given as folders, a glob and a file: 2 clips of the same name in two folders, 14 photos (jpg, png,
    webp), 3 broken files (not a video, not an image, a video cut short) and a video without a face."""
    root = tmp_path / "inputs"
    for folder in ("a", "b"):
        (root / "clips" / folder).mkdir(parents=True)
        shutil.copy(clip, root / "clips" / folder / "single_face.mp4")
    photos = root / "photos"
    photos.mkdir()
    shutil.copy(shared / "images" / "single_face.jpg", photos)
    for i, name in enumerate(WILD_FACES):
        image = cv2.imread(str(shared / "wild" / "val" / "happy" / f"{name}.jpg"))
        cv2.imwrite(str(photos / f"{name}{('.jpg', '.png', '.webp')[i % 3]}"), image)
    broken = root / "broken"
    broken.mkdir()
    (broken / "notes.mp4").write_text("not a video\n")
    (broken / "garbage.png").write_bytes(os.urandom(5000))
    data = (shared / "videos" / "WolfgangLanger_Pexels.mp4").read_bytes()
    (broken / "cut.mp4").write_bytes(data[:len(data) // 5])  # its index is at the front: the frames stop early
    return [str(root / "clips"), str(photos / "*"), str(broken), str(shared / "videos" / "no_face.mp4")], root


@pytest.mark.slow
def test_a_batch_records_every_input_and_a_rerun_does_nothing(twenty_inputs, tiny_model: Path, tmp_path: Path) -> None:
    inputs, root = twenty_inputs
    out = tmp_path / "out"
    args = (*inputs, "--out-dir", out, "--model", tiny_model, "--backend", "onnxruntime",
            "--parquet", tmp_path / "all.parquet")
    result = batch(*args)
    assert result.returncode == EXIT_SOME_FAILED, result.stderr  # the three broken files
    assert "20 inputs: 0 already finished; this run: 16 done, 1 ended early, 2 failed, 1 no face" in result.stdout
    assert "20/20" in result.stderr and "file" in result.stderr  # the progress bar over files
    rows = {Path(r["input"]).name + ("" if "clips" not in r["input"] else Path(r["input"]).parent.name): r
            for r in index_rows(out)}
    assert len(rows) == 20
    assert sorted(k for k, r in rows.items() if r["status"] == "failed") == ["garbage.png", "notes.mp4"]
    assert "not a decodable video" in rows["notes.mp4"]["error"] and "not a decodable image" in rows["garbage.png"]["error"]
    assert rows["cut.mp4"]["status"] == "ended early" and "cut.mp4" in rows["cut.mp4"]["error"]  # says what was lost
    assert 50 < int(rows["cut.mp4"]["frames"]) < 472 and (out / rows["cut.mp4"]["csv"]).is_file()
    assert rows["no_face.mp4"]["status"] == "no face" and int(rows["no_face.mp4"]["frames"]) == 95
    a, b = rows["single_face.mp4a"], rows["single_face.mp4b"]
    assert a["status"] == b["status"] == "done" and a["csv"] != b["csv"]  # same name, two folders: two outputs
    done = [r for r in rows.values() if r["status"] == "done"]
    assert len(done) == 16 and all(int(r["face_rows"]) >= 1 for r in done)
    total = 0
    for r in rows.values():
        if r["csv"]:
            table = read_rows(out / r["csv"])
            assert int(r["face_rows"]) == len(table) and (out / r["summary"]).is_file()
            with open(out / r["csv"], newline="") as f:
                assert next(csv.reader(f))[:len(columns(()))] == columns(())
            total += len(table)
    import pandas as pd

    combined = pd.read_parquet(tmp_path / "all.parquet")
    assert len(combined) == total and combined.columns[0] == "input" and combined["input"].nunique() == 16 + 1
    assert not [p for p in out.iterdir() if "partial" in p.name]

    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    index_before = (out / INDEX).read_text()
    again = batch(*args[:-2])
    assert again.returncode == EXIT_SOME_FAILED, again.stderr  # still: the broken files stay failed
    assert "20 inputs: 20 already finished; this run: nothing to do" in again.stdout
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name != INDEX} == \
        {k: v for k, v in before.items() if k != INDEX}
    assert (out / INDEX).read_text() == index_before


@pytest.mark.slow
def test_a_killed_batch_rerun_ends_whole_with_nothing_twice(clip: Path, tiny_model: Path, tmp_path: Path) -> None:
    folder = tmp_path / "clips"
    folder.mkdir()
    for i in range(8):
        shutil.copy(clip, folder / f"clip{i}.mp4")
    out = tmp_path / "out"
    args = [sys.executable, "-m", "emocam.cli", "batch", str(folder), "--out-dir", str(out), "--model", str(tiny_model),
            "--backend", "onnxruntime"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not (out / INDEX).exists() or (out / INDEX).read_text().count("\n") < 3):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)  # no chance to clean up
    proc.wait(timeout=30)
    first = index_rows(out)
    assert 2 <= len(first) < 8  # killed midway
    result = batch(folder, "--out-dir", out, "--model", tiny_model, "--backend", "onnxruntime")
    assert result.returncode == 0, result.stderr
    assert f"8 inputs: {len(first)} already finished; this run: {8 - len(first)} done" in result.stdout
    rows = index_rows(out)
    assert sorted(r["input"] for r in rows) == sorted(str(p) for p in folder.iterdir())  # each input once
    assert all(r["status"] == "done" for r in rows)
    files = outputs(out)
    assert sorted(files) == sorted([r["csv"] for r in rows] + [r["summary"] for r in rows])  # no partial file left
    for r in rows:
        table = list(csv.reader(files[r["csv"]].splitlines()))
        assert len(table) == 73 and all(len(line) == len(table[0]) for line in table)


def test_options_reach_a_batch_and_other_options_want_another_folder(shared: Path, tiny_model: Path, tmp_path: Path) -> None:
    images = [shared / "images" / "single_face.jpg", shared / "images" / "multi_face.jpg"]
    out = tmp_path
    model = ("--model", tiny_model, "--backend", "onnxruntime")

    def statuses(folder: str, *extra) -> dict[str, tuple[str, str]]:
        result = batch(*images, "--out-dir", out / folder, *model, *extra)
        assert result.returncode == 0, result.stderr
        return {Path(r["input"]).name: (r["status"], r["face_rows"]) for r in index_rows(out / folder)}

    assert statuses("auto") == {"single_face.jpg": ("done", "1"), "multi_face.jpg": ("done", "5")}
    assert "2 already finished" in batch(*images, "--out-dir", out / "auto", *model).stdout
    # Other options into the same folder are refused: one folder holds one set of options.
    refused = batch(*images, "--out-dir", out / "auto", *model, "--detector", "short")
    says(refused, "other options (detector both -> short)")
    # --detector reaches the detector: the short-range model alone, at the video score, finds none of the five.
    assert statuses("short", "--detector", "short", "--min-score", "0.7") == {"single_face.jpg": ("done", "1"),
                                                                               "multi_face.jpg": ("no face", "0")}
    # --min-score reaches the detector too: no face scores 0.999.
    assert statuses("strict", "--detector", "full", "--min-score", "0.999") == {"single_face.jpg": ("no face", "0"),
                                                                                 "multi_face.jpg": ("no face", "0")}
    # Another model is another answer, and is refused where the first one's results are.
    other = build_tiny_model(tmp_path / "other.onnx", seed=3)
    result = batch(*images, "--out-dir", out / "short", "--model", other, "--backend", "onnxruntime")
    says(result, "another model")
    result = batch(*images, "--out-dir", out / "other", "--model", other, "--backend", "onnxruntime")
    assert result.returncode == 0 and "0 already finished" in result.stdout, result.stderr + result.stdout


def test_batch_tau_hysteresis_and_every_frame_reach_the_csv(shared: Path, clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    # The shipped model: the leading class changes during this clip.
    result = batch(clip, shared / "videos" / "no_face.mp4", "--out-dir", out, "--backend", "onnxruntime",
                   "--tau", "0", "--hysteresis", "2", "--every-frame")
    assert result.returncode == 0, result.stderr
    rows = {Path(r["input"]).name: read_rows(out / r["csv"]) for r in index_rows(out)}
    assert len(rows["no_face.mp4"]) == 95 and all(r["face_id"] == "" for r in rows["no_face.mp4"])
    faces = rows["single_face.mp4"]
    probs = [c for c in faces[0] if c.startswith("p_")]
    assert len(faces) == 72 and all(r[p] == r["s_" + p[2:]] for r in faces for p in probs)  # tau 0: not smoothed
    leaders = {max(probs, key=lambda p: float(r[p]))[2:] for r in faces}
    assert len(leaders) > 1 and {r["label"] for r in faces} == {faces[0]["label"]}  # a margin of 2: the label stays


def test_batch_errors_are_one_line(clip: Path, tiny_model: Path, tmp_path: Path) -> None:
    cases = [((clip, "--out-dir", tmp_path / "no" / "out"), "does not exist"),
             ((clip, "--out-dir", tmp_path / "o", "--workers", "2", "--ray", "auto"), "not both"),
             ((tmp_path / "*.nothing", "--out-dir", tmp_path / "o"), "no file matches"),
             ((clip, "--out-dir", tmp_path / "o", "--model", tmp_path / "missing.onnx"), "model file not found"),
             ((clip, "--out-dir", tmp_path / "o", "--workers", "0"), "--workers"),
             ((clip, "--out-dir", tmp_path / "o", "--backend", "nosuch"), "unknown backend 'nosuch'"),
             ((clip, "--out-dir", tmp_path / "o", "--ray", f"127.0.0.1:{free_port()}"), "no Ray cluster answers")]
    for args, message in cases:
        says(batch(*args), message, alone=True)


@pytest.mark.slow
def test_workers_run_inputs_in_several_processes_with_the_same_results(clip: Path, tiny_model: Path,
                                                                       tmp_path: Path) -> None:
    folder = tmp_path / "clips"
    folder.mkdir()
    for i in range(6):
        shutil.copy(clip, folder / f"clip{i}.mp4")
    runs = {}
    for n in (1, 2):
        # A process of its own: the pool's workers are spawned from it.
        result = run_command("emocam", "batch", folder, "--out-dir", tmp_path / f"out{n}", "--model", tiny_model,
                             "--backend", "onnxruntime", "--workers", n)
        assert result.returncode == 0, result.stderr
        runs[n] = index_rows(tmp_path / f"out{n}"), outputs(tmp_path / f"out{n}")
    assert len({r["worker"] for r in runs[1][0]}) == 1 and len({r["worker"] for r in runs[2][0]}) == 2
    assert runs[1][1] == runs[2][1] and len(runs[1][1]) == 12


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_a_ray_batch_equals_a_local_one(shared: Path, clip: Path, tiny_model: Path, tmp_path: Path) -> None:
    ray_bin = Path(sys.executable).parent / "ray"
    node_dir, driver_dir = tmp_path / "node", tmp_path / "driver"
    node_dir.mkdir()
    (driver_dir / "inputs").mkdir(parents=True)
    shutil.copy(clip, driver_dir / "inputs" / "clip.mp4")
    shutil.copy(shared / "images" / "single_face.jpg", driver_dir / "inputs")
    (driver_dir / "inputs" / "notes.mp4").write_text("not a video\n")
    shutil.copy(tiny_model, driver_dir / "tiny.onnx")
    port = free_port()
    log = tmp_path / "ray.log"
    # The node (and so its workers) starts in another folder than the driver: relative paths must not leak.
    node = subprocess.Popen([str(ray_bin), "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
                             "--include-dashboard=false", "--disable-usage-stats", "--object-store-memory=100000000",
                             f"--ray-client-server-port={free_port()}",
                             f"--dashboard-agent-listen-port={free_port()}"], cwd=node_dir, stdout=open(log, "w"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 300  # a loaded 2-core machine takes minutes
        while "Ray runtime started" not in log.read_text() and time.monotonic() < deadline and node.poll() is None:
            time.sleep(0.2)
        assert "Ray runtime started" in log.read_text(), f"exit {node.poll()}: " + log.read_text()[-3000:]
        common = ("inputs", "--model", "tiny.onnx", "--backend", "onnxruntime")
        # The driver in a process of its own, as a user runs it: it joins the cluster and leaves it.
        on_ray = run_command("emocam", "batch", *common, "--out-dir", "ray_out", "--ray", f"127.0.0.1:{port}",
                             cwd=driver_dir)
        assert on_ray.returncode == EXIT_SOME_FAILED, on_ray.stderr[-3000:]  # notes.mp4
        local = batch(*common, "--out-dir", "local_out", cwd=driver_dir)
        assert local.returncode == EXIT_SOME_FAILED, local.stderr
    finally:
        node.terminate()  # ray start --block stops the processes it started
        try:
            node.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(node.pid, signal.SIGKILL)
    ray_rows, local_rows = index_rows(driver_dir / "ray_out"), index_rows(driver_dir / "local_out")
    assert {r["input"]: (r["status"], r["csv"], r["face_rows"]) for r in ray_rows} == \
        {r["input"]: (r["status"], r["csv"], r["face_rows"]) for r in local_rows}
    assert sorted(r["status"] for r in ray_rows) == ["done", "done", "failed"]
    assert outputs(driver_dir / "ray_out") == outputs(driver_dir / "local_out")
    assert {r["worker"] for r in ray_rows}.isdisjoint({r["worker"] for r in local_rows})  # really elsewhere


def test_parquet_without_pyarrow_says_which_extra_before_anything_runs(clip: Path, tiny_model: Path, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import emocam

    monkeypatch.setitem(sys.modules, "pyarrow", None)  # makes "import pyarrow" fail, as where it is not installed
    with pytest.raises(emocam.MissingExtra, match=r"pyarrow is not installed; pip install 'emocam\[table\]'"):
        emocam.run_batch([clip], tmp_path / "out", emocam.Options(model=tiny_model, backend="onnxruntime"),
                         parquet=tmp_path / "all.parquet", progress=False)
    assert not (tmp_path / "out" / INDEX).exists()
