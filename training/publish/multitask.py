"""Fine-tune one encoder with a head per task and publish it as one multi-task version.

Shared by `genexfer train finetune --multi-task` and fine-tuning jobs with `tasks`. The named
strategy is published (the automatic choice is single-task); each task's head is then scored
on the held-out samples with that task's label beside a classical baseline fitted on the same
training rows (logistic regression for a classification task, ridge for a regression one) —
on inner folds of the training samples when too few held-out samples have the label — and the
card warns for every task the baseline beats: no lab is handed a model a logistic regression
beats without being told.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from contract.card import Metric, ModelTask, task_outputs
from contract.matrix import ExpressionMatrix
from contract.preprocess.pipeline import PreprocessPipeline
from contract.vocab import Task
from training.evaluation.baselines import baseline_proba, fit_baseline
from training.evaluation.metrics import classification_metrics, regression_metrics
from training.evaluation.splits import Dataset, kfold_splits
from training.export.card import CardInfo
from training.export.heads import export_multitask
from training.export.store import model_ref
from training.methods.options import FinetuneOptions
from training.nn.config import TrainConfig
from training.nn.heads import MultiTaskHead
from training.publish.parent import finetune_record, held_out_note, load_and_align
from training.train import progress as watch
from training.train.apply import embed, labelled_rows
from training.train.loop import History
from training.train.multitask import FittedTask, TaskSpec, finetune_multitask

# the baseline each task's head is compared with, and the score that decides
BASELINE: dict[Task, str] = {"classification": "logistic", "regression": "ridge"}
HEADLINE: dict[Task, str] = {"classification": "balanced_accuracy", "regression": "r2"}
MIN_TEST = 2  # held-out rows with a task's label below which it is compared on inner folds
INNER_FOLDS = 3  # the inner cross-validation of those tasks (on the training samples only)
HELD_OUT, INNER_CV = "test", "inner_cv"


@dataclass(frozen=True)
class MultitaskRun:
    """A published multi-task model, each task's held-out scores and its baseline's."""

    folder: Path
    tasks: list[ModelTask]
    history: History
    scores: dict[str, dict[str, float]]  # task → metric → value
    baseline_scores: dict[str, dict[str, float]]
    n_test: int
    n_missing_genes: int
    n_panel_genes: int


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


def multitask_and_export(
    dataset: Dataset,
    *,
    encoder_folder: Path,
    tasks: Sequence[TaskSpec],
    head_hidden: tuple[int, ...],
    head_dropout: float,
    train_cfg: TrainConfig,
    name: str,
    models_dir: Path,
    description: str,
    options: FinetuneOptions | None = None,
    progress: bool | None = None,
    job: str | None = None,
    unlabelled: ExpressionMatrix | None = None,
    domain_column: str | None = None,
    input_conversion: Mapping[str, Any] | None = None,
    n_missing_genes: int | None = None,
) -> MultitaskRun:
    """Load a published encoder, fine-tune it with a head per task, compare each task with its
    baseline on the held-out samples, publish the multi-task version.

    Parameters are those of `training.publish.head.finetune_and_export`, with `tasks` (each an
    obs column, its kind and loss weight) in place of the label column and task, and
    `options` a named strategy (frozen by default).
    """
    encoder_card, autoencoder, pipeline, aligned, unlabelled, n_missing = load_and_align(
        encoder_folder, dataset, unlabelled, n_missing_genes
    )
    train, test = aligned.train, aligned.test
    options = options or FinetuneOptions()
    original = autoencoder.encoder  # the inner folds start from it too
    result = finetune_multitask(
        autoencoder.encoder,
        pipeline,
        train,
        tasks,
        train_cfg,
        head_hidden=head_hidden,
        head_dropout=head_dropout,
        strategy=options,
        progress=progress,
        unlabelled=unlabelled,
        domain_column=domain_column,
    )
    autoencoder.encoder = result.fit.encoder  # type: ignore[assignment]
    ours, theirs = score_tasks(
        autoencoder.encoder, result.head, pipeline, train, test, result.tasks, train_cfg.seed
    )
    where = dict.fromkeys(ours, HELD_OUT)
    if len(ours) < len(tasks):  # too few held-out labels: those tasks on inner folds
        inner, inner_base = inner_scores(
            original, pipeline, train, tasks, train_cfg,
            head_hidden=head_hidden, head_dropout=head_dropout, options=options,
        )  # fmt: skip
        for column in set(inner) - set(ours):
            ours[column], theirs[column], where[column] = (
                inner[column],
                inner_base[column],
                INNER_CV,
            )
    cards = [
        ModelTask(
            name=t.spec.column,
            kind=t.spec.kind,
            labels=t.labels,
            weight=t.spec.weight,
            outputs=task_outputs(t.spec.column, t.spec.kind),
            n_labelled=t.n_labelled,
            warnings=warnings_for(
                t,
                ours.get(t.spec.column),
                theirs.get(t.spec.column),
                where.get(t.spec.column, HELD_OUT),
            ),
        )
        for t in result.tasks
    ]
    protocol = (
        f"{held_out_note(aligned, encoder_card)} One encoder ({result.fit.strategy}) with a head "
        "per task trained on the weighted sum of the tasks' losses (class-weighted "
        "cross-entropy; MSE on the standardised target), a row missing a task's label masked "
        f"for that task; early stopping on the {result.fit.history.validation}; each task "
        "scored on the held-out samples with its label."
    )
    baseline_protocol = (
        "The task's baseline (logistic regression, or ridge for a regression task) fitted on "
        "the training samples with its label, on the encoder's preprocessing; scored on the "
        "same held-out samples."
    )
    inner_protocol = (
        f"Too few held-out samples with this task's label: {INNER_FOLDS}-fold cross-validation "
        "of the training samples (random folds, seeded), a multi-task model and the baseline "
        "fitted on each fold's rest and scored on the fold; the mean over folds."
    )
    metrics = [
        Metric(name=f"{task}.{k}", value=v, split=where[task],
               protocol=protocol if where[task] == HELD_OUT else inner_protocol)
        for task, values in ours.items()
        for k, v in values.items()
    ] + [
        Metric(name=f"{task}.{BASELINE[_kind(tasks, task)]}.{k}", value=v, split=where[task],
               protocol=baseline_protocol if where[task] == HELD_OUT else inner_protocol)
        for task, values in theirs.items()
        for k, v in values.items()
    ]  # fmt: skip
    extra: dict[str, Any] = {
        "task": "multitask",
        "tasks": [{"column": t.column, "kind": t.kind, "weight": t.weight} for t in tasks],
        **finetune_record(
            train_cfg, result.fit, n_missing, len(pipeline.gene_ids), input_conversion
        ),
    }
    columns = ", ".join(t.column for t in tasks)
    folder = export_multitask(
        autoencoder,
        result.head,
        pipeline,
        cards,
        name=name,
        models_dir=models_dir,
        info=CardInfo(description, aligned.training_data(columns), metrics, extra, job),
        reference=train.X,
        parent=model_ref(encoder_folder),
    )
    return MultitaskRun(
        folder,
        cards,
        result.fit.history,
        ours,
        theirs,
        test.shape[0],
        n_missing,
        len(pipeline.gene_ids),
    )


def _kind(tasks: Sequence[TaskSpec], column: str) -> Task:
    return next(t.kind for t in tasks if t.column == column)
