"""The training side of a job: dataset npz → ExpressionMatrix → choose and fine-tune → a version.

Imported only by a job runner (it needs the 'train' extra: torch).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from app.codecs.datasets import ParsedDataset, load_npz
from app.jobs.errors import JobFailure
from contract import defaults
from contract.matrix import ExpressionMatrix
from training.choice.tune import TuneSettings
from training.evaluation.splits import Dataset, hold_out
from training.methods.options import FinetuneOptions
from training.multiomics.data import MultiOmics
from training.multiomics.publish import multiomics_and_export
from training.nn.config import TrainConfig
from training.nn.device import resolve_device
from training.publish.chosen import choose_and_export
from training.publish.multitask import multitask_and_export
from training.train import progress
from training.train.apply import labelled_rows, split_unlabelled
from training.train.multitask import TaskSpec
from training.train.progress import TrainingHook


def to_matrix(
    parsed: ParsedDataset, label_column: str | Sequence[str], domain_column: str | None
) -> ExpressionMatrix:
    """The uploaded samples with their own gene names; training aligns them to the panel once."""
    wanted = [label_column] if isinstance(label_column, str) else list(label_column)
    wanted += [] if domain_column is None else [domain_column]
    for column in wanted:
        if column not in parsed.labels:
            raise JobFailure(f"the dataset has no label column {column!r}")
    columns = {c: parsed.labels[c] for c in wanted}
    obs = pd.DataFrame(columns, index=parsed.sample_ids)
    return ExpressionMatrix(
        X=parsed.X, sample_ids=parsed.sample_ids, gene_ids=parsed.gene_ids, obs=obs
    )


def run(
    job_id: uuid.UUID,
    params: dict[str, Any],
    *,
    path: str,
    models_dir: Path,
    hook: TrainingHook,
    device: str = "auto",
    modality_paths: Mapping[str, str] | None = None,
) -> tuple[str, int, dict[str, Any]]:
    """Choose, fine-tune and publish on `device` (GENEXFER_TRAIN_DEVICE); returns (model name,
    version, metrics)."""
    try:
        where = resolve_device(device)
    except ValueError as exc:  # cuda asked for, none usable here
        raise JobFailure(f"GENEXFER_TRAIN_DEVICE={device}: {exc}") from exc
    task = params["task"]
    encoder = params["encoder"]
    folder = models_dir / encoder["name"] / str(encoder["version"])
    tasks = params.get("tasks")  # absent from jobs submitted before multi-task existed
    label_column = params["label_column"] if not tasks else tasks[0]["column"]
    columns = [t["column"] for t in tasks] if tasks else [label_column]
    if modality_paths:
        with progress.watching(hook):  # the loss curve and cancellation, as for any job
            return _multiomics(job_id, params, path, modality_paths, folder, models_dir, where.type)
    adaptation, semi = params["adaptation"], params["semi_supervised"]
    matrix = to_matrix(load_npz(Path(path)), columns, adaptation["domain_column"])
    try:
        matrix, unlabelled = split_unlabelled(matrix, columns)
    except ValueError as exc:  # no row has a label
        raise JobFailure(str(exc)) from exc
    hp, validation = params["hyperparameters"], params["validation"]
    first_kind = tasks[0]["kind"] if tasks else task
    stratify = first_kind == "classification" and bool(labelled_rows(matrix, label_column).all())
    dataset = hold_out(
        f"dataset {params['dataset_id']}",
        matrix,
        test_fraction=validation["test_fraction"],
        seed=hp["seed"],
        stratify_by=label_column if stratify else None,
        min_class=defaults.MIN_HELD_OUT_CLASS if stratify else 0,
    )
    train_cfg = train_config(params)
    # the API schema admits only training's own names (contract.vocab)
    options = FinetuneOptions(
        strategy="frozen" if params["strategy"] == "auto" else params["strategy"],
        unfreeze_top=hp["unfreeze_top"],
        encoder_lr_scale=hp["encoder_lr_scale"],
        adaptation=adaptation["method"],
        adaptation_weight=adaptation["weight"],
        semi_supervised=semi["method"],
        confidence=semi["confidence"],
        semi_weight=semi["weight"],
        min_epochs=hp["min_epochs"],
        device=where.type,
    )
    if tasks:
        return _multitask(
            job_id, params, tasks, dataset, folder, train_cfg, options, unlabelled, models_dir, hook
        )
    what = "classifier" if task == "classification" else "regressor"
    description = params.get("description") or (
        f"{label_column} {what} on {encoder['name']}/{encoder['version']} by job {job_id}"
    )
    tune = params.get("tune")  # absent from jobs submitted before the option existed
    search = (
        None
        if tune is None
        else TuneSettings(trials=tune["trials"], timeout_s=tune["timeout_s"], seed=hp["seed"])
    )
    with progress.watching(hook):
        result = choose_and_export(
            dataset,
            encoder_folder=folder,
            label_column=label_column,
            head_hidden=tuple(hp["head_hidden"]),
            head_dropout=hp["head_dropout"],
            train_cfg=train_cfg,
            name=params["output_name"],
            models_dir=models_dir,
            description=description,
            progress=False,
            task=task,
            strategy=params["strategy"],
            options=options,
            candidates=params.get("candidates"),
            job=str(job_id),  # in the card: one version per job, found again on a retry
            unlabelled=unlabelled,
            domain_column=adaptation["domain_column"],
            tune=search,
        )
    history = result.history
    metrics: dict[str, Any] = {
        "test": result.scores,
        "n_test": result.n_test,
        "held_out": dataset.protocol,
        "n_unlabelled": 0 if unlabelled is None else unlabelled.shape[0],
        "published": {"candidate": result.selection.winner, "kind": result.kind},
        "selection": result.selection.model_dump(mode="json"),
        "warnings": list(result.selection.warnings),
        "missing_panel_genes": result.n_missing_genes,
        "device": where.type,
    }
    if history is not None:
        metrics.update(
            epochs_run=len(history.train_loss),
            best_epoch=history.best_epoch,
            best_val_loss=history.best_val_loss,
        )
    return params["output_name"], int(result.folder.name), metrics


def train_config(params: dict[str, Any]) -> TrainConfig:
    """The job's optimisation settings (its hyperparameters and validation split)."""
    hp, validation = params["hyperparameters"], params["validation"]
    return TrainConfig(
        epochs=hp["epochs"],
        batch_size=hp["batch_size"],
        lr=hp["lr"],
        weight_decay=hp["weight_decay"],
        val_fraction=validation["val_fraction"],
        patience=hp["patience"],
        seed=hp["seed"],
    )


def _multitask(
    job_id: uuid.UUID,
    params: dict[str, Any],
    tasks: list[dict[str, Any]],
    dataset: Dataset,
    folder: Path,
    train_cfg: TrainConfig,
    options: FinetuneOptions,
    unlabelled: ExpressionMatrix | None,
    models_dir: Path,
    hook: TrainingHook,
) -> tuple[str, int, dict[str, Any]]:
    """A multi-task job: the named strategy, a head per task, published as one version."""
    specs = [TaskSpec(t["column"], t["kind"], t["weight"]) for t in tasks]
    encoder = params["encoder"]
    description = params.get("description") or (
        f"multi-task model of {', '.join(t.column for t in specs)} on {encoder['name']}/"
        f"{encoder['version']} by job {job_id}"
    )
    hp = params["hyperparameters"]
    with progress.watching(hook):
        try:
            result = multitask_and_export(
                dataset,
                encoder_folder=folder,
                tasks=specs,
                head_hidden=tuple(hp["head_hidden"]),
                head_dropout=hp["head_dropout"],
                train_cfg=train_cfg,
                name=params["output_name"],
                models_dir=models_dir,
                description=description,
                options=options,
                progress=False,
                job=str(job_id),
                unlabelled=unlabelled,
                domain_column=params["adaptation"]["domain_column"],
            )
        except (ValueError, KeyError) as exc:  # the data cannot train these tasks
            raise JobFailure(str(exc)) from exc
    history = result.history
    metrics: dict[str, Any] = {
        "test": result.scores,
        "baseline": result.baseline_scores,
        "n_test": result.n_test,
        "held_out": dataset.protocol,
        "n_unlabelled": 0 if unlabelled is None else unlabelled.shape[0],
        "published": {"candidate": options.strategy, "kind": "multitask"},
        "tasks": [t.model_dump(mode="json") for t in result.tasks],
        "warnings": [f"{t.name}: {w}" for t in result.tasks for w in t.warnings],
        "missing_panel_genes": result.n_missing_genes,
        "device": options.device,
        "epochs_run": len(history.train_loss),
        "best_epoch": history.best_epoch,
        "best_val_loss": history.best_val_loss,
    }
    return params["output_name"], int(result.folder.name), metrics


def _multiomics(
    job_id: uuid.UUID,
    params: dict[str, Any],
    path: str,
    modality_paths: Mapping[str, str],
    folder: Path,
    models_dir: Path,
    device: str,
) -> tuple[str, int, dict[str, Any]]:
    """A multi-omics classifier (`training.multiomics.publish`) from the expression dataset and
    one dataset per modality, keyed by sample id."""
    label_column = params["label_column"]
    expression = to_matrix(load_npz(Path(path)), label_column, None)
    added = {}
    for name, where in modality_paths.items():
        parsed = load_npz(Path(where))
        added[name] = ExpressionMatrix(
            X=parsed.X, sample_ids=parsed.sample_ids, gene_ids=parsed.gene_ids
        )
    try:
        data = MultiOmics(expression, added)
    except ValueError as exc:  # samples of a modality without expression, non-finite values
        raise JobFailure(str(exc)) from exc
    hp, validation = params["hyperparameters"], params["validation"]
    train_cfg = train_config(params)
    options = FinetuneOptions(
        strategy="frozen" if params["strategy"] == "auto" else params["strategy"],
        unfreeze_top=hp["unfreeze_top"],
        encoder_lr_scale=hp["encoder_lr_scale"],
        min_epochs=hp["min_epochs"],
        device=device,
    )
    result = multiomics_and_export(
        data,
        data_name=f"dataset {params['dataset_id']} + {sorted(added)}",
        encoder_folder=folder,
        label_column=label_column,
        train_cfg=train_cfg,
        options=options,
        name=params["output_name"],
        models_dir=models_dir,
        description=params.get("description") or "",
        test_fraction=validation["test_fraction"],
        progress=False,
        job=str(job_id),  # in the card: one version per job, found again on a retry
    )
    metrics: dict[str, Any] = {
        "test": result.scores,
        "n_test": result.n_test,
        "modalities": result.presence,
        "published": {"candidate": options.strategy, "kind": "multiomics"},
        # beside logistic regressions on the same held-out samples (none when nothing is held out)
        "selection": None if result.selection is None else result.selection.model_dump(mode="json"),
        "warnings": [] if result.selection is None else list(result.selection.warnings),
        "missing_panel_genes": result.n_missing_genes,
        "device": device,
        "epochs_run": len(result.history.train_loss),
        "best_epoch": result.history.best_epoch,
    }
    return params["output_name"], int(result.folder.name), metrics
