"""A fine-tuned version's parent encoder: loaded, the data aligned to its panel, and what the
version's card says of it and of the training on it.

Shared by every fine-tuned version: a single head (`training.publish.head`), the automatic choice's
winner (`training.publish.chosen`), a multi-task model (`training.publish.multitask`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from contract.align import align_matrix
from contract.card import ModelCard
from contract.matrix import ExpressionMatrix
from contract.preprocess.pipeline import PreprocessPipeline
from training.evaluation.splits import Dataset
from training.nn.checkpoint import load_checkpoint
from training.nn.config import TrainConfig, config_to_dict
from training.nn.encoders import DenseAutoencoder
from training.nn.variants import Autoencoder, DenoisingAutoencoder, VariationalAutoencoder
from training.train.finetune import FinetuneResult


def load_autoencoder(encoder_folder: Path) -> Autoencoder:
    """The autoencoder checkpointed in a published encoder's version folder."""
    loaded = load_checkpoint(encoder_folder).parts.get("autoencoder")
    if not isinstance(loaded, DenseAutoencoder | DenoisingAutoencoder | VariationalAutoencoder):
        raise ValueError(f"{encoder_folder}: the checkpoint holds no autoencoder")
    return loaded


class EncoderAndData(NamedTuple):
    """A published encoder loaded for fine-tuning, and the data aligned to its gene panel."""

    card: ModelCard
    autoencoder: Autoencoder
    pipeline: PreprocessPipeline
    dataset: Dataset  # aligned to the panel and input scale, same split
    unlabelled: ExpressionMatrix | None  # aligned likewise
    n_missing_genes: int  # the panel genes the data lacked


def load_and_align(
    encoder_folder: Path,
    dataset: Dataset,
    unlabelled: ExpressionMatrix | None,
    n_missing_genes: int | None,
) -> EncoderAndData:
    """Load the encoder published in `encoder_folder` (card, autoencoder, preprocessing) and
    align `dataset` and `unlabelled` to its panel and input scale; `n_missing_genes`, when the
    caller aligned the data already, stands for the genes this alignment finds missing."""
    card = ModelCard.read(encoder_folder)
    autoencoder = load_autoencoder(encoder_folder)
    pipeline = PreprocessPipeline.load(encoder_folder)
    matrix, done = align_matrix(dataset.matrix, card.panel, card.input_scale)
    n_missing = len(done.alignment.missing_genes) if n_missing_genes is None else n_missing_genes
    if unlabelled is not None:
        unlabelled = align_matrix(unlabelled, card.panel, card.input_scale)[0]
    aligned = Dataset(dataset.name, matrix, dataset.test_idx, dataset.protocol)
    return EncoderAndData(card, autoencoder, pipeline, aligned, unlabelled, n_missing)


def finetune_record(
    train_cfg: TrainConfig,
    fit: FinetuneResult,
    n_missing_genes: int,
    n_panel_genes: int,
    input_conversion: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """What a fine-tuned version's card records of its training (its `extra`, after the task):
    the settings, strategy and methods, the history, the panel genes the data lacked and what
    was done to the values before they came here (when anything was)."""
    record: dict[str, Any] = {
        "train_config": config_to_dict(train_cfg),
        "strategy": fit.strategy,
        "finetune_options": config_to_dict(fit.options),
        "n_unlabelled": fit.n_unlabelled,
        "history": fit.history.summary(),
        "missing_panel_genes": n_missing_genes,
        "panel_overlap": 1 - n_missing_genes / n_panel_genes,
    }
    if input_conversion is not None:
        record["input_conversion"] = dict(input_conversion)
    return record


def held_out_note(dataset: Dataset, encoder_card: ModelCard) -> str:
    """What was held out, and whether the encoder's pretraining saw it (claimed unseen only when
    the encoder's card proves it)."""
    parent_data = encoder_card.training_data
    unseen = (
        parent_data is not None
        and parent_data.fingerprint == dataset.matrix.fingerprint()
        and set(dataset.test.sample_ids) <= set(parent_data.heldout_sample_ids)
    )
    encoder_note = (
        "the encoder's pretraining also held them out"
        if unseen
        else "the encoder's pretraining data may include them (see the parent card)"
    )
    return (
        f"{dataset.protocol} before any fitting, ids in training_data.heldout_sample_ids; "
        f"{encoder_note}."
    )
