"""Classification scores on the store's class codes (CLASS_NAMES order): the one confusion matrix of the
project, shared by `emogan synth-check` and the evaluation (torch-free)."""
from __future__ import annotations

import numpy as np

from pipeline.schema import CLASS_NAMES


def confusion(labels: np.ndarray, preds: np.ndarray, n_classes: int = len(CLASS_NAMES)) -> np.ndarray:
    """(n_classes, n_classes) int64 counts, rows = true class, columns = predicted; unlabeled (-1) rows skipped."""
    labels, preds = np.asarray(labels, np.int64).ravel(), np.asarray(preds, np.int64).ravel()
    ok = (labels >= 0) & (labels < n_classes) & (preds >= 0) & (preds < n_classes)
    m = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(m, (labels[ok], preds[ok]), 1)
    return m


def accuracy(conf: np.ndarray) -> float | None:
    """Fraction on the diagonal of a confusion matrix, in [0, 1]; None when it counts nothing."""
    n = int(np.asarray(conf).sum())
    return float(np.trace(conf) / n) if n else None


def per_class_accuracy(conf: np.ndarray, class_names: list[str] | tuple[str, ...] = CLASS_NAMES) -> dict[str, float | None]:
    """Recall of each class (its row's diagonal share); None for a class with no row."""
    c = np.asarray(conf)
    return {name: (float(c[i, i] / c[i].sum()) if c[i].sum() else None) for i, name in enumerate(class_names)}
