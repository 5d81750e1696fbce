"""Fine-tune a head on a published encoder and publish encoder + head as a new version.

Shared by `genexfer train finetune`, the demo and fine-tuning jobs. The target is aligned to the
encoder's gene panel (missing genes filled, the overlap reported; `training.publish.parent`);
classification trains a class-weighted cross-entropy head, regression an MSE head on the
standardised target. The card words the metric protocol and records the choice's inner-CV score.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contract.card import Metric, ModelCard, Selection
from contract.matrix import ExpressionMatrix
from contract.preprocess.pipeline import PreprocessPipeline
from contract.vocab import Task
from training.evaluation.metrics import classification_metrics, regression_metrics
from training.evaluation.splits import Dataset
from training.export.card import CardInfo
from training.export.heads import export_classifier, export_regressor
from training.export.store import model_ref
from training.methods.options import FinetuneOptions
from training.nn.config import TrainConfig
from training.nn.heads import ClassifierHeadConfig, RegressorHeadConfig
from training.nn.variants import Autoencoder
from training.publish.parent import finetune_record, held_out_note, load_and_align
from training.train.apply import numeric_target, predict_labels, predict_proba, predict_values
from training.train.finetune import FinetuneResult, finetune_classifier, finetune_regressor
from training.train.loop import History


@dataclass(frozen=True)
class HeadRun:
    """A published classifier or regressor and its held-out scores."""

    folder: Path
    labels: list[str]  # class names, or the one target's name
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
    task: Task = "classification",
    options: FinetuneOptions | None = None,
    progress: bool | None = None,
    job: str | None = None,
    unlabelled: ExpressionMatrix | None = None,
    domain_column: str | None = None,
    input_conversion: Mapping[str, Any] | None = None,
    selection: Selection | None = None,
    n_missing_genes: int | None = None,
) -> HeadRun:
    """Load a published encoder, fine-tune a head on the training split, publish both.

    Parameters
    ----------
    dataset:
        The target data with its held-out test split (never used for fitting).
    encoder_folder:
        A published encoder's version folder (weights, config, preprocessing, card).
    label_column:
        The obs column to predict: class labels, or numbers for regression.
    head_hidden, head_dropout:
        The head's hidden widths and dropout.
    train_cfg:
        Epochs, batch size, learning rate, validation share, patience, seed.
    name, models_dir:
        Where the new version is published.
    description:
        The card's description.
    task:
        ``classification`` (outputs logits and probabilities) or ``regression`` (output
        ``prediction`` on the column's own scale).
    options:
        The fine-tuning strategy (frozen by default).
    progress:
        Progress bars (None: when attached to a terminal).
    job:
        The service job this run belongs to (its id): the card names it, and a job never
        publishes a second version (an earlier attempt's version is returned instead).
    unlabelled:
        Rows without a label (the new domain's samples), aligned to the panel like the data;
        used by the options' adaptation and semi-supervision.
    domain_column:
        obs column of the data and `unlabelled` naming each row's batch or lab.
    input_conversion:
        What was done to the values before they came here (recorded with the model).
    selection:
        The inner-CV comparison this strategy won or was compared in (`training.choice`); the
        card records it, and the winner's inner-CV score as a metric.
    n_missing_genes:
        The panel genes the caller's data lacked, when the caller aligned `dataset` already
        (this function's own alignment then finds none missing).
    """
    encoder_card, autoencoder, pipeline, aligned, unlabelled, n_missing = load_and_align(
        encoder_folder, dataset, unlabelled, n_missing_genes
    )
    train, test = aligned.train, aligned.test
    options = options or FinetuneOptions()
    latent = autoencoder.config.latent
    result: FinetuneResult
    if task == "classification":
        n_classes = len(set(train.labels(label_column)))
        result = finetune_classifier(
            autoencoder.encoder,
            pipeline,
            train,
            label_column,
            ClassifierHeadConfig(latent, n_classes, head_hidden, head_dropout),
            train_cfg,
            strategy=options,
            progress=progress,
            unlabelled=unlabelled,
            domain_column=domain_column,
        )
    else:
        result = finetune_regressor(
            autoencoder.encoder,
            pipeline,
            train,
            label_column,
            RegressorHeadConfig(latent, 1, head_hidden, head_dropout),
            train_cfg,
            strategy=options,
            progress=progress,
            unlabelled=unlabelled,
            domain_column=domain_column,
        )
    # the exported graph and checkpoint carry the encoder as fine-tuned (unchanged when frozen)
    autoencoder.encoder = result.encoder  # type: ignore[assignment]
    scores = _scores(task, autoencoder, result, pipeline, test, label_column)
    protocol = _protocol(task, aligned, encoder_card, label_column, result)
    metrics = [Metric(name=k, value=v, split="test", protocol=protocol) for k, v in scores.items()]
    metrics += selection_metrics(selection)
    extra: dict[str, Any] = {
        "task": task,
        **finetune_record(train_cfg, result, n_missing, len(pipeline.gene_ids), input_conversion),
    }
    export = export_classifier if task == "classification" else export_regressor
    folder = export(
        autoencoder,
        result.head,
        pipeline,
        result.labels,
        name=name,
        models_dir=models_dir,
        info=CardInfo(
            description, aligned.training_data(label_column), metrics, extra, job, selection
        ),
        reference=train.X,
        parent=model_ref(encoder_folder),
    )
    return HeadRun(
        folder,
        result.labels,
        result.history,
        scores,
        test.shape[0],
        n_missing,
        len(pipeline.gene_ids),
    )


def selection_metrics(selection: Selection | None) -> list[Metric]:
    """The published candidate's inner-CV score as a card metric (none without a choice)."""
    if selection is None:
        return []
    won = next(c for c in selection.candidates if c.name == selection.winner)
    return [
        Metric(name=selection.metric, value=won.mean, split="inner_cv", protocol=selection.protocol)
    ]


def _scores(
    task: Task,
    autoencoder: Autoencoder,
    result: FinetuneResult,
    pipeline: PreprocessPipeline,
    test: ExpressionMatrix,
    label_column: str,
) -> dict[str, float]:
    if task == "classification":
        if test.shape[0] == 0:
            return {}
        proba = predict_proba(autoencoder.encoder, result.head, pipeline, test)
        predicted = predict_labels(proba, result.labels)
        return classification_metrics(test.labels(label_column), predicted, proba, result.labels)
    if test.shape[0] < 2:  # R² and Spearman need two samples
        return {}
    predicted_values = predict_values(autoencoder.encoder, result.head, pipeline, test)
    return regression_metrics(numeric_target(test, label_column), predicted_values)


def _protocol(
    task: Task,
    dataset: Dataset,
    encoder_card: ModelCard,
    label_column: str,
    result: FinetuneResult,
) -> str:
    strategy, options, history = result.strategy, result.options, result.history
    methods = "".join(
        [
            f", {options.adaptation} adaptation (λ {options.adaptation_weight:g})"
            if options.adaptation != "none"
            else "",
            f", {options.semi_supervised} on {result.n_unlabelled} unlabelled samples"
            if options.semi_supervised != "none"
            else "",
        ]
    )
    stopped = f"early stopping on the {history.validation}"
    if task == "classification":
        how = (
            f"Head trained with class-weighted cross-entropy ({strategy} encoder{methods}), "
            f"{stopped}; scores on the held-out samples, labels from obs column "
            f"{label_column!r}, scikit-learn metrics (macro-F1 over classes present)."
        )
    else:
        how = (
            f"Head trained with mean squared error on the standardised target ({strategy} "
            f"encoder{methods}), {stopped}; R², mean absolute error (in the units of obs column "
            f"{label_column!r}) and Spearman correlation on the held-out samples."
        )
    return f"{held_out_note(dataset, encoder_card)} {how}"
