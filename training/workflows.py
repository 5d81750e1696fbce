"""End-to-end runs shared by the CLI, the demo and jobs: split, pretrain, measure, export.

Fine-tuning a head on a published encoder is in `training.tuning`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from app.inference.card import InputScale, Metric, TrainingData
from training.config import TrainConfig, config_to_dict
from training.data.matrix import ExpressionMatrix
from training.evaluate import stratified_split
from training.export import CardInfo, export_encoder
from training.loop import History
from training.nn.variants import AnyAutoencoderConfig, Autoencoder, VariationalAutoencoder
from training.preprocess.pipeline import PreprocessPipeline
from training.pretrain import pretrain, reconstruction_mse


@dataclass(frozen=True)
class Dataset:
    """A named matrix and the samples held out of all training (the test split)."""

    name: str
    matrix: ExpressionMatrix
    test_idx: npt.NDArray[np.int64]
    protocol: str

    @property
    def train(self) -> ExpressionMatrix:
        """The samples used for fitting."""
        return self.matrix.take(np.setdiff1d(np.arange(self.matrix.shape[0]), self.test_idx))

    @property
    def test(self) -> ExpressionMatrix:
        """The held-out samples (possibly none)."""
        return self.matrix.take(self.test_idx)

    def training_data(self, label_column: str | None) -> TrainingData:
        """The card's description of this data (fingerprint and size of the whole matrix)."""
        return TrainingData(
            name=self.name,
            fingerprint=self.matrix.fingerprint(),
            n_samples=self.matrix.shape[0],
            n_genes=self.matrix.shape[1],
            label_column=label_column,
            heldout_sample_ids=self.test.sample_ids,
        )


def hold_out(
    name: str, matrix: ExpressionMatrix, *, test_fraction: float, seed: int, stratify_by: str | None
) -> Dataset:
    """Split off a test part: stratified by an obs column if given, else at random; 0 keeps all."""
    n = matrix.shape[0]
    if test_fraction == 0:
        return Dataset(name, matrix, np.zeros(0, dtype=np.int64), "no samples held out")
    if stratify_by is not None:
        _, test_idx = stratified_split(matrix.labels(stratify_by), test_fraction, seed)
        how = f"stratified by {stratify_by}"
    else:
        rng = np.random.default_rng(seed)
        test_idx = np.sort(rng.permutation(n)[: max(1, round(test_fraction * n))]).astype(np.int64)
        how = "at random"
    protocol = f"{len(test_idx)} of {n} samples ({test_fraction:.0%}, {how}, seed {seed}) held out"
    return Dataset(name, matrix, test_idx, protocol)


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
    progress: bool | None = None,
) -> EncoderRun:
    """Fit preprocessing and an autoencoder on the training split, then publish the encoder."""
    train = dataset.train
    pipeline = PreprocessPipeline.fit(train, input_scale, clip=clip)
    model, history = pretrain(train, pipeline, model_cfg, train_cfg, progress=progress)
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
    extra = {"train_config": config_to_dict(train_cfg), "history": summary(history)}
    folder = export_encoder(
        model,
        pipeline,
        name=name,
        models_dir=models_dir,
        info=CardInfo(description, dataset.training_data(None), metrics, extra),
        reference=train.X,
    )
    return EncoderRun(folder, model, pipeline, history, metrics)


def summary(history: History) -> dict[str, Any]:
    # no wall-clock time here: config.json is hashed into the card and should be reproducible
    return {
        "epochs_run": len(history.train_loss),
        "best_epoch": history.best_epoch,
        "best_val_loss": history.best_val_loss,
        "stopped_early": history.stopped_early,
    }
