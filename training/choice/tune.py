"""Hyperparameter search with Optuna: the fine-tuning settings, scored by inner cross-validation.

`tune` searches the strategy, learning rate, weight decay, head width and dropout, epochs and
patience, the encoder's learning-rate share and (with rows without a label or a domain column)
the domain adaptation and its weight, with a seeded TPE sampler. Each trial is scored on the
inner folds of the training samples only (`training.choice.inner`, the code the choice itself
uses), one fold at a time: the running mean is reported after each fold and the median pruner
stops a trial that falls below the earlier trials' median at the same fold. The best trial
becomes the candidate named ``tuned`` (`Tuned.candidate`), which the automatic choice then
compares with the strategies and the baselines (`training.publish.chosen`).
"""

from __future__ import annotations

import dataclasses
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
from contract.vocab import ADAPTATIONS, STRATEGIES, Adaptation, Strategy
from training.choice.candidates import TUNED, Candidate, Problem
from training.choice.inner import InnerCV, fold_scores, inner_folds
from training.nn.config import TrainConfig
from training.train import progress
from training.train.finetune import FinetuneOptions
from training.train.loop import cpu_threads_for

# The search scores trials on a shuffle of its own, not on the choice's folds: the tuned
# settings are the best of many tries, so on the folds they were picked on their score would
# carry every lucky split and lucky initialisation of the winning trial. Rescored by `choose`
# on other folds with other fits, that part of the optimism is gone; what remains (the
# settings were still picked on these samples) the selection's reason says. (Nested CV, a search
# per outer fold, would remove it and costs the search times the folds.) `inner_folds` repeats
# with seeds seed + r for r below the repeats INNER_SCORES asks for (at most a few dozen), so
# this offset never reuses one of the choice's shuffles.
FOLD_SEED_OFFSET = 1000

HEAD_WIDTHS = (0, 32, 64, 128)  # 0: a linear head
LR = (1e-4, 3e-2)
WEIGHT_DECAY = (1e-6, 1e-1)
DROPOUT = (0.0, 0.5)
ENCODER_LR_SCALE = (0.01, 1.0)
ADAPTATION_WEIGHT = (0.01, 3.0)

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
class Space:
    """What the search ranges over for one problem."""

    strategies: tuple[Strategy, ...]
    epochs: tuple[int, int]
    patience: tuple[int, int]
    adapt: bool  # rows without a label or a domain column: adaptation is searched too


@dataclass(frozen=True)
class Configuration:
    """One trial's settings: the methods, the optimisation and the head."""

    options: FinetuneOptions
    train_cfg: TrainConfig
    head_hidden: tuple[int, ...]
    head_dropout: float

    def candidate(self) -> Candidate:
        """The transfer candidate ``tuned``, training with its own head and optimisation."""
        return Candidate(
            TUNED,
            "transfer",
            options=self.options,
            train_cfg=self.train_cfg,
            head_hidden=self.head_hidden,
            head_dropout=self.head_dropout,
        )


@dataclass(frozen=True)
class Tuned(Configuration):
    """The best trial's settings and the card's record of the study."""

    record: Tuning


def space_for(problem: Problem, strategies: Sequence[Strategy] = STRATEGIES) -> Space:
    """The search space: the problem's epochs are the ceiling, a quarter of them the floor."""
    unknown = sorted(set(strategies) - set(STRATEGIES))
    if unknown or not strategies:
        raise ValueError(f"strategies must be among {STRATEGIES}, got {list(strategies)}")
    cfg = problem.train_cfg
    epochs = (max(1, cfg.epochs // 4), cfg.epochs)
    low = max(1, cfg.patience // 3)
    patience = (low, max(low, min(2 * cfg.patience, cfg.epochs)))
    adapt = problem.unlabelled is not None or problem.domain_column is not None
    return Space(tuple(strategies), epochs, patience, adapt)


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
    for params in _starting_points(problem, base, space) if first is None else first:
        study.enqueue_trial(params)

    def objective(trial: Trial) -> float:
        _suggest(trial, space)
        candidate = _configure(trial.params, problem, base).candidate()
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


def _suggest(trial: Trial, space: Space) -> None:
    strategy = trial.suggest_categorical("strategy", space.strategies)
    trial.suggest_float("lr", *LR, log=True)
    trial.suggest_float("weight_decay", *WEIGHT_DECAY, log=True)
    trial.suggest_categorical("head_width", HEAD_WIDTHS)
    trial.suggest_float("head_dropout", *DROPOUT)
    trial.suggest_int("epochs", *space.epochs, log=True)
    trial.suggest_int("patience", *space.patience)
    if strategy == "frozen":  # no encoder learning rate, and nothing to adapt
        return
    trial.suggest_float("encoder_lr_scale", *ENCODER_LR_SCALE, log=True)
    if space.adapt and trial.suggest_categorical("adaptation", ADAPTATIONS) != "none":
        trial.suggest_float("adaptation_weight", *ADAPTATION_WEIGHT, log=True)


def _configure(params: dict[str, Any], problem: Problem, base: FinetuneOptions) -> Configuration:
    """The settings a trial's parameters describe."""
    adaptation: Adaptation = params.get("adaptation", "none")
    options = dataclasses.replace(
        base,
        strategy=params["strategy"],
        encoder_lr_scale=params.get("encoder_lr_scale", base.encoder_lr_scale),
        adaptation=adaptation,
        adaptation_weight=params.get("adaptation_weight", base.adaptation_weight),
    )
    cfg = dataclasses.replace(
        problem.train_cfg,
        lr=params["lr"],
        weight_decay=params["weight_decay"],
        epochs=params["epochs"],
        patience=params["patience"],
    )
    width = int(params["head_width"])
    hidden = (width,) if width else ()
    return Configuration(options, cfg, hidden, float(params["head_dropout"]))


def _starting_points(problem: Problem, base: FinetuneOptions, space: Space) -> list[dict[str, Any]]:
    """The problem's own settings as the first trial, as far as the space holds them."""
    cfg = problem.train_cfg
    given: dict[str, Any] = {
        "strategy": base.strategy,
        "lr": cfg.lr,
        "weight_decay": cfg.weight_decay,
        "head_dropout": problem.head_dropout,
        "epochs": cfg.epochs,
        "patience": cfg.patience,
        "encoder_lr_scale": base.encoder_lr_scale,
        "adaptation": base.adaptation,
        "adaptation_weight": base.adaptation_weight,
    }
    if len(problem.head_hidden) <= 1:
        given["head_width"] = problem.head_hidden[0] if problem.head_hidden else 0
    bounds: dict[str, tuple[float, float]] = {
        "lr": LR,
        "weight_decay": WEIGHT_DECAY,
        "head_dropout": DROPOUT,
        "epochs": space.epochs,
        "patience": space.patience,
        "encoder_lr_scale": ENCODER_LR_SCALE,
        "adaptation_weight": ADAPTATION_WEIGHT,
    }
    choices: dict[str, Sequence[Any]] = {
        "strategy": space.strategies,
        "head_width": HEAD_WIDTHS,
        "adaptation": ADAPTATIONS,
    }
    inside = {
        k: v
        for k, v in given.items()
        if (k in bounds and bounds[k][0] <= v <= bounds[k][1]) or (k in choices and v in choices[k])
    }
    return [inside]


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
            f"Optuna: TPE sampler (seed {settings.seed}) over {', '.join(_names(space))}; "
            f"every trial scored by its mean {cv.metric} over the same folds, a shuffle of "
            f"their own, not the choice's: {cv.protocol}; median pruning from the second fold "
            f"on, after {settings.startup_trials} complete trials"
        ),
    )
    won = _configure(best.params, problem, base)
    return Tuned(won.options, won.train_cfg, won.head_hidden, won.head_dropout, record)


def _names(space: Space) -> list[str]:
    names = [
        f"strategy {'/'.join(space.strategies)}",
        "learning rate",
        "weight decay",
        f"head width {'/'.join(str(w) for w in HEAD_WIDTHS)}",
        "dropout",
        f"epochs {space.epochs[0]}-{space.epochs[1]}",
        f"patience {space.patience[0]}-{space.patience[1]}",
    ]
    if space.strategies != ("frozen",):
        names.append("encoder learning-rate share")
    if space.adapt and space.strategies != ("frozen",):
        names.append("adaptation none/dann/mmd and its weight")
    return names
