"""The methods that run a job's own machinery on a split's training rows: the automatic choice
(`strategy: auto`) and the hyperparameter search (`tune`), each refitted and scored on the test
rows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from training.methods.options import FinetuneOptions
from training.train import defaults

if TYPE_CHECKING:
    from training.protocol.methods import Fitted, Inputs

Proba = npt.NDArray[np.float32]


def _problem(inputs: Inputs) -> Any:
    """The split's training rows as a job's choice sees them: the encoder's panel, the default
    head, the split's fine-tuning settings."""
    from training.choice.candidates import Problem

    rows = inputs.encoded
    return Problem(
        matrix=rows.train,
        label_column=inputs.label_column,
        task="classification",
        encoder=inputs.encoder,
        latent=inputs.latent,
        pipeline=rows.pipeline,
        head_hidden=defaults.HEAD_HIDDEN,
        head_dropout=defaults.HEAD_DROPOUT,
        train_cfg=inputs.finetune,
    )


def _in_class_order(inputs: Inputs, seen: list[str], proba: Proba) -> Proba:
    """Probabilities with one column per split class (zero for a class the fit never saw)."""
    out = np.zeros((proba.shape[0], len(inputs.classes)), dtype=np.float32)
    for j, name in enumerate(seen):
        out[:, inputs.classes.index(name)] = proba[:, j]
    return out


def auto(inputs: Inputs) -> Fitted:
    """What a job does by default (`strategy: auto`): inner CV on the split's training rows over
    the default candidates on the encoder's panel, the winner refitted; no attribution (the
    winner, hence the model, differs from split to split)."""
    from training.choice.auto import choose_and_predict
    from training.choice.candidates import default_candidates

    base = FinetuneOptions(device=inputs.device)
    pool = default_candidates("classification", base, unlabelled=False, domains=False)
    test = inputs.encoded.test
    _, seen, proba = choose_and_predict(_problem(inputs), test, pool, seed=inputs.finetune.seed)
    return _in_class_order(inputs, seen, proba), lambda _: None


def tuned(inputs: Inputs) -> Fitted:
    """What a job with `tune: {trials: TUNE_TRIALS}` searches before its choice: an Optuna study
    over strategy, learning rates, weight decay, head and epochs by inner CV on the split's
    training rows only, its best settings refitted on all of them (the transfer model alone,
    without the choice against the baselines, so the report shows what tuning itself gains)."""
    from contract import defaults as shared
    from training.choice.auto import refit_predict
    from training.choice.tune import TuneSettings, tune

    problem = _problem(inputs)
    seed = inputs.finetune.seed
    base = FinetuneOptions(device=inputs.device)
    tuned = tune(problem, TuneSettings(trials=shared.TUNE_TRIALS, seed=seed), base)
    seen, proba = refit_predict(tuned.candidate(), problem, inputs.encoded.test, seed=seed)
    return _in_class_order(inputs, seen, proba), lambda _: None
