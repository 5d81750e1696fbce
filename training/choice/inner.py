"""Inner cross-validation on the training samples: the folds, and each candidate's fold scores.

Small data get folds they can afford: at most `INNER_FOLDS`, never more than the smallest class
has samples (2 per class gives 2-fold CV), repeated with new shuffles until there are as many
fold scores as `INNER_SCORES` asks for that many samples (the fewer the samples, the noisier
each fold's score, and the more of them a fair choice needs). No sample outside the given
training rows is ever seen.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from sklearn.metrics import balanced_accuracy_score, r2_score
from sklearn.model_selection import KFold, StratifiedKFold

from contract import defaults
from contract.vocab import Task
from training.choice.candidates import Candidate, Prediction, Problem, fit_predict

IntArray = npt.NDArray[np.int64]
Fold = tuple[IntArray, IntArray]


@dataclass(frozen=True)
class InnerCV:
    """The folds every candidate is scored on, and how they were made, in words."""

    folds: list[Fold]
    protocol: str
    metric: str


def metric_name(task: Task) -> str:
    """What the choice maximises: balanced accuracy, or R² for regression."""
    return "balanced_accuracy" if task == "classification" else "r2"


def inner_folds(problem: Problem, seed: int) -> InnerCV:
    """Stratified (classification) or shuffled k-fold splits of the problem's rows."""
    targets = problem.targets()
    n = problem.matrix.shape[0]
    if problem.task == "classification":
        assert isinstance(targets, list)
        smallest = min(Counter(targets).values())
        if smallest < 2 or len(set(targets)) < 2:
            raise ValueError(
                f"inner cross-validation needs ≥ 2 classes with ≥ 2 samples each; have "
                f"{dict(sorted(Counter(targets).items()))}"
            )
        k = min(defaults.INNER_FOLDS, smallest)
        how = "stratified"
    else:
        if n < 4:
            raise ValueError(f"inner cross-validation of a regression needs ≥ 4 samples, have {n}")
        k = min(defaults.INNER_FOLDS, n // 2)
        how = "shuffled"
    wanted = next((scores for below, scores in defaults.INNER_SCORES if n < below), k)
    repeats = -(-wanted // k)  # ceil: at least `wanted` scores
    folds: list[Fold] = []
    for r in range(repeats):
        if problem.task == "classification":
            splitter: StratifiedKFold | KFold = StratifiedKFold(
                k, shuffle=True, random_state=seed + r
            )
            pairs = splitter.split(np.zeros(n), targets)
        else:
            splitter = KFold(k, shuffle=True, random_state=seed + r)
            pairs = splitter.split(np.zeros(n))
        folds += [(np.asarray(a, np.int64), np.asarray(b, np.int64)) for a, b in pairs]
    times = f", repeated {repeats} times with new shuffles" if repeats > 1 else ""
    protocol = (
        f"{how} {k}-fold cross-validation of the {n} training samples{times} (seed {seed}); "
        f"every candidate trained and scored on the same folds, no held-out test sample used"
    )
    return InnerCV(folds, protocol, metric_name(problem.task))


def score(problem: Problem, truth_idx: IntArray, predicted: Prediction) -> float:
    """The metric of one fold's predictions."""
    targets = problem.targets()
    if problem.task == "classification":
        assert isinstance(targets, list)
        truth = [targets[i] for i in truth_idx]
        return float(balanced_accuracy_score(truth, list(predicted)))
    assert isinstance(targets, np.ndarray)
    return float(r2_score(targets[truth_idx], np.asarray(predicted, dtype=np.float64)))


def fold_scores(
    candidate: Candidate,
    problem: Problem,
    cv: InnerCV,
    *,
    seed: int,
    features: npt.NDArray[np.float32] | None = None,
    after_fold: Callable[[], None] | None = None,
) -> list[float]:
    """The candidate's score on each inner fold, trained on the others."""
    scores = []
    for i in range(len(cv.folds)):
        scores.append(fold_score(candidate, problem, cv, i, seed=seed, features=features))
        if after_fold is not None:
            after_fold()
    return scores


def fold_score(
    candidate: Candidate,
    problem: Problem,
    cv: InnerCV,
    fold: int,
    *,
    seed: int,
    features: npt.NDArray[np.float32] | None = None,
) -> float:
    """The candidate trained on every fold but `fold` (seeded ``seed + fold``), scored on it."""
    train_idx, test_idx = cv.folds[fold]
    predicted = fit_predict(
        candidate, problem, train_idx, test_idx, features=features, seed=seed + fold
    )
    return score(problem, test_idx, predicted)
