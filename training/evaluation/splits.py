"""Splits that keep test samples out of every fit: stratified hold-outs, k-fold, few-shot draws."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from sklearn.model_selection import StratifiedKFold, train_test_split

from contract.card import TrainingData
from contract.matrix import ExpressionMatrix

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


def kfold_splits(labels: Sequence[str], n_folds: int, seed: int) -> list[tuple[IntArray, IntArray]]:
    """Stratified k-fold (train, test) index pairs; every sample is tested exactly once."""
    counts = Counter(labels)
    small = sorted(c for c, n in counts.items() if n < n_folds)
    if small:
        raise ValueError(
            f"classes with fewer than {n_folds} samples cannot be {n_folds}-folded: {small}"
        )
    folds = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    index = np.zeros(len(labels))
    return [
        (np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64))
        for a, b in folds.split(index, list(labels))
    ]


def few_shot_sample(labels: Sequence[str], k: int, pool: npt.ArrayLike, seed: int) -> IntArray:
    """k random indices per class, drawn from `pool` (indices into `labels`), sorted.

    Parameters
    ----------
    labels:
        One label per sample.
    k:
        Labelled samples per class.
    pool:
        Candidate indices; every class present in it must have at least k of them.
    seed:
        Seeds the draw.
    """
    rng = np.random.default_rng(seed)
    candidates = np.asarray(pool, dtype=np.int64)
    chosen: list[IntArray] = []
    for cls in sorted({labels[i] for i in candidates}):
        members = candidates[[labels[i] == cls for i in candidates]]
        if len(members) < k:
            raise ValueError(
                f"class {cls!r} has {len(members)} samples in the pool, fewer than k={k}"
            )
        chosen.append(rng.choice(members, size=k, replace=False))
    return np.sort(np.concatenate(chosen))


@dataclass(frozen=True)
class Dataset:
    """A named matrix and the samples held out of all training (the test split)."""

    name: str
    matrix: ExpressionMatrix
    test_idx: npt.NDArray[np.int64]
    protocol: str

    @property
    def train(self) -> ExpressionMatrix:
        """The samples used for fitting."""
        return self.matrix.take(np.setdiff1d(np.arange(self.matrix.shape[0]), self.test_idx))

    @property
    def test(self) -> ExpressionMatrix:
        """The held-out samples (possibly none)."""
        return self.matrix.take(self.test_idx)

    def training_data(self, label_column: str | None) -> TrainingData:
        """The card's description of this data (fingerprint and size of the whole matrix)."""
        return TrainingData(
            name=self.name,
            fingerprint=self.matrix.fingerprint(),
            n_samples=self.matrix.shape[0],
            n_genes=self.matrix.shape[1],
            label_column=label_column,
            heldout_sample_ids=self.test.sample_ids,
        )


def hold_out(
    name: str,
    matrix: ExpressionMatrix,
    *,
    test_fraction: float,
    seed: int,
    stratify_by: str | None,
    min_class: int = 0,
) -> Dataset:
    """Split off a test part: stratified by an obs column if given, else at random; 0 keeps all.

    With `stratify_by`, a class of fewer than `min_class` samples keeps every sample for
    training: then nothing is held out, and the protocol says why.
    """
    n = matrix.shape[0]
    none = np.zeros(0, dtype=np.int64)
    if test_fraction == 0:
        return Dataset(name, matrix, none, "no samples held out")
    if stratify_by is not None and min_class:
        labels = matrix.labels(stratify_by)
        counts = Counter(labels)
        small = sorted(c for c, k in counts.items() if k < min_class)
        if small:
            return _hold_out_large(name, matrix, labels, small, test_fraction, seed, min_class)
    if stratify_by is not None:
        _, test_idx = stratified_split(matrix.labels(stratify_by), test_fraction, seed)
        how = f"stratified by {stratify_by}"
    else:
        rng = np.random.default_rng(seed)
        test_idx = np.sort(rng.permutation(n)[: max(1, round(test_fraction * n))]).astype(np.int64)
        how = "at random"
    protocol = f"{len(test_idx)} of {n} samples ({test_fraction:.0%}, {how}, seed {seed}) held out"
    return Dataset(name, matrix, test_idx, protocol)


def _hold_out_large(
    name: str,
    matrix: ExpressionMatrix,
    labels: list[str],
    small: list[str],
    test_fraction: float,
    seed: int,
    min_class: int,
) -> Dataset:
    """Hold out only from the classes with at least `min_class` samples; the small ones train
    whole (their samples are too few to spare), and the protocol names them."""
    counts = Counter(labels)
    shown = ", ".join(f"{c!r} ({counts[c]})" for c in small[:5]) + (
        ", ..." if len(small) > 5 else ""
    )
    why = f"classes with fewer than {min_class} samples keep them all for training: {shown}"
    eligible = np.array([i for i, c in enumerate(labels) if counts[c] >= min_class], np.int64)
    if len(eligible) == 0 or len({labels[i] for i in eligible}) < 2:
        protocol = f"no samples held out ({why}); the scores are the inner cross-validation's"
        return Dataset(name, matrix, np.zeros(0, dtype=np.int64), protocol)
    _, local = stratified_split([labels[i] for i in eligible], test_fraction, seed)
    test_idx = np.sort(eligible[local])
    protocol = (
        f"{len(test_idx)} of {len(labels)} samples ({test_fraction:.0%} of each larger class, "
        f"stratified, seed {seed}) held out; {why}"
    )
    return Dataset(name, matrix, test_idx, protocol)


def leave_one_batch_out(
    batches: Sequence[str], labels: Sequence[str], classes: Sequence[str]
) -> list[tuple[str, IntArray, IntArray]]:
    """(held-out batch, training rows, test rows) per batch, over the rows of `classes` only.

    The training rows are the other batches' rows; the test rows are the held-out batch's rows
    of a class the training rows hold (a class no other batch has cannot be learnt). A batch
    with no such row is left out. Needs two batches or more.
    """
    if len(batches) != len(labels):
        raise ValueError(f"{len(batches)} batch values but {len(labels)} labels")
    names = sorted(set(batches))
    if len(names) < 2:
        raise ValueError(f"leave-one-batch-out needs two batches or more, got {names}")
    wanted = set(classes)
    batch, label = np.asarray(batches, dtype=object), np.asarray(labels, dtype=object)
    kept = np.array([c in wanted for c in labels], dtype=bool)
    out = []
    for name in names:
        train = np.flatnonzero(kept & (batch != name)).astype(np.int64)
        learnt = set(label[train])
        test = np.flatnonzero(
            kept & (batch == name) & np.array([c in learnt for c in labels], dtype=bool)
        ).astype(np.int64)
        if len(test) and len(learnt) >= 2:
            out.append((str(name), train, test))
    return out
