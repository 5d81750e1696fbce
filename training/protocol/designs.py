"""The protocols' split designs: each split's test rows and the training draws scored on them.

Few-shot: seeded repeats of a stratified test set, k labelled rows per class from the rest, then
stratified k-fold CV. Leave one batch out: each batch in turn is the test set, the other
batches the labelled rows. Every row the test set does not hold and the draw does not label is
a row without a label for that draw.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from contract.matrix import ExpressionMatrix
from training.evaluation.splits import (
    few_shot_sample,
    kfold_splits,
    leave_one_batch_out,
    stratified_split,
)
from training.protocol.config import ProtocolConfig
from training.train.apply import labelled_rows

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Split:
    """One test set and the training draws scored on it: (k, labelled rows, unlabelled rows)."""

    protocol: str
    index: int
    name: str
    test: IntArray
    draws: list[tuple[int | None, IntArray, IntArray]]
    classes: list[str]
    hidden: IntArray | None = None  # rows kept from pretraining besides the test rows

    @property
    def withheld(self) -> IntArray:
        """The rows pretraining and the baselines' preprocessing must not see."""
        return self.test if self.hidden is None else np.union1d(self.test, self.hidden)


def row_labels(matrix: ExpressionMatrix, column: str) -> list[str]:
    """Each row's label; "" for a row without one (it is never a class, only an unlabelled row)."""
    has = labelled_rows(matrix, column)
    return [c if h else "" for c, h in zip(matrix.labels(column), has, strict=True)]


def evaluated_classes(labels: list[str], min_cells: int) -> list[str]:
    """The classes with at least `min_cells` rows, sorted; ValueError when fewer than 2."""
    counts = Counter(c for c in labels if c)
    classes = sorted(c for c, n in counts.items() if n >= min_cells)
    if len(classes) < 2:
        raise ValueError(f"fewer than 2 classes have ≥ {min_cells} cells: {dict(counts)}")
    return classes


def batch_composition(
    batches: list[str], labels: list[str], classes: list[str]
) -> dict[str, dict[str, int]]:
    """Batch → evaluated class → rows, batches sorted (a batch with none of them is left out)."""
    table: dict[str, dict[str, int]] = {}
    for b, c in zip(batches, labels, strict=True):
        if c in classes:
            row = table.setdefault(b, {})
            row[c] = row.get(c, 0) + 1
    return dict(sorted(table.items()))


def few_shot_splits(
    labels: list[str], eligible: IntArray, cfg: ProtocolConfig, classes: list[str]
) -> list[Split]:
    """The few-shot repeats (every k of `cfg.shots` on each), then the k-fold CV splits."""
    sub = [labels[i] for i in eligible]
    every = np.arange(len(labels), dtype=np.int64)
    splits: list[Split] = []
    for r in range(cfg.repeats):
        seed = cfg.seed + r
        _, test_local = stratified_split(sub, cfg.test_fraction, seed)
        test_idx = eligible[test_local]
        pool = np.setdiff1d(eligible, test_idx)
        others = np.setdiff1d(every, test_idx)
        draws: list[tuple[int | None, IntArray, IntArray]] = []
        for k in cfg.shots:
            train = few_shot_sample(labels, k, pool, seed * 1000 + k)
            draws.append((k, train, np.setdiff1d(others, train)))
        splits.append(Split("few_shot", r, str(r), test_idx, draws, classes))
    if cfg.folds:
        for f, (train_local, test_local) in enumerate(kfold_splits(sub, cfg.folds, cfg.seed)):
            test_idx, train = eligible[test_local], eligible[train_local]
            rest = np.setdiff1d(np.setdiff1d(every, test_idx), train)
            splits.append(Split("cv", f, str(f), test_idx, [(None, train, rest)], classes))
    return splits


def lobo_splits(
    batches: list[str], labels: list[str], classes: list[str], cfg: ProtocolConfig
) -> list[Split]:
    """Each batch another batch shares a class with held out in turn, `cfg.repeats` times.

    A split is named for its held-out batch; ValueError when no batch can be held out.
    """
    splits: list[Split] = []
    folds = leave_one_batch_out(batches, labels, classes)
    column = np.asarray(batches, dtype=object)
    # each repeat holds every batch out once more, with other seeds (pretraining, training)
    for _ in range(max(1, cfg.repeats)):
        for name, train, test in folds:
            learnt = sorted({labels[j] for j in train})
            # the held-out batch's every row (other classes too), labels hidden
            held = np.flatnonzero(column == name).astype(np.int64)
            index = len(splits)
            # the whole held-out batch stays out of pretraining, its other classes' rows too
            draws: list[tuple[int | None, IntArray, IntArray]] = [(None, train, held)]
            splits.append(Split("lobo", index, name, test, draws, learnt, held))
    if not splits:
        raise ValueError("no batch can be held out: no other batch has its classes")
    return splits
