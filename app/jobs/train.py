"""The training side of a job: dataset npz → ExpressionMatrix → fine-tune → a new version.

Imported only by a job runner (it needs the 'train' extra: torch).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pandas as pd

from app.codecs.datasets import ParsedDataset, load_npz
from app.jobs.errors import JobFailure
from contract.matrix import ExpressionMatrix
from training.evaluation.splits import hold_out
from training.nn.config import TrainConfig
from training.publish.head import finetune_and_export
from training.train import finetune, progress
from training.train.loop import resolve_device
from training.train.progress import TrainingHook


def to_matrix(parsed: ParsedDataset, label_column: str) -> ExpressionMatrix:
    """The uploaded samples with their own gene names; training aligns them to the panel once."""
    if label_column not in parsed.labels:
        raise JobFailure(f"the dataset has no label column {label_column!r}")
    obs = pd.DataFrame({label_column: parsed.labels[label_column]}, index=parsed.sample_ids)
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
) -> tuple[str, int, dict[str, Any]]:
    """Fine-tune and publish on `device` (GENEXFER_TRAIN_DEVICE); returns (model name,
    version, metrics)."""
    try:
        where = resolve_device(device)
    except ValueError as exc:  # cuda asked for, none usable here
        raise JobFailure(f"GENEXFER_TRAIN_DEVICE={device}: {exc}") from exc
    task = params["task"]
    encoder = params["encoder"]
    folder = models_dir / encoder["name"] / str(encoder["version"])
    label_column = params["label_column"]
    matrix = to_matrix(load_npz(Path(path)), label_column)
    hp, validation = params["hyperparameters"], params["validation"]
    dataset = hold_out(
        f"dataset {params['dataset_id']}",
        matrix,
        test_fraction=validation["test_fraction"],
        seed=hp["seed"],
        stratify_by=label_column if task == "classification" else None,
    )
    train_cfg = TrainConfig(
        epochs=hp["epochs"],
        batch_size=hp["batch_size"],
        lr=hp["lr"],
        weight_decay=hp["weight_decay"],
        val_fraction=validation["val_fraction"],
        patience=hp["patience"],
        seed=hp["seed"],
    )
    # the API schema admits only training's own strategy names
    options = finetune.FinetuneOptions(strategy=params["strategy"], device=where.type)
    what = "classifier" if task == "classification" else "regressor"
    description = params.get("description") or (
        f"{label_column} {what} fine-tuned on {encoder['name']}/{encoder['version']} "
        f"by job {job_id}"
    )
    with progress.watching(hook):
        result = finetune_and_export(
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
            options=options,
            job=str(job_id),  # in the card: one version per job, found again on a retry
        )
    history = result.history
    metrics = {
        "test": result.scores,
        "n_test": result.n_test,
        "epochs_run": len(history.train_loss),
        "best_epoch": history.best_epoch,
        "best_val_loss": history.best_val_loss,
        "missing_panel_genes": result.n_missing_genes,
        "device": where.type,
    }
    return params["output_name"], int(result.folder.name), metrics
