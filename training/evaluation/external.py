"""External validation: score a trained model on a second dataset, aligned to its gene panel."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from contract.align import align_matrix
from contract.matrix import ExpressionMatrix
from contract.preprocess.pipeline import PreprocessPipeline
from training.evaluation.metrics import (
    classification_metrics,
    confusion,
    per_class_report,
    predict_labels_from,
)

ProbaFn = Callable[[ExpressionMatrix], npt.NDArray[np.float32]]


@dataclass(frozen=True)
class ExternalResult:
    """Scores on the external set and how well its genes and classes matched the model's."""

    metrics: dict[str, float]
    per_class: dict[str, dict[str, float]]
    confusion: list[list[int]]
    panel_overlap: float
    missing_genes: list[str]
    n_scored: int
    unknown_classes: list[str]


def external_validation(
    proba_fn: ProbaFn,
    pipeline: PreprocessPipeline,
    labels: Sequence[str],
    matrix: ExpressionMatrix,
    label_column: str,
    *,
    min_overlap: float = 0.5,
) -> ExternalResult:
    """Align `matrix` to the model's panel, predict, and score the samples of known classes.

    Parameters
    ----------
    proba_fn:
        Aligned matrix (panel order, input scale) → class probabilities in `labels` order, e.g.
        ``lambda m: predict_proba(encoder, head, pipeline, m)``.
    pipeline:
        The model's preprocessing (its gene panel and fill values).
    labels:
        The model's classes, in output order.
    matrix:
        The external dataset on the model's input scale, with `label_column` in obs.
    label_column:
        obs column with the true classes.
    min_overlap:
        Smallest share of panel genes the external set must have (else ValueError).
    """
    aligned, done = align_matrix(
        matrix, pipeline.panel, pipeline.input_scale, min_overlap=min_overlap
    )
    missing = done.alignment.missing_genes
    truth = matrix.labels(label_column)
    known = np.array([t in set(labels) for t in truth])
    unknown = sorted({t for t in truth if t not in set(labels)})
    if not known.any():
        raise ValueError(f"none of the external classes {unknown} is one the model predicts")
    # a class the model never learned cannot be predicted: score only the shared classes
    subset = aligned.take(np.flatnonzero(known))
    proba = proba_fn(subset)
    true = [t for t, k in zip(truth, known, strict=True) if k]
    pred = predict_labels_from(proba, labels)
    return ExternalResult(
        metrics=classification_metrics(true, pred, proba, labels),
        per_class=per_class_report(true, pred, labels),
        confusion=confusion(true, pred, labels).tolist(),
        panel_overlap=1 - len(missing) / pipeline.n_genes,
        missing_genes=missing,
        n_scored=len(true),
        unknown_classes=unknown,
    )
