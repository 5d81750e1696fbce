"""Fine-tune a multi-omics classifier on a published expression encoder and publish it.

The expression is aligned to the encoder's panel (missing genes filled, the overlap reported), a
stratified test split is held out (never fitted on), the network trained on the rest by the
strategy asked for (`training.multiomics.finetune`) and scored on the test split, then exported
with its card (`training.multiomics.export`). Beside it, on the same test split, a logistic
regression on the expression alone and one on the expression plus the modalities (the packed
input the network sees: standardised, missing ones zero with a presence flag): the card's
`selection` holds the three scores and warns when a logistic regression scored higher.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from contract.align import align_matrix
from contract.card import CandidateScore, Metric, ModelCard, Selection
from contract.preprocess.pipeline import PreprocessPipeline
from training.evaluation.baselines import baseline_proba, fit_baseline
from training.evaluation.metrics import classification_metrics
from training.evaluation.splits import hold_out
from training.export.graphs import CardInfo
from training.export.store import model_ref
from training.methods.options import FinetuneOptions
from training.multiomics.data import MultiOmics
from training.multiomics.export import card_extra, export_multiomics_classifier
from training.multiomics.finetune import MultiOmicsResult, finetune_multiomics, pack, predict_proba
from training.nn.config import TrainConfig, config_to_dict
from training.publish.parent import load_autoencoder
from training.train.apply import predict_labels
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
    selection: Selection | None = None


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
    selection = None
    if test.expression.shape[0]:
        proba = predict_proba(result, pipeline, test)
        predicted = predict_labels(proba, result.labels)
        truth = test.expression.labels(label_column)
        scores = classification_metrics(truth, predicted, proba, result.labels)
        where = f"the {len(truth)} held-out test samples ({split.protocol})"
        selection = against_logistic(
            result, pipeline, train, test, label_column, scores, where, seed=train_cfg.seed
        )
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
        info=CardInfo(text, split.training_data(label_column), metrics, extra, job, selection),
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
        selection,
    )


def against_logistic(
    result: MultiOmicsResult,
    pipeline: PreprocessPipeline,
    train: MultiOmics,
    test: MultiOmics,
    label_column: str,
    scores: dict[str, float],
    where: str,
    *,
    seed: int,
) -> Selection:
    """The network's held-out balanced accuracy beside two logistic regressions fitted on the
    same training samples: on the expression alone (what a lab without the other layers would
    fit) and on everything the network sees; a warning for each that scored higher."""

    def expression(m: MultiOmics) -> npt.NDArray[np.float32]:
        return pipeline.transform(m.expression.X)

    def everything(m: MultiOmics) -> npt.NDArray[np.float32]:
        return np.asarray(pack(pipeline, result.scalings, m).numpy(), dtype=np.float32)

    features = {"logistic": expression, "logistic+modalities": everything}
    truth = test.expression.labels(label_column)
    mine = scores["balanced_accuracy"]
    scored = [CandidateScore(name="multiomics", kind="transfer", mean=mine, sd=0.0, folds=[mine])]
    for name, make in features.items():
        model = fit_baseline(
            "logistic", make(train), train.expression.labels(label_column), seed=seed
        )
        predicted = [str(c) for c in model.classes_[baseline_proba(model, make(test)).argmax(1)]]
        value = classification_metrics(truth, predicted, None, result.labels)["balanced_accuracy"]
        scored.append(CandidateScore(name=name, kind="baseline", mean=value, sd=0.0, folds=[value]))
    beaten = [c for c in scored[1:] if c.mean > mine]
    warnings = [
        f"the classical baseline {c.name} scored balanced accuracy {c.mean:.3f} on {where}, above "
        f"this multi-omics model's {mine:.3f}: publish it instead unless the difference is noise"
        for c in beaten
    ]
    best = max(scored[1:], key=lambda c: c.mean)
    side = "above" if mine >= best.mean else "below"
    reason = (
        f"multi-omics models are published as asked (no automatic choice covers them); on {where} "
        f"the model scored balanced accuracy {mine:.3f}, {abs(mine - best.mean):.3f} {side} the "
        f"best logistic regression ({best.name}, {best.mean:.3f}), one split, no repeats."
    )
    return Selection(
        metric="balanced_accuracy",
        protocol=f"{where}; every model fitted on the same training samples",
        candidates=scored,
        winner="multiomics",
        forced=True,
        reason=reason,
        warnings=warnings,
    )
