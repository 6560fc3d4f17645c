"""Classification metrics on integer labels: accuracy, per-class and macro F1, confusion matrix."""

from __future__ import annotations

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int = 10) -> np.ndarray:
    """(num_classes, num_classes) counts; rows are true labels, columns predictions."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return cm


def per_class_f1(cm: np.ndarray) -> np.ndarray:
    """F1 of each class; a class with no true and no predicted examples scores 0."""
    tp = np.diag(cm).astype(np.float64)
    denom = cm.sum(axis=0) + cm.sum(axis=1)
    return np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)


def macro_f1(cm: np.ndarray) -> float:
    """Unweighted mean of per-class F1 over the classes present in the true labels."""
    present = cm.sum(axis=1) > 0
    f1 = per_class_f1(cm)
    return float(f1[present].mean()) if present.any() else 0.0


def accuracy(cm: np.ndarray) -> float:
    total = cm.sum()
    return float(np.trace(cm) / total) if total else 0.0


def summarize(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int = 10) -> dict:
    """accuracy, f1 (macro), per_class_f1 and confusion_matrix as plain lists."""
    cm = confusion_matrix(y_true, y_pred, num_classes)
    return {
        "accuracy": accuracy(cm),
        "f1": macro_f1(cm),
        "per_class_f1": per_class_f1(cm).round(6).tolist(),
        "confusion_matrix": cm.tolist(),
    }
