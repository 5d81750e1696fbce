"""Scoring a multi-task model task by task, each beside its classical baseline.

A task's head is scored on the held-out samples that have its label, beside the task's baseline
(logistic regression for a classification task, ridge for a regression one) fitted on the
training rows with its label, on the encoder's preprocessing; a task with fewer than `MIN_TEST`
such held-out samples is scored on `INNER_FOLDS` folds of the training samples instead. A task
whose baseline scores higher gets a warning (`warnings_for`), which the card carries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from contract.matrix import ExpressionMatrix
from contract.preprocess.pipeline import PreprocessPipeline
from contract.vocab import Task
from training.evaluation.baselines import baseline_proba, fit_baseline
from training.evaluation.metrics import classification_metrics, regression_metrics
from training.evaluation.splits import kfold_splits
from training.methods.options import FinetuneOptions
from training.nn.config import TrainConfig
from training.nn.heads import MultiTaskHead
from training.train import progress as watch
from training.train.apply import embed, labelled_rows
from training.train.multitask import FittedTask, TaskSpec, finetune_multitask

# the baseline each task's head is compared with, and the score that decides
BASELINE: dict[Task, str] = {"classification": "logistic", "regression": "ridge"}
HEADLINE: dict[Task, str] = {"classification": "balanced_accuracy", "regression": "r2"}
MIN_TEST = 2  # held-out rows with a task's label below which it is compared on inner folds
INNER_FOLDS = 3  # the inner cross-validation of those tasks (on the training samples only)
HELD_OUT, INNER_CV = "test", "inner_cv"


@torch.no_grad()
def task_outputs_of(
    encoder: nn.Module, head: MultiTaskHead, pipeline: PreprocessPipeline, m: ExpressionMatrix
) -> list[np.ndarray]:
    """Each task's outputs on `m`: class probabilities, or the predicted values (n,)."""
    head.eval()
    z = embed(encoder, pipeline, m)
    out = []
    for sub, kind in zip(head.heads, head.config.kinds, strict=True):
        values = sub(z)
        out.append(
            torch.softmax(values, 1).numpy() if kind == "classification" else values[:, 0].numpy()
        )
    return out


def score_tasks(
    encoder: nn.Module,
    head: MultiTaskHead,
    pipeline: PreprocessPipeline,
    train: ExpressionMatrix,
    test: ExpressionMatrix,
    tasks: Sequence[FittedTask],
    seed: int,
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """Each task's metrics on the `test` rows with its label, and its baseline's (fitted on the
    `train` rows with its label, on the encoder's preprocessing); tasks with fewer than
    `MIN_TEST` such rows are left out."""
    if test.shape[0] == 0:
        return {}, {}
    outputs = task_outputs_of(encoder, head, pipeline, test)
    X_train, X_test = pipeline.transform(train.X), pipeline.transform(test.X)
    ours: dict[str, dict[str, float]] = {}
    theirs: dict[str, dict[str, float]] = {}
    for task, out in zip(tasks, outputs, strict=True):
        column, kind = task.spec.column, task.spec.kind
        has, fit_rows = labelled_rows(test, column), labelled_rows(train, column)
        if has.sum() < MIN_TEST:
            continue
        truth = [test.labels(column)[i] for i in np.flatnonzero(has)]
        y_fit = [train.labels(column)[i] for i in np.flatnonzero(fit_rows)]
        name = BASELINE[kind]
        if kind == "classification":
            proba = out[has]
            predicted = [task.labels[k] for k in proba.argmax(1)]
            ours[column] = classification_metrics(truth, predicted, proba, task.labels)
            model = fit_baseline(name, X_train[fit_rows], y_fit, seed=seed)
            classes = [str(c) for c in model.classes_]
            p = baseline_proba(model, X_test[has])
            theirs[column] = classification_metrics(
                truth, [classes[k] for k in p.argmax(1)], p, classes
            )
        else:
            values = np.asarray(truth, dtype=np.float64)
            ours[column] = regression_metrics(values, out[has])
            model = fit_baseline(
                name, X_train[fit_rows], np.asarray(y_fit, np.float64), task=kind, seed=seed
            )
            theirs[column] = regression_metrics(values, model.predict(X_test[has]))
    return ours, theirs


def inner_scores(
    encoder: nn.Module,
    pipeline: PreprocessPipeline,
    train: ExpressionMatrix,
    tasks: Sequence[TaskSpec],
    train_cfg: TrainConfig,
    *,
    head_hidden: tuple[int, ...],
    head_dropout: float,
    options: FinetuneOptions,
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """Each task's mean scores, and its baseline's, over `INNER_FOLDS` random folds of the
    training samples (a multi-task model fitted on each fold's rest; folds where a task cannot
    be fitted or scored are left out of its mean)."""
    n = train.shape[0]
    if n < 2 * INNER_FOLDS:
        return {}, {}
    folds = kfold_splits(["all"] * n, INNER_FOLDS, train_cfg.seed)
    ours: dict[str, list[dict[str, float]]] = {}
    theirs: dict[str, list[dict[str, float]]] = {}
    with watch.inner_stages():
        for fit_idx, score_idx in folds:
            fit_rows, score_rows = train.take(fit_idx), train.take(score_idx)
            try:
                result = finetune_multitask(
                    encoder, pipeline, fit_rows, tasks, train_cfg, head_hidden=head_hidden,
                    head_dropout=head_dropout, strategy=options, progress=False,
                )  # fmt: skip
                o, t = score_tasks(
                    result.fit.encoder, result.head, pipeline, fit_rows, score_rows,
                    result.tasks, train_cfg.seed,
                )  # fmt: skip
            except ValueError:  # a fold without a task's label or second class
                continue
            for column, values in o.items():
                ours.setdefault(column, []).append(values)
                theirs.setdefault(column, []).append(t[column])

    def mean(runs: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, float]]:
        return {c: {k: float(np.mean([r[k] for r in rs])) for k in rs[0]} for c, rs in runs.items()}

    return mean(ours), mean(theirs)


def warnings_for(
    task: FittedTask,
    ours: Mapping[str, float] | None,
    theirs: Mapping[str, float] | None,
    where: str = HELD_OUT,
) -> list[str]:
    """The card's warning when the task's baseline scored higher (or could not be compared);
    `where` the scores come from: the held-out samples or the inner folds."""
    kind = task.spec.kind
    metric, name = HEADLINE[kind], BASELINE[kind]
    if ours is None or theirs is None:
        return [
            f"not compared with {name} regression: fewer than {MIN_TEST} held-out samples "
            f"have a {task.spec.column!r} label, and {INNER_FOLDS}-fold inner cross-validation "
            "of the training samples could not score it"
        ]
    on = (
        "on the held-out samples"
        if where == HELD_OUT
        else f"in {INNER_FOLDS}-fold inner cross-validation of the training samples"
    )
    if theirs[metric] > ours[metric]:
        return [
            f"{name} regression on the same training samples scored higher {on} ({metric} "
            f"{theirs[metric]:.3f} vs {ours[metric]:.3f} for this task's head)"
        ]
    return []
