"""emotrain's one-line errors: outputs it cannot write, what is not a checkpoint, a bad FER-2013 csv, options out of
range, and nothing left behind."""

from __future__ import annotations

import csv
import gzip
import shutil
from pathlib import Path

import pytest

from conftest import leftovers, run_here, says, tmpfs


def test_emotrain_evaluate_out_read_only_is_refused_before_evaluating(tiny_model: Path, tmp_path: Path) -> None:
    with tmpfs(tmp_path / "ro", read_only=True) as ro:
        result = run_here("emotrain", "evaluate", tiny_model, "--fer", tmp_path / "never-read.csv", "--out", ro / "eval")
        says(result, "Read-only file system", program="emotrain")


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
    result = run_here("emotrain", "export", given, "--out", tmp_path / "m.onnx")
    says(result, f"{given} is not an emotrain checkpoint", program="emotrain")
    assert not (tmp_path / "m.onnx").exists() and leftovers(tmp_path) == []


def test_export_into_a_read_only_folder_is_refused(tmp_path: Path) -> None:
    pytest.importorskip("torch", reason="the training extra is not installed")
    with tmpfs(tmp_path / "ro", read_only=True) as ro:
        result = run_here("emotrain", "export", tmp_path / "any.pt", "--out", ro / "m.onnx")
        says(result, "Read-only file system", program="emotrain")


def test_export_over_its_checkpoint_is_refused(tmp_path: Path) -> None:
    pytest.importorskip("torch", reason="the training extra is not installed")
    ckpt = tmp_path / "best.pt"
    ckpt.write_bytes(b"weights I trained for a day")
    result = run_here("emotrain", "export", ckpt, "--out", ckpt)
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
    result = run_here("emotrain", "evaluate", tiny_model, "--fer", data)
    says(result, message, program="emotrain")


# --- 17: unclear messages ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (("single", "--batch", "0"), "Invalid value for '--batch'"),
    (("fer", "--epochs", "0"), "Invalid value for '--epochs'"),
], ids=["batch0", "epochs0"])
def test_emotrain_options_out_of_range_are_one_line(tmp_path: Path, args: tuple, message: str) -> None:
    says(run_here("emotrain", *args, "--out", tmp_path / "run"), message, program="emotrain")
    assert not (tmp_path / "run").exists()


def test_cascade_with_a_missing_target_leaves_no_stage_folder(tmp_path: Path) -> None:
    result = run_here("emotrain", "cascade", "--fer", tmp_path / "f.csv", "--target", tmp_path / "bogus",
                 "--out", tmp_path / "run")
    says(result, "target set folder not found", program="emotrain")
    assert not (tmp_path / "run").exists()
