"""Fine-tune one encoder with a head per task and publish it as one multi-task version.

Shared by `genexfer train finetune --multi-task` and fine-tuning jobs with `tasks`. The named
strategy is published (the automatic choice is single-task); each task's head is then scored
beside a classical baseline fitted on the same training rows (`training.evaluation.multitask`:
on the held-out samples with that task's label, or on inner folds of the training samples when
too few held-out samples have it), and the card warns for every task the baseline beats: no lab
is handed a model a logistic regression beats without being told.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contract.card import Metric, ModelTask, task_outputs
from contract.matrix import ExpressionMatrix
from contract.vocab import Task
from training.evaluation.multitask import (
    BASELINE,
    HELD_OUT,
    INNER_CV,
    INNER_FOLDS,
    inner_scores,
    score_tasks,
    warnings_for,
)
from training.evaluation.splits import Dataset
from training.export.card import CardInfo
from training.export.heads import export_multitask
from training.export.store import model_ref
from training.methods.options import FinetuneOptions
from training.nn.config import TrainConfig
from training.publish.parent import finetune_record, held_out_note, load_and_align
from training.train.loop import History
from training.train.multitask import TaskSpec, finetune_multitask


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
