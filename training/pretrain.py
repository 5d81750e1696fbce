"""Self-supervised pretraining of a DenseAutoencoder on preprocessed expression."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from training.config import TrainConfig
from training.data.matrix import ExpressionMatrix
from training.loop import History, seeded, train_loop
from training.nn.encoders import AutoencoderConfig, DenseAutoencoder
from training.preprocess.pipeline import PreprocessPipeline

__all__ = ["TrainConfig", "pretrain", "reconstruction_mse"]


def pretrain(
    matrix: ExpressionMatrix,
    pipeline: PreprocessPipeline,
    model_cfg: AutoencoderConfig,
    train_cfg: TrainConfig,
    *,
    progress: bool | None = None,
) -> tuple[DenseAutoencoder, History]:
    """Train an autoencoder to reconstruct preprocessed expression (MSE), early-stopped.

    Parameters
    ----------
    matrix:
        Source samples on the pipeline's input scale, genes in the pipeline's panel order.
    pipeline:
        Fitted preprocessing (fit it on these samples or a superset of the training split only).
    model_cfg:
        Autoencoder shape; ``n_genes`` must equal the panel size.
    train_cfg:
        Optimisation settings; a random ``val_fraction`` of the samples drives early stopping.
    progress:
        Progress bar: ``True``/``False``, or ``None`` for "only on a terminal".

    Returns
    -------
    The autoencoder in eval mode with its best-validation weights, and the training history.
    Same inputs and seed give identical weights on the same machine.
    """
    X = _model_input(matrix, pipeline)
    if model_cfg.n_genes != pipeline.n_genes:
        raise ValueError(
            f"model_cfg.n_genes={model_cfg.n_genes} but the panel has {pipeline.n_genes}"
        )
    n = X.shape[0]
    n_val = max(1, round(train_cfg.val_fraction * n))
    if n - n_val < 1:
        raise ValueError(f"{n} samples are too few to hold out a validation set")
    order = np.random.default_rng(train_cfg.seed).permutation(n)
    val_idx, train_idx = torch.from_numpy(order[:n_val]), torch.from_numpy(order[n_val:])
    with seeded(train_cfg.seed):
        model = DenseAutoencoder(model_cfg)
        history = train_loop(
            model,
            _reconstruction_loss,
            (X[train_idx], None),
            (X[val_idx], None),
            train_cfg,
            progress=progress,
            description="pretrain",
        )
    return model, history


@torch.no_grad()
def reconstruction_mse(
    model: DenseAutoencoder, pipeline: PreprocessPipeline, matrix: ExpressionMatrix
) -> float:
    """Mean squared reconstruction error on preprocessed `matrix` (e.g. held-out samples)."""
    X = _model_input(matrix, pipeline)
    model.eval()
    return float(nn.functional.mse_loss(model(X), X))


def _reconstruction_loss(model: nn.Module, x: torch.Tensor, _: torch.Tensor | None) -> torch.Tensor:
    return nn.functional.mse_loss(model(x), x)


def _model_input(matrix: ExpressionMatrix, pipeline: PreprocessPipeline) -> torch.Tensor:
    if matrix.gene_ids != pipeline.gene_ids:
        raise ValueError("the matrix's genes differ from the pipeline's panel; align them first")
    return torch.from_numpy(pipeline.transform(matrix.X))
