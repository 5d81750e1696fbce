"""Pretrain an encoder and publish it: in memory or streamed from disk; measure; export.

Shared by the CLI and the demo. Fine-tuning a head on a published encoder is
`training.publish.head`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contract.card import InputScale, InputTransform, Metric, TrainingData, sha256_file
from contract.preprocess.pipeline import PreprocessPipeline
from contract.preprocess.steps import Array
from training.data.stream import open_source, sample_rows
from training.evaluation.splits import Dataset
from training.export.graphs import CardInfo, export_encoder
from training.nn.config import TrainConfig, config_to_dict
from training.nn.variants import AnyAutoencoderConfig, Autoencoder, VariationalAutoencoder
from training.preprocess.convert import check_scale
from training.preprocess.select import GeneSelection, fit_pipeline
from training.train.loop import History
from training.train.pretrain import pretrain, pretrain_stream, reconstruction_mse


@dataclass(frozen=True)
class EncoderRun:
    """A published encoder and what produced it."""

    folder: Path
    autoencoder: Autoencoder
    pipeline: PreprocessPipeline
    history: History
    metrics: list[Metric]


def pretrain_and_export(
    dataset: Dataset,
    *,
    input_scale: InputScale,
    model_cfg: AnyAutoencoderConfig,
    train_cfg: TrainConfig,
    name: str,
    models_dir: Path,
    description: str,
    clip: float | None = 10.0,
    select: GeneSelection | None = None,
    device: str = "cpu",
    progress: bool | None = None,
    input_transforms: Sequence[InputTransform] = (),
) -> EncoderRun:
    """Fit preprocessing and an autoencoder on the training split, then publish the encoder.

    Parameters
    ----------
    dataset:
        The source data with its held-out test split (never used for fitting).
    input_scale:
        What the values are (``counts``, ``normalized``, ``log``); checked against the values.
    model_cfg:
        The autoencoder; ``n_genes`` must equal the preprocessing's output width.
    train_cfg:
        Epochs, batch size, learning rate, validation share, patience, seed.
    name, models_dir, description:
        Where the new version is published, and its card's description.
    clip:
        Clip of the per-gene z-scores.
    select:
        Optional unsupervised gene selection, fitted on the training split and fused into ONNX.
    device:
        ``cpu``, ``cuda`` or ``auto``.
    progress:
        Progress bars (None: when attached to a terminal).
    input_transforms:
        How the training data's scale was made from others (e.g. counts scaled to 10,000 per
        sample then log1p), recorded on the card so that the service accepts those too.
    """
    train = dataset.train
    check_scale(train, input_scale)
    pipeline = fit_pipeline(train, input_scale, clip=clip, select=select)
    model, history = pretrain(
        train, pipeline, model_cfg, train_cfg, progress=progress, device=device
    )
    what = "mean squared error of reconstructing the preprocessed (standardised) input"
    # a VAE's early-stopping loss adds the KL term: name it for what it is
    vae = isinstance(model, VariationalAutoencoder)
    metrics = [
        Metric(
            name="vae_loss" if vae else "reconstruction_mse",
            value=history.best_val_loss,
            split="validation",
            protocol=f"{what}{' plus beta × KL / genes' if vae else ''}, on the random "
            f"{train_cfg.val_fraction:.0%} of the training "
            f"split used for early stopping (seed {train_cfg.seed}); {dataset.protocol}",
        )
    ]
    if dataset.test.shape[0]:
        metrics.append(
            Metric(
                name="reconstruction_mse",
                value=reconstruction_mse(model, pipeline, dataset.test),
                split="test",
                protocol=f"{what}, on the held-out samples ({dataset.protocol}; listed in "
                "training_data.heldout_sample_ids), which took no part in fitting",
            )
        )
    return _publish(
        model, pipeline, history, metrics, dataset.training_data(None), train.X,
        train_cfg=train_cfg, name=name, models_dir=models_dir, description=description,
        input_transforms=input_transforms,
    )  # fmt: skip


FIT_ROWS = 10_000  # rows the per-gene preprocessing is fitted on (means/sds settle long before)


def stream_pretrain_and_export(
    path: Path,
    *,
    input_scale: InputScale,
    model_cfg: AnyAutoencoderConfig,
    train_cfg: TrainConfig,
    name: str,
    models_dir: Path,
    description: str,
    chunk_rows: int = 4096,
    max_steps: int | None = None,
    device: str = "cpu",
    clip: float | None = 10.0,
    select: GeneSelection | None = None,
    progress: bool | None = None,
    input_transforms: Sequence[InputTransform] = (),
) -> EncoderRun:
    """Pretrain on `path` chunk by chunk (seeded validation chunks) and publish the encoder.

    Parameters
    ----------
    path:
        A ``.npy`` (gene ids in ``<path>.genes.txt``), ``.parquet`` (a column per gene) or
        ``.h5ad`` file, samples as rows, on `input_scale`.
    input_scale, model_cfg, train_cfg, name, models_dir, description, clip, select, progress,
    input_transforms:
        As for `pretrain_and_export` (the scale is checked on the rows preprocessing is fitted
        on, and so is the selection).
    chunk_rows:
        Rows per chunk for .npy and .h5ad (Parquet uses its row groups).
    max_steps:
        Optional cap on optimiser steps.
    device:
        ``cpu``, ``cuda`` or ``auto``.
    """
    source = open_source(path, chunk_rows)
    n_chunks = len(source.chunks)
    if n_chunks < 2:
        raise ValueError(f"{path}: {n_chunks} chunk(s); need two or more to hold out validation")
    n_val = max(1, math.ceil(train_cfg.val_fraction * n_chunks))
    order = np.random.default_rng(train_cfg.seed).permutation(n_chunks)
    val_ids, train_ids = sorted(order[:n_val].tolist()), sorted(order[n_val:].tolist())
    fit_on = sample_rows(source, FIT_ROWS, train_cfg.seed, train_ids)
    check_scale(fit_on, input_scale)
    pipeline = fit_pipeline(fit_on, input_scale, clip=clip, select=select)
    model, history = pretrain_stream(
        source,
        pipeline,
        model_cfg,
        train_cfg,
        train_chunks=[source.chunks[i] for i in train_ids],
        val_chunks=[source.chunks[i] for i in val_ids],
        max_steps=max_steps,
        progress=progress,
        device=device,
    )
    n_val_rows = sum(source.chunks[i][1] - source.chunks[i][0] for i in val_ids)
    metrics = [
        Metric(
            name=f"{type(model).__name__}_loss",
            value=history.best_val_loss,
            split="validation",
            protocol=f"self-supervised loss on {n_val} held-out chunk(s) ({n_val_rows} rows, "
            f"seed {train_cfg.seed}) of {path.name}; preprocessing fitted on up to {FIT_ROWS} "
            "rows of the training chunks",
        )
    ]
    data = TrainingData(
        name=path.name,
        fingerprint=sha256_file(path),  # of the file: the matrix is never all in memory
        n_samples=source.n_rows,
        n_genes=len(source.gene_ids),
    )
    return _publish(
        model, pipeline, history, metrics, data, fit_on.X[:64],
        train_cfg=train_cfg, name=name, models_dir=models_dir, description=description,
        input_transforms=input_transforms,
    )  # fmt: skip


def _publish(
    model: Autoencoder,
    pipeline: PreprocessPipeline,
    history: History,
    metrics: list[Metric],
    data: TrainingData,
    reference: Array,
    *,
    train_cfg: TrainConfig,
    name: str,
    models_dir: Path,
    description: str,
    input_transforms: Sequence[InputTransform],
) -> EncoderRun:
    """Export the encoder with its card (training data, metrics, config and history)."""
    extra = {"train_config": config_to_dict(train_cfg), "history": history.summary()}
    info = CardInfo(description, data, metrics, extra)
    folder = export_encoder(
        model, pipeline, name=name, models_dir=models_dir, info=info, reference=reference,
        input_transforms=input_transforms,
    )  # fmt: skip
    return EncoderRun(folder, model, pipeline, history, metrics)
