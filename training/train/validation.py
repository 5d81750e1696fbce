"""What early stopping watches: a validation part of the labelled rows when there are enough of
them, else the training loss; and the loss a model that ignores its input reaches (chance).

Few-shot fine-tuning must still work with 2 labelled samples per class: a validation split may
never take a class's last training samples, so a class gives one validation sample only when two
stay to train on; with fewer, no split is made and early stopping watches the training loss
(evaluated without dropout), which the result says.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
MIN_CLASS_SIZE = 3  # one validation sample and two to train on
MIN_REGRESSION_SIZE = 10  # below this a random validation part is too noisy to stop on


@dataclass(frozen=True)
class ValidationSplit:
    """Training and validation row indices (the same rows when the training loss is watched)."""

    train: IntArray
    val: IntArray
    validation: str  # what early stopping watched, said in the result

    @property
    def on_training_loss(self) -> bool:
        """Whether early stopping watches the training rows themselves."""
        return np.array_equal(self.train, self.val)


def class_split(names: Sequence[str], fraction: float, seed: int) -> ValidationSplit:
    """A stratified validation split: per class round(fraction × n), at least 1, leaving 2.

    Parameters
    ----------
    names:
        One label per labelled row.
    fraction:
        Share of each class for validation (before the bounds).
    seed:
        Seeds which rows are drawn.
    """
    counts = Counter(names)
    small = sorted((c, n) for c, n in counts.items() if n < MIN_CLASS_SIZE)
    if small:
        every = np.arange(len(names), dtype=np.int64)
        listed = ", ".join(f"{c!r} has {n}" for c, n in small[:5])
        return ValidationSplit(
            every,
            every,
            f"training loss: too few labelled samples for a validation split ({listed}; a "
            f"class needs {MIN_CLASS_SIZE})",
        )
    rng = np.random.default_rng(seed)
    labels = np.asarray(names)
    val: list[IntArray] = []
    for cls in sorted(counts):
        members = rng.permutation(np.flatnonzero(labels == cls))
        n_val = min(max(1, round(fraction * len(members))), len(members) - 2)
        val.append(members[:n_val])
    val_idx = np.sort(np.concatenate(val)).astype(np.int64)
    train_idx = np.setdiff1d(np.arange(len(names)), val_idx).astype(np.int64)
    how = f"validation split: {len(val_idx)} of {len(names)} labelled samples, stratified"
    return ValidationSplit(train_idx, val_idx, f"{how} (seed {seed})")


def random_split(n: int, fraction: float, seed: int) -> ValidationSplit:
    """A random validation part of n rows (regression), or the training loss below 10 rows."""
    every = np.arange(n, dtype=np.int64)
    if n < MIN_REGRESSION_SIZE:
        why = f"{n} labelled samples; a validation part needs {MIN_REGRESSION_SIZE}"
        return ValidationSplit(every, every, f"training loss: too few for a split ({why})")
    n_val = max(1, round(fraction * n))
    order = np.random.default_rng(seed).permutation(n)
    val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
    how = f"validation split: {n_val} of {n} labelled samples, at random (seed {seed})"
    return ValidationSplit(train_idx.astype(np.int64), val_idx.astype(np.int64), how)


def chance_cross_entropy(n_classes: int) -> float:
    """Class-weighted cross-entropy of a uniform prediction: log k, whatever the weights."""
    return math.log(n_classes)


def chance_mse(standardised_val: npt.NDArray[np.floating]) -> float:
    """Mean squared error of predicting the training mean (0 on the standardised scale)."""
    return float(np.mean(np.square(standardised_val)))
