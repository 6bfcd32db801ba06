"""What a newcomer meets first: emocam --version, emotrain without the training extra, and the README's commands run
as pasted."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata

import pytest

from conftest import run_here, says


def test_version() -> None:
    ran = run_here("emocam", "--version")
    assert ran.returncode == 0 and ran.stdout == f"emocam {metadata.version('emocam')}\n"


# emotrain as it runs where the training extra is not installed: importing torch fails.
WITHOUT_TRAIN = """
import sys
for module in ("torch", "torchvision", "onnx"):
    sys.modules[module] = None  # "import torch" then fails as where it is not installed
from emocam.train.cli import main
sys.argv = ["emotrain", *sys.argv[1:]]
main()
"""


@pytest.mark.parametrize("args", [("evaluate", "model.onnx", "--folder", "faces"), ("cascade", "--fer", "fer.csv")])
def test_emotrain_without_the_training_extra_says_what_to_install(args: tuple[str, ...]) -> None:
    result = subprocess.run([sys.executable, "-c", WITHOUT_TRAIN, *args], capture_output=True, text=True, timeout=120)
    says(result, "torch is not installed; pip install 'emocam[train]' (or make setup-train in a checkout)",
         program="emotrain", alone=True)
