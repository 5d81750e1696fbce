"""The training side of a job: dataset npz → ExpressionMatrix → training.workflows → new version.

Imported only by a job runner (it needs the 'train' extra: torch).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pandas as pd

from app.inference.align import panel_lookup
from app.inference.card import ModelCard
from app.jobs.tasks import JobFailure
from app.services.dataset_io import ParsedDataset, load_npz
from training import finetune, progress
from training.config import TrainConfig
from training.data.matrix import ExpressionMatrix
from training.progress import TrainingHook
from training.tuning import finetune_and_export
from training.workflows import hold_out


def to_panel_ids(parsed: ParsedDataset, card: ModelCard, label_column: str) -> ExpressionMatrix:
    """Rename genes to the encoder's panel ids (matching ids and aliases, as serving does)."""
    lookup = panel_lookup(card.panel)
    keep: list[int] = []
    names: list[str] = []
    taken: set[int] = set()
    for j, gene in enumerate(parsed.gene_ids):
        col = lookup.get(gene.strip().upper())
        if col is not None and col not in taken:  # a second name of the same gene is dropped
            taken.add(col)
            keep.append(j)
            names.append(card.panel.ids[col])
    if not keep:
        raise JobFailure(f"none of the dataset's genes are in {card.name}/{card.version}'s panel")
    obs = pd.DataFrame({label_column: parsed.labels[label_column]}, index=parsed.sample_ids)
    return ExpressionMatrix(
        X=parsed.X[:, keep], sample_ids=parsed.sample_ids, gene_ids=names, obs=obs
    )


def run(
    job_id: uuid.UUID,
    params: dict[str, Any],
    *,
    path: str,
    models_dir: Path,
    hook: TrainingHook,
) -> tuple[str, int, dict[str, Any]]:
    """Fine-tune and publish; returns (model name, version, metrics)."""
    task = params["task"]
    encoder = params["encoder"]
    folder = models_dir / encoder["name"] / str(encoder["version"])
    card = ModelCard.read(folder)
    label_column = params["label_column"]
    parsed = load_npz(Path(path))
    if label_column not in parsed.labels:
        raise JobFailure(f"the dataset has no label column {label_column!r}")
    matrix = to_panel_ids(parsed, card, label_column)
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
    options = finetune.FinetuneOptions(strategy=params["strategy"])
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
        )
    history = result.history
    metrics = {
        "test": result.scores,
        "n_test": result.n_test,
        "epochs_run": len(history.train_loss),
        "best_epoch": history.best_epoch,
        "best_val_loss": history.best_val_loss,
        "missing_panel_genes": result.n_missing_genes,
    }
    return params["output_name"], int(result.folder.name), metrics
