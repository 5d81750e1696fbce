"""Embed and classify: align a request to a model's panel, run the model, record the call."""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.db import repository
from app.errors import InvalidRequest, WrongInputScale
from app.inference.align import MAX_LISTED, Alignment, align
from app.inference.backend import Array
from app.inference.card import InputScale, ModelKind
from app.inference.genes import Harmonised, harmonise
from app.inference.payloads import Expression
from app.inference.registry import LoadedModel
from app.inference.scale import ScaleReport, detect_scale
from app.schemas.predict import (
    ClassifyOut,
    EmbedOut,
    GeneOverlap,
    ModelUsed,
    SampleEmbedding,
    SamplePrediction,
)


def _overlap(alignment: Alignment, folded: Harmonised) -> GeneOverlap:
    return GeneOverlap(
        matched=alignment.matched,
        panel_size=alignment.panel_size,
        fraction=alignment.fraction,
        missing_genes=alignment.missing_genes[:MAX_LISTED],
        n_missing=len(alignment.missing_genes),
        n_unused_input_genes=len(alignment.unused_input_genes),
        aggregated_duplicates=list(folded.duplicates)[:MAX_LISTED],
        warning=folded.warning(MAX_LISTED),
    )


def check_scale(
    expr: Expression, expected: InputScale, declared: InputScale | None = None
) -> ScaleReport | None:
    """Refuse values on a scale the model cannot take (422 naming both scales and why)."""
    if declared is not None:
        # the caller vouches for the scale: detection is skipped, but a mismatch is still refused
        if declared is expected or {declared, expected} <= {
            InputScale.counts,
            InputScale.normalized,
        }:
            return None
        raise WrongInputScale(
            f"the input was declared {declared.value} but this model expects {expected.value}",
            detected_scale=declared.value,
            expected_scale=expected.value,
        )
    report = detect_scale(expr.values)
    if not report.accepts(expected.value):
        raise WrongInputScale(
            f"the values look like {report.scale} ({report.reason}) but this model expects "
            f"{expected.value}; transform them first, or declare the scale with "
            "?input_scale= if the detection is wrong",
            detected_scale=report.scale,
            expected_scale=expected.value,
        )
    return report


def _run(
    model: LoadedModel, expr: Expression, min_overlap: float, declared: InputScale | None
) -> tuple[dict[str, Array], Alignment, Harmonised]:
    expected = model.card.input_scale
    check_scale(expr, expected, declared)
    folded = harmonise(expr.values, expr.genes, expected.value)
    alignment = align(model.card.panel, model.lookup, folded.genes, min_overlap=min_overlap)
    x = alignment.apply(folded.values, model.fill)
    return model.backend.run(x), alignment, folded


def classify(
    *,
    session: Session,
    model: LoadedModel,
    expr: Expression,
    request_id: str,
    min_overlap: float,
    declared_scale: InputScale | None = None,
) -> ClassifyOut:
    """Class probabilities and the most likely label for every sample."""
    card = model.card
    if card.kind is not ModelKind.classifier or card.labels is None:
        raise InvalidRequest(
            f"{card.name} is a {card.kind} model; classify needs a classifier "
            f"(use /v1/models/{card.name}/embed for an encoder)"
        )
    outputs, alignment, folded = _run(model, expr, min_overlap, declared_scale)
    probs = outputs["probabilities"]
    labels = card.labels
    predictions = [
        SamplePrediction(
            id=sample_id,
            label=labels[int(row.argmax())],
            probabilities={label: float(p) for label, p in zip(labels, row, strict=True)},
        )
        for sample_id, row in zip(expr.sample_ids, probs, strict=True)
    ]
    repository.add_prediction(
        session,
        request_id=request_id,
        task="classify",
        model_name=card.name,
        model_version=card.version,
        sample_ids=expr.sample_ids,
        outputs=[p.model_dump() for p in predictions],
        gene_overlap=alignment.fraction,
    )
    return ClassifyOut(
        request_id=request_id,
        model=ModelUsed(name=card.name, version=card.version),
        gene_overlap=_overlap(alignment, folded),
        predictions=predictions,
    )


def embed(
    *,
    session: Session,
    model: LoadedModel,
    expr: Expression,
    request_id: str,
    min_overlap: float,
    declared_scale: InputScale | None = None,
) -> EmbedOut:
    """The encoder's embedding of every sample (a classifier answers with its own encoder's)."""
    card = model.card
    if not any(o.name == "embedding" for o in card.outputs):
        raise InvalidRequest(
            f"{card.name} has no embedding output; embed with its encoder "
            f"{card.parent.name if card.parent else '(none recorded)'}"
        )
    outputs, alignment, folded = _run(model, expr, min_overlap, declared_scale)
    embeddings = [
        SampleEmbedding(id=sample_id, embedding=row.tolist())
        for sample_id, row in zip(expr.sample_ids, outputs["embedding"], strict=True)
    ]
    repository.add_prediction(
        session,
        request_id=request_id,
        task="embed",
        model_name=card.name,
        model_version=card.version,
        sample_ids=expr.sample_ids,
        outputs=None,
        gene_overlap=alignment.fraction,
    )
    return EmbedOut(
        request_id=request_id,
        model=ModelUsed(name=card.name, version=card.version),
        gene_overlap=_overlap(alignment, folded),
        embeddings=embeddings,
    )
