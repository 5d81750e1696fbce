"""Hyperparameter search with Optuna: the fine-tuning settings, scored by inner cross-validation.

`tune` searches the strategy, learning rate, weight decay, head width and dropout, epochs and
patience, the encoder's learning-rate share and (with rows without a label or a domain column)
the domain adaptation and its weight, with a seeded TPE sampler. Each trial is scored on the
inner folds of the training samples only (`training.choice.inner`, the code the choice itself
uses), one fold at a time: the running mean is reported after each fold and the median pruner
stops a trial that falls below the earlier trials' median at the same fold. The best trial
becomes the candidate named ``tuned`` (`Tuned.candidate`), which the automatic choice then
compares with the strategies and the baselines (`training.publish.chosen`). What is searched,
and what a trial's parameters mean, is `training.choice.space`.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, Trial, TrialState

from contract import defaults
from contract.card import Spread, Tuning
from contract.vocab import STRATEGIES, Strategy
from training.choice.candidates import Problem
from training.choice.inner import InnerCV, fold_scores, inner_folds
from training.choice.space import (
    Configuration,
    Space,
    configure,
    describe,
    space_for,
    starting_points,
    suggest,
)
from training.methods.options import FinetuneOptions
from training.nn.device import cpu_threads_for
from training.train import progress

# The search scores trials on a shuffle of its own, not on the choice's folds: the tuned
# settings are the best of many tries, so on the folds they were picked on their score would
# carry every lucky split and lucky initialisation of the winning trial. Rescored by `choose`
# on other folds with other fits, that part of the optimism is gone; what remains (the
# settings were still picked on these samples) the selection's reason says. (Nested CV, a search
# per outer fold, would remove it and costs the search times the folds.) `inner_folds` repeats
# with seeds seed + r for r below the repeats INNER_SCORES asks for (at most a few dozen), so
# this offset never reuses one of the choice's shuffles.
FOLD_SEED_OFFSET = 1000

# (trial number, "complete", "pruned" or "fail", its mean score or last running mean)
OnTrial = Callable[[int, str, float | None], None]


@dataclass(frozen=True)
class TuneSettings:
    """How long to search, and the sampler's seed.

    Parameters
    ----------
    trials:
        Trials to run, 1 to `contract.defaults.TUNE_MAX_TRIALS`.
    timeout_s:
        No trial starts after this many seconds (a running one finishes); None: no limit.
    seed:
        Seeds the TPE sampler; the fits use the problem's seed.
    startup_trials:
        Complete trials before the median pruner may stop one.
    """

    trials: int = defaults.TUNE_TRIALS
    timeout_s: float | None = None
    seed: int = 0
    startup_trials: int = defaults.TUNE_STARTUP_TRIALS

    def __post_init__(self) -> None:
        if not 1 <= self.trials <= defaults.TUNE_MAX_TRIALS:
            raise ValueError(
                f"trials must be between 1 and {defaults.TUNE_MAX_TRIALS}, got {self.trials}"
            )
        if self.timeout_s is not None and not (
            math.isfinite(self.timeout_s) and self.timeout_s > 0
        ):
            raise ValueError(f"timeout must be a positive number of seconds, got {self.timeout_s}")
        if self.startup_trials < 0:
            raise ValueError(f"startup_trials must be >= 0, got {self.startup_trials}")


@dataclass(frozen=True)
class Tuned(Configuration):
    """The best trial's settings and the card's record of the study."""

    record: Tuning


def tune(
    problem: Problem,
    settings: TuneSettings,
    base: FinetuneOptions | None = None,
    *,
    strategies: Sequence[Strategy] = STRATEGIES,
    first: Sequence[dict[str, Any]] | None = None,
    on_trial: OnTrial | None = None,
) -> Tuned:
    """Search the fine-tuning settings by inner cross-validation on the problem's rows.

    Parameters
    ----------
    problem:
        The labelled training samples (never a test sample) and the settings the search starts
        from: its head and optimisation are the first trial, its epochs the ceiling.
    settings:
        Trials, timeout and the sampler's seed.
    base:
        The device, semi-supervision and method weights every trial keeps.
    strategies:
        The strategies searched (one, when the caller named it).
    first:
        The settings of the first trials (default: the problem's own, so the search never
        misses the defaults); parameters outside the space are sampled instead.
    on_trial:
        Called as each trial ends (progress).
    """
    base = base or FinetuneOptions()
    space = space_for(problem, strategies)
    fit_seed = problem.train_cfg.seed
    cv = inner_folds(problem, fit_seed + FOLD_SEED_OFFSET)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our own progress, not optuna's INFO
    try:
        return _search(problem, settings, base, space, cv, first, on_trial)
    finally:
        optuna.logging.set_verbosity(verbosity)


def _search(
    problem: Problem,
    settings: TuneSettings,
    base: FinetuneOptions,
    space: Space,
    cv: InnerCV,
    first: Sequence[dict[str, Any]] | None,
    on_trial: OnTrial | None,
) -> Tuned:
    fit_seed = problem.train_cfg.seed
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=settings.seed),
        pruner=optuna.pruners.MedianPruner(
            n_startup_trials=settings.startup_trials, n_warmup_steps=1
        ),
    )
    for params in starting_points(problem, base, space) if first is None else first:
        study.enqueue_trial(params)

    def objective(trial: Trial) -> float:
        suggest(trial, space)
        candidate = configure(trial.params, problem, base).candidate()
        scores: list[float] = []
        for i, fold in enumerate(cv.folds):
            one = InnerCV([fold], cv.protocol, cv.metric)
            try:
                # fold i's fit is seeded as `choose` seeds it: seed + i
                scores += fold_scores(candidate, problem, one, seed=fit_seed + i)
            except RuntimeError as exc:
                # settings that diverge raise RuntimeError (so does running out of memory): the
                # trial fails (NaN) and the search goes on; anything else (a cancelled job, bad
                # data) ends it
                trial.set_user_attr("error", str(exc))
                return math.nan
            trial.report(float(np.mean(scores)), i)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return float(np.mean(scores))

    def ended(_: optuna.Study, trial: FrozenTrial) -> None:
        if on_trial is not None:
            value = trial.value if trial.state == TrialState.COMPLETE else _last(trial)
            on_trial(trial.number, trial.state.name.lower(), value)

    # the job's loss curve is the published model's: only cancellation checks reach it; small
    # models train on one CPU thread, as in the choice (`cpu_threads_for`)
    with progress.inner_stages(), cpu_threads_for(problem.pipeline.n_genes):
        study.optimize(
            objective, n_trials=settings.trials, timeout=settings.timeout_s, callbacks=[ended]
        )
    return _result(study, problem, base, space, settings, cv)


def _last(trial: FrozenTrial) -> float | None:
    steps = trial.intermediate_values
    return steps[max(steps)] if steps else None


def _result(
    study: optuna.Study,
    problem: Problem,
    base: FinetuneOptions,
    space: Space,
    settings: TuneSettings,
    cv: InnerCV,
) -> Tuned:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    pruned = study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))
    failed = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
    values = [float(t.value) for t in complete if t.value is not None]
    if not values:  # no trial is pruned before one completes: every one failed
        why = "; ".join(sorted({str(t.user_attrs.get("error")) for t in failed}))
        raise ValueError(f"the hyperparameter search completed no trial: {why or 'none ran'}")
    best = study.best_trial
    record = Tuning(
        trials=settings.trials,
        timeout_s=settings.timeout_s,
        seed=settings.seed,
        complete=len(values),
        pruned=len(pruned),
        failed=len(failed),
        best_value=float(study.best_value),
        best_params=dict(best.params),
        spread=Spread(min=min(values), median=float(statistics.median(values)), max=max(values)),
        protocol=(
            f"Optuna: TPE sampler (seed {settings.seed}) over {', '.join(describe(space))}; "
            f"every trial scored by its mean {cv.metric} over the same folds, a shuffle of "
            f"their own, not the choice's: {cv.protocol}; median pruning from the second fold "
            f"on, after {settings.startup_trials} complete trials"
        ),
    )
    won = configure(best.params, problem, base)
    return Tuned(won.options, won.train_cfg, won.head_hidden, won.head_dropout, record)
