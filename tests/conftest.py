"""Shared fixtures: the real data folder and a tiny ONNX model that carries the emocam contract."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import pytest

from emocam.align import Preprocess
from emocam.contract import METADATA_KEY, ModelContract

CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
DATA = Path(__file__).parents[1].parent / "shared" / "data"

# The stream-lag benchmark's clip maker and loopback live server, shared with the stream tests.
_spec = importlib.util.spec_from_file_location("stream_lag", Path(__file__).parents[1] / "scripts" / "stream_lag.py")
stream_lag = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(stream_lag)


def emocam(capsys: pytest.CaptureFixture, *args: object) -> tuple[int, str, str]:
    """``emocam ARGS`` in this process (no new interpreter, no mediapipe import again): its exit code, standard
    output and standard error."""
    from emocam import cli

    code = cli.run([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


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


@pytest.fixture(scope="session")
def live_clip(clip: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample's faces as a 2 s H.264 clip, 320x180 at 30 fps with a key frame every half second, for a loopback
    live stream (stream_lag.LoopServer)."""
    return stream_lag.make_clip(tmp_path_factory.mktemp("stream") / "live.mp4", 320, 180, 30, 2.0, 15, source=clip)
