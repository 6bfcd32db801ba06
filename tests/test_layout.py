"""The package as it installs and the way its parts depend on each other."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_a_non_editable_install_puts_only_emocam_at_the_top_with_its_model(tmp_path: Path) -> None:
    # Built from a copy, so that nothing is written into the working tree, and run from elsewhere, so that the
    # repository's own folders cannot be what gets imported.
    source = tmp_path / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".venv", ".git", "out", "runs", "build", "*.egg-info",
                                                                "__pycache__", ".pytest_cache", ".cache"))
    target = tmp_path / "site"
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                             "--target", str(target), str(source)], capture_output=True, text=True, timeout=600,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    top = sorted(p.name for p in target.iterdir() if p.name not in ("bin", "__pycache__"))
    assert [name for name in top if not name.endswith(".dist-info")] == ["emocam"], top
    probe = ("import emocam, emocam.train, emocam.engines; m = emocam.default_model(); "
             "print(emocam.__file__); print(m); print(m.is_file())")
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(target)})
    assert run.returncode == 0, run.stderr
    module, model, found = run.stdout.split()
    assert module.startswith(str(target)) and model.startswith(str(target / "emocam" / "engines")) and found == "True"


def imports(path: Path) -> set[str]:
    """Every module name a file imports, relative imports resolved against the emocam package."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = "emocam." * (node.level > 0) + (node.module or "")
            names.update([base] + [f"{base}.{a.name}" for a in node.names])
    return names


def test_the_live_side_never_imports_train() -> None:
    for path in sorted((ROOT / "realtime").glob("*.py")):
        bad = {n for n in imports(path) if n.startswith(("emocam.train", "train"))}
        assert not bad, f"{path.name} imports {bad}"
    probe = ("import sys, pkgutil, importlib, emocam; "
             "[importlib.import_module('emocam.' + m.name) for m in pkgutil.iter_modules(emocam.__path__) "
             " if m.name not in ('train', 'engines')]; "
             "print(sorted(n for n in sys.modules if n.startswith('emocam.train')))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stderr + result.stdout


def test_options_shared_by_commands_are_declared_once() -> None:
    live, train = (ROOT / "realtime" / "cli.py").read_text(), (ROOT / "train" / "cli.py").read_text()
    for option in ("--model", "--backend", "--device", "--batch-frames", "--detector", "--min-score", "--tau",
                   "--hysteresis", "--every-frame"):
        assert live.count(f'typer.Option("{option}"') == 1, f"{option} is not declared exactly once"
    assert "backend: BackendOpt" in train and "--backend" not in train  # emotrain evaluate takes emocam's
