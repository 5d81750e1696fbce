"""End-to-end runs shared by the CLI and the demo: split, train, measure, export with a card."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from app.inference.card import InputScale, Metric, ModelCard, TrainingData
from training.checkpoint import load_checkpoint
from training.config import TrainConfig, config_to_dict
from training.data.align import align_to_panel
from training.data.matrix import ExpressionMatrix
from training.evaluate import classification_metrics, stratified_split
from training.export import CardInfo, export_classifier, export_encoder
from training.finetune import FinetuneOptions, finetune_classifier, predict_labels, predict_proba
from training.loop import History
from training.nn.encoders import DenseAutoencoder
from training.nn.heads import ClassifierHeadConfig
from training.nn.variants import (
    AnyAutoencoderConfig,
    Autoencoder,
    DenoisingAutoencoder,
    VariationalAutoencoder,
)
from training.preprocess.pipeline import PreprocessPipeline
from training.pretrain import pretrain, reconstruction_mse
from training.versions import model_ref


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
    extra = {"train_config": config_to_dict(train_cfg), "history": _summary(history)}
    folder = export_encoder(
        model,
        pipeline,
        name=name,
        models_dir=models_dir,
        info=CardInfo(description, dataset.training_data(None), metrics, extra),
        reference=train.X,
    )
    return EncoderRun(folder, model, pipeline, history, metrics)


@dataclass(frozen=True)
class ClassifierRun:
    """A published classifier and its held-out scores."""

    folder: Path
    labels: list[str]
    history: History
    scores: dict[str, float]
    n_test: int
    n_missing_genes: int
    n_panel_genes: int = 0


def finetune_and_export(
    dataset: Dataset,
    *,
    encoder_folder: Path,
    label_column: str,
    head_hidden: tuple[int, ...],
    head_dropout: float,
    train_cfg: TrainConfig,
    name: str,
    models_dir: Path,
    description: str,
    options: FinetuneOptions | None = None,
    progress: bool | None = None,
) -> ClassifierRun:
    """Load a published encoder, fine-tune a head on the training split (frozen), publish it."""
    encoder_card = ModelCard.read(encoder_folder)
    parent = model_ref(encoder_folder)
    loaded = load_checkpoint(encoder_folder).parts.get("autoencoder")
    if not isinstance(loaded, DenseAutoencoder | DenoisingAutoencoder | VariationalAutoencoder):
        raise ValueError(f"{encoder_folder}: the checkpoint holds no autoencoder")
    autoencoder: Autoencoder = loaded
    pipeline = PreprocessPipeline.load(encoder_folder)
    matrix, missing = align_to_panel(dataset.matrix, pipeline.gene_ids, pipeline.fill_values)
    aligned = Dataset(dataset.name, matrix, dataset.test_idx, dataset.protocol)
    train, test = aligned.train, aligned.test
    n_classes = len(set(train.labels(label_column)))
    head_cfg = ClassifierHeadConfig(
        n_in=autoencoder.config.latent,
        n_classes=n_classes,
        hidden=head_hidden,
        dropout=head_dropout,
    )
    options = options or FinetuneOptions()
    result = finetune_classifier(
        autoencoder.encoder,
        pipeline,
        train,
        label_column,
        head_cfg,
        train_cfg,
        strategy=options,
        progress=progress,
    )
    # the exported graph and checkpoint carry the encoder as fine-tuned (unchanged when frozen)
    autoencoder.encoder = result.encoder  # type: ignore[assignment]
    scores: dict[str, float] = {}
    metrics: list[Metric] = []
    if test.shape[0]:
        proba = predict_proba(autoencoder.encoder, result.head, pipeline, test)
        truth = test.labels(label_column)
        scores = classification_metrics(
            truth, predict_labels(proba, result.labels), proba, result.labels
        )
        protocol = _classifier_protocol(
            aligned, encoder_card, train_cfg, label_column, options.strategy
        )
        metrics = [
            Metric(name=k, value=v, split="test", protocol=protocol) for k, v in scores.items()
        ]
    extra: dict[str, Any] = {
        "train_config": config_to_dict(train_cfg),
        "strategy": result.strategy,
        "history": _summary(result.history),
        "missing_panel_genes": len(missing),
        "panel_overlap": 1 - len(missing) / len(pipeline.gene_ids),
    }
    folder = export_classifier(
        autoencoder,
        result.head,
        pipeline,
        result.labels,
        name=name,
        models_dir=models_dir,
        info=CardInfo(description, aligned.training_data(label_column), metrics, extra),
        reference=train.X,
        parent=parent,
    )
    return ClassifierRun(
        folder,
        result.labels,
        result.history,
        scores,
        test.shape[0],
        len(missing),
        len(pipeline.gene_ids),
    )


def _classifier_protocol(
    dataset: Dataset,
    encoder_card: ModelCard,
    train_cfg: TrainConfig,
    label_column: str,
    strategy: str = "frozen",
) -> str:
    parent_data = encoder_card.training_data
    # only claim the encoder never saw the test samples when its card proves it
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
        f"{encoder_note}. Head trained with class-weighted cross-entropy ({strategy} encoder), "
        f"early-stopped on a stratified {train_cfg.val_fraction:.0%} validation part of the "
        f"training split (seed {train_cfg.seed}); scores on the held-out samples, labels from "
        f"obs column {label_column!r}, scikit-learn metrics (macro-F1 over classes present)."
    )


def _summary(history: History) -> dict[str, Any]:
    # no wall-clock time here: config.json is hashed into the card and should be reproducible
    return {
        "epochs_run": len(history.train_loss),
        "best_epoch": history.best_epoch,
        "best_val_loss": history.best_val_loss,
        "stopped_early": history.stopped_early,
    }
