"""The model's contract, read from its ONNX metadata, checked against its network."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

from conftest import CLASSES, leftovers, run_here, says
from emocam.contract import METADATA_KEY


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
    result = run_here("emocam", "--video", clip, "--model", model, "--no-display", "--csv", tmp_path / "f.csv")
    says(result, message)
    assert not (tmp_path / "f.csv").exists() and leftovers(tmp_path) == []
