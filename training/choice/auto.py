"""The automatic choice: every candidate on the same inner folds, the simplest good one published.

`choose` scores the candidates (`training.choice.inner`) and publishes by the one-standard-error
rule (Breiman et al. 1984; Hastie, Tibshirani & Friedman, *Elements of Statistical Learning*
§7.10; glmnet's `lambda.1se`): among the candidates whose mean is within one standard error of
the best mean (the standard error of their paired fold differences), the simplest, classical
models before transfer strategies (`simplest_first`). On a few dozen samples the highest mean
is often luck: on pbmc68k_reduced at 5 cells per class, taking it published a random forest
whose test score was 0.03-0.10 below ridge's in 3 of 10 splits. The rule is what "transfer has
to earn its place" means here: a transfer model is published only where it beats every simpler
model by more than the inner CV's noise. `choose` then says in words, from the scores alone,
why the published model won and what a user must know: when the caller named a strategy
(`forced`), the named one is published and a warning names every candidate that scored higher.
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
from contract.vocab import STRATEGIES
from training.choice.candidates import TUNED, Candidate, Problem, fit_proba
from training.choice.inner import InnerCV, inner_folds
from training.choice.workers import score_all
from training.nn.device import cpu_threads_for
from training.train import progress
from training.train.apply import stack_rows

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
    workers: int | None = None,
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
    workers:
        Processes fitting the inner folds side by side (`training.choice.workers`); by default
        one per core, none on a GPU. The scores are the same for any number.
    """
    names = [c.name for c in candidates]
    if len(set(names)) != len(names) or not names:
        raise ValueError(f"candidates need distinct names, got {names}")
    if forced is not None and forced not in names:
        raise ValueError(f"forced candidate {forced!r} is not among {names}")
    cv = inner_folds(problem, seed)
    # the job's loss curve is the published model's, not the inner fits': their epochs reach
    # the watcher as inner stages
    with progress.inner_stages(), cpu_threads_for(problem.pipeline.n_genes):
        fold_lists = score_all(
            candidates, problem, cv, seed=seed, workers=workers, on_candidate=on_candidate
        )
    scored = [
        CandidateScore(
            name=candidate.name,
            kind=candidate.kind,
            mean=float(np.mean(folds)),
            sd=float(np.std(folds, ddof=1)) if len(folds) > 1 else 0.0,
            folds=folds,
        )
        for candidate, folds in zip(candidates, fold_lists, strict=True)
    ]
    order = simplest_first(candidates)
    winner = (
        next(s for s in scored if s.name == forced)
        if forced is not None
        else one_se_rule([next(s for s in scored if s.name == n) for n in order])
    )
    selection = Selection(
        metric=cv.metric,
        protocol=cv.protocol,
        candidates=scored,
        winner=winner.name,
        forced=forced is not None,
        reason=reason(winner, scored, cv.metric, forced=forced is not None, tuning=tuning),
        warnings=warnings(winner, scored, cv.metric) if forced is not None else [],
        tuning=tuning,
    )
    return Choice(next(c for c in candidates if c.name == winner.name), cv, selection)


# classical models by how strongly they are regularised (for the rule's "simplest"), then the
# ensembles and networks; `contract.vocab` has every baseline name, a test checks this covers it
BASELINES_SIMPLEST_FIRST = (
    "ridge", "lasso", "elastic_net", "logistic", "linear",
    "random_forest", "gradient_boosting", "mlp",
)  # fmt: skip


def simplest_first(candidates: Sequence[Candidate]) -> list[str]:
    """The candidates' names, simplest first: the baselines (`BASELINES_SIMPLEST_FIRST`), then
    the transfer strategies from the head alone to the whole network (`contract.vocab`'s
    order), plain before adapted or semi-supervised, the tuned candidate last."""

    def rank(c: Candidate) -> tuple[int, int, int]:
        if c.kind == "baseline":
            return (0, BASELINES_SIMPLEST_FIRST.index(c.baseline or c.name), 0)
        if c.name == TUNED or c.options is None:
            return (2, 0, 0)
        extras = (c.options.adaptation != "none") + (c.options.semi_supervised != "none")
        return (1, STRATEGIES.index(c.options.strategy), extras)

    return [c.name for c in sorted(candidates, key=rank)]  # stable: equal ranks keep their order


def one_se_rule(ranked: Sequence[CandidateScore]) -> CandidateScore:
    """The first of `ranked` (simplest first) within one standard error of the best mean that no
    simpler candidate out-scores.

    "Within": the best mean minus this one's is at most the standard error of their paired fold
    differences. "No simpler candidate out-scores it": without this a complex candidate just
    inside the band (a fine-tuned network) could be published over a simpler one just outside it
    with a higher mean. The best candidate always qualifies, so there is always a winner; with
    equal fold scores the simpler one wins.
    """
    best = max(ranked, key=lambda s: s.mean)
    for i, s in enumerate(ranked):
        within = best.mean - s.mean <= paired_se(best, s)
        if within and all(s.mean >= simpler.mean for simpler in ranked[:i]):
            return s
    return best


def paired_se(a: CandidateScore, b: CandidateScore) -> float:
    """The standard error of the mean of `a`'s fold scores minus `b`'s (0 with one fold)."""
    diffs = np.asarray(a.folds) - np.asarray(b.folds)
    return float(np.std(diffs, ddof=1) / math.sqrt(len(diffs))) if len(diffs) > 1 else 0.0


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
    best = max(scored, key=lambda s: s.mean)
    if forced:
        head = (
            f"{named} was named by the caller and scored {words} {_pm(winner)} over {n} inner folds"
        )
    elif winner.mean >= best.mean:
        head = f"{winner.name} scored the highest mean {words}, {_pm(winner)} over {n} inner folds"
    else:
        head = (
            f"{winner.name} ({words} {_pm(winner)} over {n} inner folds) is published by the "
            f"one-standard-error rule: {best.name} scored the highest mean ({_pm(best)}), "
            f"{best.mean - winner.mean:.3f} above it, within one standard error of their paired "
            f"difference ({paired_se(best, winner):.3f}), and {winner.name} is the simplest "
            f"candidate within that band that no simpler candidate out-scores (classical models "
            f"before transfer, the more strongly regularised first): on this many samples such "
            f"a margin is no evidence that the more complex model is better"
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
        better = any(s.kind == "transfer" and s.mean > winner.mean for s in scored)
        parts.append(
            (
                "no transfer strategy beat it by more than the inner CV's noise"
                if better
                else "no transfer strategy did better on these samples"
            )
            + ", so the classical model is published (served through its ONNX export like any "
            "head)"
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
    se = paired_se(winner, rival)
    mean = float(diffs.mean())
    if n < 2 or abs(mean) <= se:
        how = "within the inner CV's noise (under one standard error of the paired difference)"
    elif abs(mean) <= 2 * se:
        how = "weak evidence (one to two standard errors of the paired difference)"
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
