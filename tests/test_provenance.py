"""What every result records of how it was made (input, model sha256, options, version), batch reruns that never mix
two sets of options, batch exit codes and index columns that say what they count, and the hint when no face is
found."""

from __future__ import annotations

import csv
import json
import shutil
from importlib import metadata
from pathlib import Path

import pytest

from conftest import digest, run_here, says
from emocam.batch import INDEX
from emocam.cli import EXIT_SOME_FAILED


def index(out: Path) -> list[dict]:
    with open(out / INDEX, newline="") as f:
        return list(csv.DictReader(f))


def test_the_summary_records_input_model_options_and_version(clip: Path, tiny_model: Path, tmp_path: Path) -> None:
    ran = run_here("emocam", "--video", clip, "--model", tiny_model, "--no-display", "--summary", tmp_path / "s.json",
                   "--tau", 0.5, "--detector", "full", "--max-frames", 20)
    assert ran.returncode == 0, ran.stderr
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["input"] == str(clip)
    assert summary["model"] == str(tiny_model) and summary["model_sha256"] == digest(tiny_model)
    assert summary["emocam_version"] == metadata.version("emocam")
    options = summary["options"]
    assert options["tau"] == 0.5 and options["detector"] == "full" and options["max_frames"] == 20
    assert options["backend"] == "auto" and summary["backend"] == "onnxruntime"  # asked for, and what ran


@pytest.fixture
def inputs(clip: Path, shared: Path, tmp_path: Path) -> Path:
    """A folder with the one-face clip and the five-face photo."""
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(clip, folder / "clip.mp4")
    shutil.copy(shared / "images" / "multi_face.jpg", folder)
    return folder


def test_the_batch_index_counts_face_rows_and_distinct_faces(inputs: Path, tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    ran = run_here("emocam", "batch", inputs, "--out-dir", out, "--model", tiny_model, "--detector", "full")
    assert ran.returncode == 0, ran.stderr
    rows = {Path(r["input"]).name: r for r in index(out)}
    assert rows["clip.mp4"]["face_rows"] == "72" and rows["clip.mp4"]["distinct_faces"] == "1"
    assert rows["multi_face.jpg"]["face_rows"] == "5" and rows["multi_face.jpg"]["distinct_faces"] == "5"
    for row in rows.values():
        assert row["model_sha256"] == digest(tiny_model) and row["emocam_version"] == metadata.version("emocam")
        assert json.loads(row["options"])["detector"] == "full"
        summary = json.loads((out / row["summary"]).read_text())
        assert summary["input"] == row["input"] and summary["model_sha256"] == row["model_sha256"]


def test_a_batch_rerun_with_other_options_is_refused(inputs: Path, tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert run_here("emocam", "batch", inputs, "--out-dir", out, "--model", tiny_model).returncode == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    refused = run_here("emocam", "batch", inputs, "--out-dir", out, "--model", tiny_model, "--tau", 1.0)
    says(refused, "other options", alone=True)
    assert "tau" in refused.stderr and "--out-dir" in refused.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing touched
    # The same options again: everything already finished, nothing redone.
    again = run_here("emocam", "batch", inputs, "--out-dir", out, "--model", tiny_model)
    assert again.returncode == 0 and "2 already finished" in again.stdout


def test_batch_exit_codes(inputs: Path, tiny_model: Path, tmp_path: Path) -> None:
    (inputs / "broken.mp4").write_text("not a video\n")
    ran = run_here("emocam", "batch", inputs, "--out-dir", tmp_path / "out", "--model", tiny_model)
    assert ran.returncode == EXIT_SOME_FAILED == 4
    assert "1 failed" in ran.stdout and "index.csv" in ran.stderr
    # A rerun skips the failed input, which is still failed: still not a clean batch.
    again = run_here("emocam", "batch", inputs, "--out-dir", tmp_path / "out", "--model", tiny_model)
    assert again.returncode == EXIT_SOME_FAILED
    ran = run_here("emocam", "batch", tmp_path / "no" / "such" / "folder", "--out-dir", tmp_path / "out2",
                   "--model", tiny_model)
    assert ran.returncode == EXIT_SOME_FAILED


def test_no_face_at_all_says_what_to_try(shared: Path, tiny_model: Path) -> None:
    ran = run_here("emocam", "--video", shared / "images" / "multi_face.jpg", "--model", tiny_model, "--no-display",
                   "--detector", "short", "--min-score", "0.7")
    assert ran.returncode == 0
    [hint] = [line for line in ran.stderr.splitlines() if "no face" in line]
    assert "--detector full" in hint and "--min-score (now 0.7)" in hint
    # The default reading finds the five faces; where it finds none, the hint gives both of its scores.
    ran = run_here("emocam", "--video", shared / "images" / "multi_face.jpg", "--model", tiny_model, "--no-display")
    assert "no face" not in ran.stderr
    ran = run_here("emocam", "--video", shared / "videos" / "no_face.mp4", "--model", tiny_model, "--no-display")
    [hint] = [line for line in ran.stderr.splitlines() if "no face" in line]
    assert "--min-score (now 0.5 in photos, 0.7 in video)" in hint and "--detector" not in hint
