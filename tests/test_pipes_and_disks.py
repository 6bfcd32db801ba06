"""Live outputs at their ends: --jsonl on a full disk is one line and whole records; a reader that leaves early is
an ordinary end, every other output is finished and the run says what it did (issue 19: 9, 10)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SAMPLE, csv_rows, leftovers, says, tmpfs

EMOCAM = (sys.executable, "-m", "emocam.cli")


def shell(command: str, reader: str | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    """``command`` run by bash, piped into ``reader`` if given; the exit code is the command's, not the reader's."""
    line = command if reader is None else f"{command} | {reader}; exit ${{PIPESTATUS[0]}}"
    return subprocess.run(["bash", "-c", line], capture_output=True, text=True, timeout=timeout)


def live(tiny_model: Path, *args: object) -> str:
    """The live command on the sample clip with the tiny model, as a shell line."""
    return " ".join(map(str, (*EMOCAM, "--video", SAMPLE, "--model", tiny_model, "--backend", "onnxruntime",
                              "--no-display", *args)))


def whole_lines(path: Path) -> list[dict]:
    """The JSON lines of ``path``; each must be a whole record."""
    text = path.read_text()
    assert text == "" or text.endswith("\n"), f"{path} ends inside a record"
    return [json.loads(line) for line in text.splitlines()]


# --- 9: a full disk --------------------------------------------------------------------------------------------------

def test_jsonl_on_a_full_disk_is_one_line_and_whole_records(tiny_model: Path, tmp_path: Path) -> None:
    with tmpfs(tmp_path / "small", size="8k") as small:
        result = shell(live(tiny_model, "--jsonl", small / "f.jsonl", "--csv", tmp_path / "f.csv"))
        says(result, f"cannot write {small / 'f.jsonl'}: No space left on device")
        records = whole_lines(small / "f.jsonl")
        assert 5 < len(records) < 72 and records[-1]["frame"] == len(records) - 1
        assert len(csv_rows(tmp_path / "f.csv")) - 1 >= len(records)  # the other output is closed whole


def test_jsonl_on_standard_output_that_is_full_is_one_line(tiny_model: Path) -> None:
    says(shell(live(tiny_model, "--jsonl", "-") + " > /dev/full"),
         "cannot write standard output: No space left on device")


# --- 10: a reader that leaves early ------------------------------------------------------------------------------------

@pytest.mark.parametrize("target", ["-", "/dev/stdout"])
def test_a_reader_that_leaves_costs_no_other_output(tiny_model: Path, tmp_path: Path, target: str) -> None:
    outputs = {"--csv": tmp_path / "f.csv", "--summary": tmp_path / "s.json", "--plot": tmp_path / "p.png"}
    args = [a for option, path in outputs.items() for a in (option, path)]
    result = shell(live(tiny_model, "--jsonl", target, *args), "head -n 1")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert len(result.stdout.splitlines()) == 1
    told = [line for line in result.stderr.splitlines() if line.startswith("emocam: the reader of --jsonl")]
    assert len(told) == 1 and "went away at frame" in told[0] and told[0].endswith("going on without it")
    assert len(csv_rows(outputs["--csv"])) == 1 + 72  # every frame, not the ones before the reader left
    assert json.loads(outputs["--summary"].read_text())["frames"] == 72
    assert outputs["--plot"].read_bytes()[:4] == b"\x89PNG" and leftovers(tmp_path) == []


def test_a_reader_that_leaves_ends_a_run_with_no_other_output(tiny_model: Path) -> None:
    result = shell(live(tiny_model, "--jsonl", "-"), "head -n 1")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    told = [line for line in result.stderr.splitlines() if line.startswith("emocam: the reader of --jsonl")]
    assert len(told) == 1 and "went away at frame" in told[0] and "stopping" in told[0]


def test_a_closed_standard_output_is_an_ordinary_end_for_every_command(tiny_model: Path, tmp_path: Path) -> None:
    commands = {
        "summary": live(tiny_model, "--summary", tmp_path / "s.json"),
        "bench": " ".join(map(str, (*EMOCAM, "bench", SAMPLE, "--model", tiny_model, "--json", tmp_path / "b.json"))),
        "batch": " ".join(map(str, (*EMOCAM, "batch", SAMPLE, "--out-dir", tmp_path / "out", "--model", tiny_model))),
        "help": " ".join((*EMOCAM, "batch", "--help")),
        "emotrain help": f"{sys.executable} -m emocam.train.cli --help",
    }
    for name, command in commands.items():
        # The reader is gone before the command prints: every print to standard output finds a closed pipe.
        result = shell(command, "true")
        assert result.returncode == 0 and "Traceback" not in result.stderr, (name, result.stderr)
        assert "Exception ignored" not in result.stderr, (name, result.stderr)
    assert json.loads((tmp_path / "s.json").read_text())["frames"] == 72
    assert json.loads((tmp_path / "b.json").read_text())["frames"] == 72
    assert (tmp_path / "out" / "index.csv").read_text().count("\n") == 2
    assert leftovers(tmp_path) == []
