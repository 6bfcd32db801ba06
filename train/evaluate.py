"""Score an exported model on a FER-2013 split or a labelled image folder, as the live side would run it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from emocam.align import to_tensor
from emocam.backends import open_backend
from emocam.contract import read_contract
from emocam.outputs import Staged
from emocam.reading import FaceReading

from .data import CLASSES, FER_USAGES, DataError, FaceSet, prepare_all, read_fer_csv, read_fer_folders
from .metrics import scores
from .targets import TARGET_READING, describe, load_target


def fer_split(fer: Path, split: str, pre) -> FaceSet:
    """One FER-2013 split ('Training', 'PublicTest', 'PrivateTest'; 'train' or 'test' for the folder layout)."""
    fer = Path(fer)
    splits = ("train", "test") if fer.is_dir() else FER_USAGES
    if split not in splits:
        raise DataError(f"unknown FER-2013 split '{split}' for {fer}; choose one of {', '.join(splits)}")
    if fer.is_dir():
        return read_fer_folders(fer, pre)[split]
    images, labels, usage = read_fer_csv(fer)
    keep = usage == FER_USAGES.index(split)
    if not keep.any():
        raise DataError(f"{fer} has no {split} rows; choose another --split")
    return FaceSet(prepare_all(images[keep], pre), labels[keep], f"fer2013/{split}")


def evaluate_model(model: Path, faces: FaceSet, backend: str = "onnxruntime", batch: int = 256) -> dict:
    """Accuracy, mean per-class recall, per-class recall and confusion matrix of ``model`` on ``faces``."""
    engine = open_backend(model, backend, threads=0)
    if tuple(engine.contract.classes) != CLASSES:
        raise DataError(f"{model} predicts {', '.join(engine.contract.classes)}; evaluation expects {', '.join(CLASSES)}")
    probs = np.concatenate([engine.predict(to_tensor(faces.images[i:i + batch], engine.contract.pre))
                            for i in range(0, len(faces), batch)])
    return {"model": str(model), "data": faces.name, **scores(faces.labels, probs.argmax(1), passed=faces.passed)}


def load_for(model: Path, fer: Path | None, split: str, folder: Path | None,
             reading: str | FaceReading = TARGET_READING) -> FaceSet:
    """The evaluation faces, preprocessed with the model's own contract; a folder's faces read as ``reading`` says
    (FER-2013's are already cropped)."""
    pre = read_contract(model).pre
    if folder is not None:
        faces, report = load_target(folder, pre, reading)
        describe(report, folder)
        return faces
    if fer is None:
        raise DataError("give --fer (with --split) or --folder")
    return fer_split(fer, split, pre)


def plot_confusion(result: dict, out: Path) -> Path:
    """Draw the confusion matrix, rows normalised to recall, counts in the cells."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.array(result["confusion"], dtype=np.float64)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(6, 5.2))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(CLASSES)):
        for j in range(len(CLASSES)):
            ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=8,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(CLASSES)), CLASSES, rotation=45, ha="right")
    ax.set_yticks(range(len(CLASSES)), CLASSES)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{result['data']}: accuracy {result['accuracy']:.3f}, mean recall {result['mean_recall']:.3f}")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def result_files(out: Path) -> tuple[Path, Path]:
    """The files ``write_result`` writes for ``out``: OUT.json and OUT.png."""
    return Path(out).with_suffix(".json"), Path(out).with_suffix(".png")


def write_result(result: dict, out: Path) -> None:
    """``out``.json and the confusion matrix as ``out``.png, each written whole or not at all."""
    json_path, png_path = result_files(out)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    Staged(json_path).fill(lambda path: path.write_text(json.dumps(result, indent=1)))
    Staged(png_path).fill(lambda path: plot_confusion(result, path))


def markdown_table(results: list[Path]) -> str:
    """Rows by scheme (the file name before its last '-'), columns by test set: accuracy / mean recall,
    then per-class recall."""
    rows: dict[str, dict[str, dict]] = {}
    for path in results:
        scheme, _, test = Path(path).stem.rpartition("-")
        rows.setdefault(scheme, {})[test] = json.loads(Path(path).read_text())
    tests = list(dict.fromkeys(t for r in rows.values() for t in r))
    names = {t: next(r[t]["data"] for r in rows.values() if t in r) for t in tests}
    head = "| scheme | " + " | ".join(f"{names[t]} acc | {names[t]} mean recall" for t in tests) + " |"
    lines = [head, "|---" * (1 + 2 * len(tests)) + "|"]
    for scheme, r in rows.items():
        cells = [f"{r[t]['accuracy']:.3f} | {r[t]['mean_recall']:.3f}" if t in r else "- | -" for t in tests]
        lines.append(f"| {scheme} | " + " | ".join(cells) + " |")
    for t in tests:
        lines += ["", f"Per-class recall on {names[t]}:", "",
                  "| scheme | " + " | ".join(CLASSES) + " |", "|---" * (1 + len(CLASSES)) + "|"]
        for scheme, r in rows.items():
            if t in r:
                rec = r[t]["recall"]
                lines.append(f"| {scheme} | " + " | ".join("-" if rec[c] is None else f"{rec[c]:.2f}" for c in CLASSES) + " |")
    return "\n".join(lines)
