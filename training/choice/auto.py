"""The automatic choice: every candidate on the same inner folds, the best one published.

`choose` scores the candidates (`training.choice.inner`), takes the highest mean (ties keep the
earlier candidate) and says in words, from the scores alone, why it won and what a user must
know: when the caller named a strategy (`forced`), the named one is published and a warning says
if a classical baseline scored higher.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from contract.card import CandidateScore, Selection, Tuning
from contract.matrix import ExpressionMatrix
from training.choice.candidates import TUNED, Candidate, Problem, fit_proba
from training.choice.inner import InnerCV, fold_scores, inner_folds
from training.train import progress
from training.train.apply import stack_rows
from training.train.loop import cpu_threads_for

METRIC_WORDS = {"balanced_accuracy": "balanced accuracy", "r2": "R²"}


@dataclass(frozen=True)
class Choice:
    """The chosen candidate, the folds, and the card's record of the comparison."""

    winner: Candidate
    cv: InnerCV
    selection: Selection


def choose(
    problem: Problem,
    candidates: Sequence[Candidate],
    *,
    seed: int = 0,
    forced: str | None = None,
    on_candidate: Callable[[str, int, int], None] | None = None,
    tuning: Tuning | None = None,
) -> Choice:
    """Score every candidate on the same inner folds and pick the best (or `forced`).

    Parameters
    ----------
    problem:
        The labelled training samples and how to train on them.
    candidates:
        Distinct names; transfer strategies and baselines.
    seed:
        Seeds the folds and every fit.
    forced:
        A candidate's name to publish whatever the scores (the caller named it); the others
        are then a comparison, and a warning says if one of them scored higher.
    on_candidate:
        Called with (name, index, count) before each candidate is scored (progress).
    tuning:
        The search that made the candidate ``tuned``, recorded in the selection.
    """
    names = [c.name for c in candidates]
    if len(set(names)) != len(names) or not names:
        raise ValueError(f"candidates need distinct names, got {names}")
    if forced is not None and forced not in names:
        raise ValueError(f"forced candidate {forced!r} is not among {names}")
    cv = inner_folds(problem, seed)
    features = problem.features()
    scored: list[CandidateScore] = []
    # the job's loss curve is the published model's, not the inner fits': only cancellation
    # checks reach the watcher here
    with progress.inner_stages(), cpu_threads_for(problem.pipeline.n_genes):
        for i, candidate in enumerate(candidates):
            if on_candidate is not None:
                on_candidate(candidate.name, i, len(candidates))
            folds = fold_scores(candidate, problem, cv, seed=seed, features=features)
            scored.append(
                CandidateScore(
                    name=candidate.name,
                    kind=candidate.kind,
                    mean=float(np.mean(folds)),
                    sd=float(np.std(folds, ddof=1)) if len(folds) > 1 else 0.0,
                    folds=folds,
                )
            )
    best = max(scored, key=lambda s: s.mean)  # max keeps the first of equal means
    winner = next(s for s in scored if s.name == (forced or best.name))
    selection = Selection(
        metric=cv.metric,
        protocol=cv.protocol,
        candidates=scored,
        winner=winner.name,
        forced=forced is not None,
        reason=reason(winner, scored, cv.metric, forced=forced is not None, tuning=tuning),
        warnings=warnings(winner, scored, cv.metric),
        tuning=tuning,
    )
    return Choice(next(c for c in candidates if c.name == winner.name), cv, selection)


def reason(
    winner: CandidateScore,
    scored: Sequence[CandidateScore],
    metric: str,
    *,
    forced: bool,
    tuning: Tuning | None = None,
) -> str:
    """Why the winner won (or how the named strategy compared), from the fold scores."""
    words = METRIC_WORDS.get(metric, metric)
    n = len(winner.folds)
    named = (
        f"{TUNED} (the named strategy, its settings searched)"
        if winner.name == TUNED
        else winner.name
    )
    head = (
        f"{named} was named by the caller and scored {words} {_pm(winner)} over {n} inner folds"
        if forced
        else f"{winner.name} scored the highest mean {words}, {_pm(winner)} over {n} inner folds"
    )
    other_kind = "baseline" if winner.kind == "transfer" else "transfer"
    rivals = [s for s in scored if s.kind == other_kind]
    same = [s for s in scored if s.kind == winner.kind and s.name != winner.name]
    parts = [head]
    for group in (rivals, same):
        if group:
            rival = max(group, key=lambda s: s.mean)
            parts.append(_against(winner, rival))
    if winner.kind == "baseline" and not forced:
        parts.append(
            "no transfer strategy did better on these samples, so the classical model is "
            "published (served through its ONNX export like any head)"
        )
    if winner.name == TUNED and tuning is not None:
        parts.append(
            f"{TUNED}'s settings are the best of {tuning.complete + tuning.pruned} trials of a "
            f"search on these same training samples (on folds of its own, so these folds and "
            f"fits are fresh), which still makes its score optimistic: a margin within the "
            f"noise is no evidence that it beats the others"
        )
    return "; ".join(parts) + "."


def _against(winner: CandidateScore, rival: CandidateScore) -> str:
    """The winner against one rival: the mean difference, folds won, and whether it is noise."""
    diffs = np.asarray(winner.folds) - np.asarray(rival.folds)
    wins, n = int((diffs > 0).sum()), len(diffs)
    se = float(np.std(diffs, ddof=1) / math.sqrt(n)) if n > 1 else math.inf
    mean = float(diffs.mean())
    if abs(mean) <= 2 * se or not math.isfinite(se):
        how = "within the inner CV's noise (paired difference under 2 standard errors)"
    else:
        how = "a clear margin (over 2 standard errors of the paired difference)"
    side = "above" if mean >= 0 else "below"
    return (
        f"{abs(mean):.3f} {side} the best {rival.kind} {rival.name} ({_pm(rival)}), higher in "
        f"{wins} of {n} folds: {how}"
    )


def warnings(winner: CandidateScore, scored: Sequence[CandidateScore], metric: str) -> list[str]:
    """Every candidate that beat the published one on the same folds, by a paired margin."""
    words = METRIC_WORDS.get(metric, metric)
    out = []
    for other in sorted(scored, key=lambda s: -s.mean):
        if other.name == winner.name or other.mean <= winner.mean:
            continue
        if other.kind == "baseline":
            out.append(
                f"the classical baseline {other.name} scored {words} {_pm(other)} in inner "
                f"cross-validation, above the published {winner.name} ({_pm(winner)}); "
                f"strategy 'auto' would publish the better one"
            )
        else:
            out.append(
                f"{other.name} scored {words} {_pm(other)}, above the published {winner.name} "
                f"({_pm(winner)})"
            )
    return out


def _pm(s: CandidateScore) -> str:
    return f"{s.mean:.3f} ± {s.sd:.3f}"


def choose_and_predict(
    problem: Problem,
    test: ExpressionMatrix,
    candidates: Sequence[Candidate],
    *,
    seed: int = 0,
) -> tuple[Choice, list[str], npt.NDArray[np.float32]]:
    """What `strategy: auto` does, without publishing: choose on the problem's rows, refit the
    winner on all of them, and return the choice, the classes and `test`'s probabilities (for
    the evaluation protocol: the test rows take no part in the choice or the fit)."""
    choice = choose(problem, candidates, seed=seed)
    classes, proba = refit_predict(choice.winner, problem, test, seed=seed)
    return choice, classes, proba


def refit_predict(
    candidate: Candidate, problem: Problem, test: ExpressionMatrix, *, seed: int = 0
) -> tuple[list[str], npt.NDArray[np.float32]]:
    """Fit `candidate` on every row of the problem; the classes and `test`'s probabilities."""
    both = dataclasses.replace(problem, matrix=stack_rows(problem.matrix, test))
    n = problem.matrix.shape[0]
    train_idx = np.arange(n, dtype=np.int64)
    test_idx = np.arange(n, n + test.shape[0], dtype=np.int64)
    with cpu_threads_for(problem.pipeline.n_genes):
        return fit_proba(candidate, both, train_idx, test_idx, seed=seed)
