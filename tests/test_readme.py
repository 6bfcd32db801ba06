"""The README as a newcomer pastes it: its fenced shell and Python blocks, in order, in a fresh copy of the checkout,
in the .venv that the README's own first command (make demo) creates there."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
# A fenced block: ```sh (run by bash, one shell for all of them) or ```python (run by the python then on PATH).
FENCE = re.compile(r"^```(sh|python)\n(.*?)^```$", re.S | re.M)


def readme_script(text: str) -> str:
    """The README's fenced blocks as one bash script that stops at the first command that fails."""
    parts = ["set -euo pipefail"]
    for kind, body in FENCE.findall(text):
        parts.append(body if kind == "sh" else f"python - <<'PYTHON'\n{body}PYTHON\n")
    return "\n".join(parts)


def checkout_copy(dest: Path) -> Path:
    """The checkout's files (tracked, and new ones git does not ignore) copied to ``dest``: no .venv, no outputs."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True)
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    for name in filter(None, listed.stdout.split("\0")):
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    return dest


def test_readme_script_keeps_the_blocks_in_order() -> None:
    script = readme_script((ROOT / "README.md").read_text())
    assert script.index("make demo") < script.index(". .venv/bin/activate") < script.index("import emocam")


@pytest.mark.slow
def test_the_readme_runs_as_pasted_in_a_fresh_checkout(tmp_path: Path) -> None:
    copy = checkout_copy(tmp_path / "emocam")
    # The user's shell: not this test's virtual environment, no display (the window is then skipped, said once).
    here = Path(os.environ.get("VIRTUAL_ENV", Path(sys.executable).parents[1]))
    path = [p for p in os.environ["PATH"].split(os.pathsep) if not Path(p).is_relative_to(here)]
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "DISPLAY", "WAYLAND_DISPLAY", "PYTHONPATH")}
    env["PATH"] = os.pathsep.join(path)
    result = subprocess.run(["bash", "-c", readme_script((ROOT / "README.md").read_text())], cwd=copy, env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-3000:])
    assert (copy / ".venv" / "bin" / "emocam").is_file()
    for name in ("single_face.csv", "single_face.mp4", "single_face.json", "single_face.png"):
        assert (copy / "out" / name).stat().st_size > 0
    assert "Outputs in out/" in result.stdout and ". .venv/bin/activate" in result.stdout  # make demo says what next
    assert (copy / "out" / "single_face_annotated.jpg").stat().st_size > 0
    assert "face_id" in result.stdout  # the DataFrame the last Python example prints
