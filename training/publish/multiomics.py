"""Fine-tune a multi-omics classifier on a published expression encoder and publish it.

The expression is aligned to the encoder's panel (missing genes filled, the overlap reported), a
stratified test split is held out (never fitted on), the network trained on the rest by the
strategy asked for (`training.methods.multiomics`) and scored on the test split, then exported
with its card (`training.export.multiomics`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contract.align import align_matrix
from contract.card import Metric, ModelCard
from contract.preprocess.pipeline import PreprocessPipeline
from training.data.multiomics import MultiOmics
from training.evaluation.metrics import classification_metrics
from training.evaluation.splits import hold_out
from training.export.graphs import CardInfo
from training.export.multiomics import card_extra, export_multiomics_classifier
from training.export.store import model_ref
from training.methods.multiomics import finetune_multiomics, predict_proba
from training.nn.config import TrainConfig, config_to_dict
from training.publish.head import load_autoencoder
from training.train.apply import predict_labels
from training.train.finetune import FinetuneOptions
from training.train.loop import History


@dataclass(frozen=True)
class MultiOmicsRun:
    """A published multi-omics classifier, its held-out scores and what the data had."""

    folder: Path
    labels: list[str]
    history: History
    scores: dict[str, float]
    n_test: int
    n_missing_genes: int
    n_panel_genes: int
    presence: dict[str, float]


def multiomics_and_export(
    data: MultiOmics,
    *,
    data_name: str,
    encoder_folder: Path,
    label_column: str,
    train_cfg: TrainConfig,
    options: FinetuneOptions,
    name: str,
    models_dir: Path,
    description: str = "",
    test_fraction: float = 0.2,
    logit: tuple[str, ...] = ("methylation",),
    progress: bool | None = None,
    job: str | None = None,
) -> MultiOmicsRun:
    """Load the encoder, hold out a test split, train, score and publish the classifier.

    Parameters
    ----------
    data:
        Expression (labels in its obs) and the added modalities, keyed by sample id.
    data_name:
        What the training data are called on the card.
    encoder_folder:
        The published expression encoder's version folder.
    label_column:
        The obs column with each sample's class.
    train_cfg, options:
        Optimisation, and the expression encoder's strategy.
    name, models_dir, description:
        Where and how the version is published.
    test_fraction:
        Stratified share held out for the card's test metrics (0: none).
    logit:
        Modalities of β-values (logit to M-values before standardisation).
    progress:
        Progress bars.
    job:
        The service job publishing this version, if any.
    """
    card = ModelCard.read(encoder_folder)
    expr, done = align_matrix(data.expression, card.panel, card.input_scale)
    aligned = MultiOmics(expr, data.modalities)
    pipeline = PreprocessPipeline.load(encoder_folder)
    split = hold_out(
        data_name, expr, test_fraction=test_fraction, seed=train_cfg.seed, stratify_by=label_column
    )
    is_test = np.zeros(expr.shape[0], dtype=bool)
    is_test[split.test_idx] = True
    train, test = aligned.take(~is_test), aligned.take(is_test)
    autoencoder = load_autoencoder(encoder_folder)
    result = finetune_multiomics(
        autoencoder.encoder,
        pipeline,
        train,
        label_column,
        train_cfg,
        options=options,
        logit=logit,
        progress=progress,
    )
    scores: dict[str, float] = {}
    if test.expression.shape[0]:
        proba = predict_proba(result, pipeline, test)
        predicted = predict_labels(proba, result.labels)
        truth = test.expression.labels(label_column)
        scores = classification_metrics(truth, predicted, proba, result.labels)
    n_missing = len(done.alignment.missing_genes)
    shares = ", ".join(f"{k} {v:.0%}" for k, v in train.presence().items())
    protocol = (
        f"{split.protocol}; expression encoder {card.name} v{card.version} ({options.strategy}) "
        f"+ modalities {', '.join(data.names)} (present in the training rows: {shares})"
    )
    metrics = [Metric(name=k, value=v, split="test", protocol=protocol) for k, v in scores.items()]
    extra = card_extra(result, train.presence()) | {
        "train_config": config_to_dict(train_cfg),
        "finetune_options": config_to_dict(options),
        "missing_panel_genes": n_missing,
    }
    text = description or (
        f"Multi-omics classifier of {label_column!r}: expression through {card.name} "
        f"v{card.version} ({options.strategy}) plus {', '.join(data.names)}."
    )
    folder = export_multiomics_classifier(
        result,
        pipeline,
        name=name,
        models_dir=models_dir,
        info=CardInfo(text, split.training_data(label_column), metrics, extra, job),
        reference=train,
        parent=model_ref(encoder_folder),
    )
    return MultiOmicsRun(
        folder,
        result.labels,
        result.history,
        scores,
        int(is_test.sum()),
        n_missing,
        len(pipeline.gene_ids),
        train.presence(),
    )
