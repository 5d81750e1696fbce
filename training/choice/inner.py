"""Inner cross-validation on the training samples: the folds, and each candidate's fold scores.

Small data get folds they can afford: at most `INNER_FOLDS`, never more than the smallest class
has samples (2 per class gives 2-fold CV), repeated with new shuffles until there are as many
fold scores as `INNER_SCORES` asks for that many samples (the fewer the samples, the noisier
each fold's score, and the more of them a fair choice needs). No sample outside the given
training rows is ever seen.

`candidate_scores` fits the candidates × folds in worker processes when training runs on the CPU
and there are cores to share (`inner_workers`): every fit is seeded by its fold alone and trains
on one thread either way, so the scores are the same as one after another.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from joblib import Parallel, delayed, parallel_config
from sklearn.metrics import balanced_accuracy_score, r2_score
from sklearn.model_selection import KFold, StratifiedKFold

from contract import defaults
from contract.vocab import Task
from training.choice.candidates import Candidate, Prediction, Problem, fit_predict
from training.train import progress
from training.train.loop import cpu_threads_for, resolve_device

# a worker process holds its own torch (~0.3 GB): more than this many buy little on small data
MAX_INNER_WORKERS = 8

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
    for i, (train_idx, test_idx) in enumerate(cv.folds):
        predicted = fit_predict(
            candidate, problem, train_idx, test_idx, features=features, seed=seed + i
        )
        scores.append(score(problem, test_idx, predicted))
        if after_fold is not None:
            after_fold()
    return scores


def inner_workers(candidates: Sequence[Candidate], n_fits: int, asked: int = 0) -> int:
    """How many processes fit the inner folds: `asked`, or with 0 one per core this process may
    use (at most `MAX_INNER_WORKERS`); never more than there are fits; 1 when a candidate trains
    on a GPU (the device is shared, and each process would hold a CUDA context of its own)."""
    if asked < 0:
        raise ValueError(f"workers must be ≥ 0 (0: one per core), got {asked}")
    on_gpu = [
        c.name
        for c in candidates
        if c.options is not None and resolve_device(c.options.device).type != "cpu"
    ]
    if on_gpu:
        return 1
    wanted = asked or min(len(os.sched_getaffinity(0)), MAX_INNER_WORKERS)
    return max(1, min(wanted, n_fits))


def candidate_scores(
    candidates: Sequence[Candidate],
    problem: Problem,
    cv: InnerCV,
    *,
    seed: int,
    features: npt.NDArray[np.float32] | None = None,
    on_candidate: Callable[[str, int, int], None] | None = None,
    workers: int = 0,
) -> list[list[float]]:
    """Every candidate's `fold_scores`, the fits spread over `inner_workers(…, workers)`
    processes.

    `on_candidate` hears (name, index, count) as each candidate's scoring starts (in parallel:
    as its first fold's score comes back). A training hook in effect (a job's progress and
    cancellation check) hears every epoch of every fit one after another; in parallel it hears
    each fit that comes back as one step (stage "<candidate> fold i of k", losses NaN), as the
    worker processes have no hook: a cancelled job stops when the fits in flight end.
    """
    fits = [(c, i) for c in range(len(candidates)) for i in range(len(cv.folds))]
    workers = inner_workers(candidates, len(fits), workers)
    if workers == 1:
        out = []
        for c, candidate in enumerate(candidates):
            if on_candidate is not None:
                on_candidate(candidate.name, c, len(candidates))
            out.append(fold_scores(candidate, problem, cv, seed=seed, features=features))
        return out
    scores: list[list[float]] = [[] for _ in candidates]
    hook = progress.current()
    # loky keeps its workers between calls (a later job reuses them, torch already imported)
    with parallel_config(backend="loky", n_jobs=workers, inner_max_num_threads=1):
        results = Parallel(return_as="generator")(
            delayed(_fold_score)(candidates[c], problem, cv.folds[i], seed + i, features)
            for c, i in fits
        )
        for done, ((c, i), value) in enumerate(zip(fits, results, strict=True)):
            if not scores[c] and on_candidate is not None:
                on_candidate(candidates[c].name, c, len(candidates))
            scores[c].append(value)
            if hook is not None:  # a fit, not an epoch, is the unit of progress here
                nan = float("nan")
                stage = f"{candidates[c].name} fold {i + 1} of {len(cv.folds)}"
                hook.epoch(stage, done, len(fits), nan, nan)
    return scores


def _fold_score(
    candidate: Candidate,
    problem: Problem,
    fold: Fold,
    seed: int,
    features: npt.NDArray[np.float32] | None,
) -> float:
    """One fit and its score, in a worker process (one torch thread, as in `choose`)."""
    train_idx, test_idx = fold
    with cpu_threads_for(problem.pipeline.n_genes):
        predicted = fit_predict(
            candidate, problem, train_idx, test_idx, features=features, seed=seed
        )
    return score(problem, test_idx, predicted)
