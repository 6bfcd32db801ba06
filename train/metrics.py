"""The figures evaluation reports: accuracy, mean per-class recall, per-class recall and the confusion matrix."""

from __future__ import annotations

import numpy as np

from .data import CLASSES


def scores(labels: np.ndarray, pred: np.ndarray, k: int = len(CLASSES), passed: np.ndarray | None = None) -> dict:
    """Accuracy, mean per-class recall (over classes present), per-class recall and the confusion matrix.

    ``passed``: which faces the quality gate labels; the others count as wrong (coverage is the share that passed)
    and stay out of the confusion matrix."""
    passed = np.ones(len(labels), bool) if passed is None else np.asarray(passed, bool)
    cm = np.zeros((k, k), np.int64)
    np.add.at(cm, (labels[passed], pred[passed]), 1)
    support = np.bincount(labels, minlength=k)
    recall = np.where(support > 0, np.diag(cm) / np.maximum(support, 1), np.nan)
    right = (labels == pred) & passed
    return {"n": int(len(labels)), "accuracy": float(right.mean()) if len(labels) else float("nan"),
            "coverage": float(passed.mean()) if len(labels) else float("nan"), "gated": int((~passed).sum()),
            "mean_recall": float(np.nanmean(recall)),
            "recall": {c: (None if np.isnan(r) else float(r)) for c, r in zip(CLASSES, recall)},
            "confusion": cm.tolist()}
