"""The package as it installs and the way its parts depend on each other."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


@pytest.mark.slow
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
    for path in sorted((ROOT / "realtime").rglob("*.py")):
        bad = {n for n in imports(path) if n.startswith(("emocam.train", "train"))}
        assert not bad, f"{path.name} imports {bad}"
    probe = ("import sys, pkgutil, importlib, emocam; "
             "[importlib.import_module(m.name) for m in pkgutil.walk_packages(emocam.__path__, 'emocam.') "
             " if not m.name.startswith(('emocam.train', 'emocam.engines'))]; "
             "print(sorted(n for n in sys.modules if n.startswith('emocam.train')))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stderr + result.stdout


def test_options_shared_by_commands_are_declared_once() -> None:
    live, train = (ROOT / "realtime" / "cli.py").read_text(), (ROOT / "train" / "cli.py").read_text()
    for option in ("--model", "--backend", "--device", "--batch-frames", "--reading", "--detector", "--min-score",
                   "--tau", "--hysteresis", "--every-frame"):
        assert live.count(f'typer.Option("{option}"') == 1, f"{option} is not declared exactly once"
    assert "backend: BackendOpt" in train and "--backend" not in train  # emotrain evaluate takes emocam's
    assert "reading: ReadingOpt" in train and "--reading" not in train


# Where each import name's files live.
FOLDERS = {"emocam": ROOT / "realtime", "emocam.train": ROOT / "train", "emocam.engines": ROOT / "engines"}


def module_files() -> dict[str, Path]:
    """Every module of the package (emocam, emocam.train, emocam.engines and their subpackages) by dotted name."""
    found = {}
    for package, folder in FOLDERS.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([package, *parts])] = path
    return found


def imported_modules(name: str, path: Path, modules: set[str]) -> set[str]:
    """The package's modules that module ``name`` imports anywhere in its file (inside functions too), relative
    imports resolved; importing a name from a package counts as importing the package's __init__."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def test_no_import_cycles_in_the_package() -> None:
    files = module_files()
    assert {"emocam.backends.base", "emocam.sources.live", "emocam.train.fit"} <= set(files)
    graph = {name: imported_modules(name, path, set(files)) for name, path in files.items()}
    # A cycle is a path from a module back to itself; depth-first from each module, remembering the path.
    cycles = set()

    def visit(node: str, path: list[str]) -> None:
        for nxt in graph[node]:
            if nxt == path[0]:
                cycles.add(" -> ".join(path + [nxt]))
            elif nxt not in path and nxt > path[0]:  # each cycle found once, from its smallest module
                visit(nxt, path + [nxt])

    for start in graph:
        visit(start, [start])
    assert not cycles, "import cycles:\n" + "\n".join(sorted(cycles))
