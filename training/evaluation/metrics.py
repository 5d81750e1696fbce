"""Metrics for judging classifiers and regressors honestly (balanced scores, scikit-learn)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from scipy.stats import spearmanr
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    classification_report,
    confusion_matrix,
    f1_score,
    log_loss,
    mean_absolute_error,
    r2_score,
    roc_auc_score,
)

IntArray = npt.NDArray[np.int64]


def classification_metrics(
    y_true: Sequence[str],
    y_pred: Sequence[str],
    proba: npt.NDArray[np.float32] | None = None,
    labels: Sequence[str] | None = None,
) -> dict[str, float]:
    """Balanced accuracy, macro-F1 and accuracy (plus log loss and AUROC when `proba` is given).

    Parameters
    ----------
    y_true, y_pred:
        True and predicted label per sample.
    proba:
        Optional (n_samples, n_classes) class probabilities, columns in `labels` order.
    labels:
        All class names in the model's order; required with `proba`. Macro-F1 averages over
        the classes present in `y_true` or `y_pred`.
    """
    if len(y_true) != len(y_pred) or len(y_true) == 0:
        raise ValueError(
            f"need equally many true and predicted labels, got {len(y_true)}, {len(y_pred)}"
        )
    with warnings.catch_warnings():
        # a small test split may lack a class the model predicts; the score is still defined
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        # a held-out batch may hold one class: balanced accuracy is then that class's recall
        warnings.filterwarnings("ignore", message="A single label was found")
        metrics = {
            "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
            "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
            "accuracy": float(accuracy_score(y_true, y_pred)),
        }
    if proba is not None:
        if labels is None:
            raise ValueError("labels are needed to read proba's columns")
        metrics["log_loss"] = float(log_loss(y_true, proba, labels=list(labels)))
        auroc = _auroc(y_true, proba, list(labels))
        if auroc is not None:
            metrics["auroc"] = auroc
    return metrics


def _auroc(
    y_true: Sequence[str], proba: npt.NDArray[np.float32], labels: list[str]
) -> float | None:
    # AUROC needs both outcomes: binary when 2 model classes, else macro one-vs-rest over the
    # classes present in y_true (columns renormalised to them); undefined with one class
    present = [c for c in labels if c in set(y_true)]
    if len(present) < 2:
        return None
    if len(labels) == 2:
        return float(roc_auc_score([t == labels[1] for t in y_true], proba[:, 1]))
    cols = [labels.index(c) for c in present]
    sub = proba[:, cols] / np.clip(proba[:, cols].sum(axis=1, keepdims=True), 1e-12, None)
    if len(present) == 2:
        return float(roc_auc_score([t == present[1] for t in y_true], sub[:, 1]))
    return float(roc_auc_score(list(y_true), sub, multi_class="ovr", labels=present))


def predict_labels_from(proba: npt.NDArray[np.float32], labels: Sequence[str]) -> list[str]:
    """The most probable label per row of `proba` (columns in `labels` order)."""
    return [labels[i] for i in np.argmax(proba, axis=1)]


def per_class_report(
    y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str]
) -> dict[str, dict[str, float]]:
    """Precision, recall, F1 and support per class (scikit-learn's classification_report)."""
    report = classification_report(
        y_true, y_pred, labels=list(labels), output_dict=True, zero_division=0
    )
    return {c: {k: float(v) for k, v in report[c].items()} for c in labels}


def confusion(
    y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str]
) -> npt.NDArray[np.int64]:
    """Counts (true class × predicted class), rows and columns in `labels` order."""
    return np.asarray(confusion_matrix(y_true, y_pred, labels=list(labels)), dtype=np.int64)


def regression_metrics(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> dict[str, float]:
    """R², mean absolute error and Spearman rank correlation."""
    truth, pred = np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64)
    if truth.shape != pred.shape or truth.size < 2:
        raise ValueError(f"need ≥ 2 paired values, got {truth.shape} and {pred.shape}")
    return {
        "r2": float(r2_score(truth, pred)),
        "mae": float(mean_absolute_error(truth, pred)),
        "spearman": float(spearmanr(truth, pred).statistic),
    }
