"""Shared fixtures and helpers: the real data folder, a tiny ONNX model that carries the emocam contract, a cache
folder of the test session's own, and the two ways of running the commands (in this process, or in a fresh one
where signals, pipes or file descriptors are what is tested)."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import importlib.util
import io
import os
import subprocess
import sys
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from emocam.align import Preprocess
from emocam.contract import METADATA_KEY, ModelContract

CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
DATA = Path(__file__).parents[1].parent / "shared" / "data"

# The stream-lag benchmark's clip maker and loopback live server, shared with the stream tests.
_spec = importlib.util.spec_from_file_location("stream_lag", Path(__file__).parents[1] / "scripts" / "stream_lag.py")
stream_lag = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(stream_lag)


@pytest.fixture(scope="session")
def shared() -> Path:
    """../shared/data, or skip the test where it is absent."""
    if not DATA.is_dir():
        pytest.skip(f"real data not found at {DATA}")
    return DATA


@pytest.fixture(scope="session")
def clip() -> Path:
    """A short clip with one face in every frame (72 frames): ../shared/data's single_face.mp4, or the same clip in
    samples/ where ../shared is absent."""
    shared_clip = DATA / "videos" / "single_face.mp4"
    return shared_clip if shared_clip.is_file() else Path(__file__).parents[1] / "samples" / "single_face.mp4"


def build_tiny_model(path: Path, seed: int = 2) -> Path:
    """A small random CNN (1x48x48 -> 7 softmax probabilities) exported to ONNX with a dynamic batch axis and
    the emocam contract in its metadata."""
    import onnx
    import torch
    from torch import nn

    torch.manual_seed(seed)
    # The normalised features make the random answer depend on the face (it flickers like a real model's).
    net = nn.Sequential(
        nn.Conv2d(1, 8, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.LayerNorm(64, elementwise_affine=False),
        nn.Linear(64, len(CLASSES), bias=False), nn.Softmax(dim=1),
    ).eval()
    with torch.no_grad():
        net[-2].weight *= 4.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, torch.zeros(1, 1, 48, 48), str(path), input_names=["input"], output_names=["probs"],
                          dynamic_axes={"input": {0: "batch"}, "probs": {0: "batch"}}, dynamo=False)
    model = onnx.load(str(path))
    contract = ModelContract(CLASSES, Preprocess(size=48, channels=1, mean=0.5, std=0.5), {"output": "probs"})
    model.metadata_props.add(key=METADATA_KEY, value=contract.to_json())
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path to the tiny fixture model."""
    return build_tiny_model(tmp_path_factory.mktemp("model") / "tiny.onnx")


@pytest.fixture(scope="session", autouse=True)
def emocam_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Decoded datasets go to a folder of this test run ($EMOCAM_CACHE, which the commands run here inherit), never
    to the user's ~/.cache/emocam."""
    folder = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EMOCAM_CACHE", str(folder))
        yield folder


PROGRAMS = {"emocam": "emocam.cli", "emotrain": "emocam.train.cli"}


def run_command(program: str, *args: object, env: dict | None = None, cwd: Path | None = None,
                timeout: float = 300) -> subprocess.CompletedProcess:
    """``emocam`` or ``emotrain`` in a fresh interpreter, as the installed scripts run: for what only a process shows
    (signals, pipes, descriptors, native libraries' output)."""
    return subprocess.run([sys.executable, "-m", PROGRAMS[program], *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=None if env is None else {**os.environ, **env}, cwd=cwd)


@dataclass
class Ran:
    """What a command run in this process did: its exit code and what it printed."""

    returncode: int
    stdout: str
    stderr: str


def run_here(program: str, *args: object, cwd: Path | None = None) -> Ran:
    """``emocam`` or ``emotrain`` run in this process through the ``run`` their scripts call (without the scripts'
    silencing of native libraries and their signal handlers): the same exit code and lines, no interpreter start."""
    out, err = io.StringIO(), io.StringIO()
    before = Path.cwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = importlib.import_module(PROGRAMS[program]).run([str(a) for a in args])
    finally:
        os.chdir(before)
    return Ran(code, out.getvalue(), err.getvalue())


def says(result: subprocess.CompletedProcess | Ran, message: str, code: int | None = 2, program: str = "emocam",
         alone: bool = False) -> None:
    """The run ended with ``code`` (None: any but 0) and one error line containing ``message``, and no traceback;
    with ``alone``, that line is all it printed on stderr."""
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith(f"{program}: error: ")]
    assert len(errors) == 1 and message in errors[0], result.stderr
    if alone:
        assert len(lines) == 1, result.stderr
    assert result.returncode != 0 if code is None else result.returncode == code, result.stderr


SAMPLE = Path(__file__).parents[1] / "samples" / "single_face.mp4"  # 72 frames, one face


def digest(path: Path) -> str:
    """The sha256 of a file's bytes."""
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


@pytest.fixture(scope="session")
def live_clip(clip: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample's faces as a 2 s H.264 clip, 320x180 at 30 fps with a key frame every half second, for a loopback
    live stream (stream_lag.LoopServer)."""
    return stream_lag.make_clip(tmp_path_factory.mktemp("stream") / "live.mp4", 320, 180, 30, 2.0, 15, source=clip)

