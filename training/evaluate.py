"""Splits and metrics for judging classifiers honestly (stratified hold-outs, balanced scores)."""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, log_loss
from sklearn.model_selection import train_test_split

IntArray = npt.NDArray[np.int64]


def stratified_split(
    labels: Sequence[str], test_fraction: float, seed: int
) -> tuple[IntArray, IntArray]:
    """Indices (train, test), each class split in proportion; both sorted ascending.

    Parameters
    ----------
    labels:
        One label per sample.
    test_fraction:
        Share of samples in the test part, in (0, 1).
    seed:
        Seeds the shuffle; the same labels and seed give the same split.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    counts = Counter(labels)
    lonely = sorted(label for label, n in counts.items() if n < 2)
    if lonely:
        raise ValueError(f"classes with fewer than 2 samples cannot be split: {lonely}")
    index = np.arange(len(labels), dtype=np.int64)
    try:
        train, test = train_test_split(
            index, test_size=test_fraction, stratify=list(labels), random_state=seed
        )
    except ValueError as exc:
        raise ValueError(
            f"cannot split {len(labels)} samples of {len(counts)} classes with "
            f"test_fraction={test_fraction}: {exc}"
        ) from exc
    return np.sort(train), np.sort(test)


def classification_metrics(
    y_true: Sequence[str],
    y_pred: Sequence[str],
    proba: npt.NDArray[np.float32] | None = None,
    labels: Sequence[str] | None = None,
) -> dict[str, float]:
    """Balanced accuracy, macro-F1 and accuracy (plus log loss when `proba` is given).

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
        metrics = {
            "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
            "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
            "accuracy": float(accuracy_score(y_true, y_pred)),
        }
    if proba is not None:
        if labels is None:
            raise ValueError("labels are needed to read proba's columns")
        metrics["log_loss"] = float(log_loss(y_true, proba, labels=list(labels)))
    return metrics
