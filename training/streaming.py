"""Pretraining on a file streamed from disk (.npy, .parquet, backed .h5ad) and publishing it."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from app.inference.card import InputScale, Metric, TrainingData, sha256_file
from training.config import TrainConfig, config_to_dict
from training.data.stream import open_source, sample_rows
from training.export import CardInfo, export_encoder
from training.nn.variants import AnyAutoencoderConfig
from training.preprocess.pipeline import PreprocessPipeline
from training.pretrain import pretrain_stream
from training.workflows import EncoderRun

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
    progress: bool | None = None,
) -> EncoderRun:
    """Pretrain on `path` chunk by chunk (seeded validation chunks) and publish the encoder.

    Parameters
    ----------
    path:
        A ``.npy`` (gene ids in ``<path>.genes.txt``), ``.parquet`` (a column per gene) or
        ``.h5ad`` file, samples as rows, on `input_scale`.
    input_scale, model_cfg, train_cfg, name, models_dir, description, clip, progress:
        As for `training.workflows.pretrain_and_export`; ``model_cfg.n_genes`` must match.
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
    pipeline = PreprocessPipeline.fit(fit_on, input_scale, clip=clip)
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
    extra = {
        "train_config": config_to_dict(train_cfg),
        "history": {
            "epochs_run": len(history.val_loss),
            "best_epoch": history.best_epoch,
            "best_val_loss": history.best_val_loss,
            "samples_seen": history.samples_seen,
        },
    }
    folder = export_encoder(
        model,
        pipeline,
        name=name,
        models_dir=models_dir,
        info=CardInfo(description, data, metrics, extra),
        reference=fit_on.X[:64],
    )
    return EncoderRun(folder, model, pipeline, history, metrics)
