"""The hyperparameter search space: what a search ranges over and what a trial's draw means.

`space_for` bounds a problem's search (the strategies, epochs and patience; adaptation where
there are rows without a label or a domain column), `suggest` draws a trial's parameters,
`configure` turns them into the settings a candidate trains with, `starting_points` puts the
problem's own settings first and `describe` says the space in words for the card.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from optuna.trial import Trial

from contract.vocab import ADAPTATIONS, STRATEGIES, Adaptation, Strategy
from training.choice.candidates import TUNED, Candidate, Problem
from training.methods.options import FinetuneOptions
from training.nn.config import TrainConfig

HEAD_WIDTHS = (0, 32, 64, 128)  # 0: a linear head
LR = (1e-4, 3e-2)
WEIGHT_DECAY = (1e-6, 1e-1)
DROPOUT = (0.0, 0.5)
ENCODER_LR_SCALE = (0.01, 1.0)
ADAPTATION_WEIGHT = (0.01, 3.0)


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


def suggest(trial: Trial, space: Space) -> None:
    """Draw a trial's parameters from `space` (the encoder's and adaptation's only where used)."""
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


def configure(params: dict[str, Any], problem: Problem, base: FinetuneOptions) -> Configuration:
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


def starting_points(problem: Problem, base: FinetuneOptions, space: Space) -> list[dict[str, Any]]:
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


def describe(space: Space) -> list[str]:
    """What `space` searches, in words (the card's record of the study)."""
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
