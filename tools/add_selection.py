"""Compare a published transfer head with logistic regression on its own training samples, and
record the comparison on its card.

Versions published before the automatic choice (`training.choice`) carry no `selection`: nothing
on their card says whether a logistic regression does better. This scores the version's strategy
(from its checkpoint's config) and logistic regression on the same inner cross-validation folds
of the samples it was trained on (the data file minus the card's held-out ids; the file must be
the one the card's fingerprint names), exactly as `choose_and_export` does for a named strategy,
and writes the `selection` (with its warning when the baseline scored higher) and the inner-CV
metric into `model.json`. The model's files do not change. A running service reads the amended
card at its next restart.

    PYTHONPATH=. python tools/add_selection.py models/pbmc68k-celltype/1
    PYTHONPATH=. python tools/add_selection.py models/NAME/V --data FILE --label-column COL
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from contract.align import align_matrix
from contract.card import ModelCard, ModelKind
from contract.io.readers import read_matrix
from contract.matrix import ExpressionMatrix
from contract.preprocess.pipeline import PreprocessPipeline
from training.choice import candidates as cands
from training.choice.auto import choose
from training.methods.options import FinetuneOptions
from training.nn.checkpoint import CONFIG_FILE
from training.nn.config import TrainConfig
from training.publish.chosen import COMPARED
from training.publish.head import selection_metrics
from training.publish.parent import load_autoencoder


def add_selection(folder: Path, matrix: ExpressionMatrix, label_column: str) -> ModelCard:
    """Score the version's strategy and the baseline on inner folds; amend and return its card."""
    card = ModelCard.read(folder)
    where = f"{card.name}/{card.version}"
    if card.kind is not ModelKind.classifier or card.parent is None:
        raise ValueError(f"{where} is not a transfer classifier (a head on a published encoder)")
    if card.selection is not None:
        raise ValueError(f"{where} already records a selection")
    data = card.training_data
    if data is None or data.fingerprint != matrix.fingerprint():
        raise ValueError(f"{where}: the data given are not the data its card names")
    config = json.loads((folder / CONFIG_FILE).read_text())
    head = config["parts"]["head"]["config"]
    options = FinetuneOptions(**config["extra"]["finetune_options"]) if (
        "finetune_options" in config["extra"]
    ) else FinetuneOptions(strategy=config["extra"]["strategy"])  # fmt: skip
    encoder_folder = folder.parent.parent / card.parent.name / str(card.parent.version)
    parent = ModelCard.read(encoder_folder)
    held_out = set(data.heldout_sample_ids)
    keep = np.array([s not in held_out for s in matrix.sample_ids])
    train = align_matrix(matrix.take(np.flatnonzero(keep)), parent.panel, parent.input_scale)[0]
    autoencoder = load_autoencoder(encoder_folder)
    problem = cands.Problem(
        matrix=train,
        label_column=label_column,
        task="classification",
        encoder=autoencoder.encoder,
        latent=autoencoder.config.latent,
        pipeline=PreprocessPipeline.load(encoder_folder),
        head_hidden=tuple(head["hidden"]),
        head_dropout=float(head["dropout"]),
        train_cfg=TrainConfig(**config["extra"]["train_config"]),
    )
    named = cands.transfer(options)
    pool = [named, cands.baseline(COMPARED["classification"])]
    selection = choose(problem, pool, seed=problem.train_cfg.seed, forced=named.name).selection
    amended = card.model_copy(
        update={
            "selection": selection,
            "metrics": [*card.metrics, *selection_metrics(selection)],
        }
    )
    amended.write(folder)
    return amended


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="models/NAME/VERSION of a transfer classifier")
    parser.add_argument("--data", type=Path, help="its training data (default: pbmc68k_reduced)")
    parser.add_argument("--label-column", default="bulk_labels")
    args = parser.parse_args(argv)
    if args.data is None:
        from training.data.pbmc68k import load_pbmc68k_reduced

        matrix = load_pbmc68k_reduced()
    else:
        matrix = read_matrix(args.data, obs_columns=(args.label_column,))
    try:
        card = add_selection(args.folder, matrix, args.label_column)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    assert card.selection is not None
    print(card.selection.reason)
    for warning in card.selection.warnings:
        print(f"WARNING: {warning}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
