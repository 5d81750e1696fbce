"""Embed and classify: align a request to a model's panel, run the model, record the call.

Alignment and the database write run in worker threads; inference goes through the model
version's batcher, so concurrent requests share ONNX Runtime calls.
"""

from __future__ import annotations

import asyncio

from sqlalchemy.orm import Session

from app.db import repository
from app.errors import InvalidRequest
from app.inference.align import MAX_LISTED, Alignment, align
from app.inference.backend import Array
from app.inference.card import ModelKind
from app.inference.payloads import Expression
from app.inference.registry import LoadedModel
from app.schemas.predict import (
    ClassifyOut,
    EmbedOut,
    GeneOverlap,
    ModelUsed,
    SampleEmbedding,
    SamplePrediction,
)


def _overlap(alignment: Alignment) -> GeneOverlap:
    return GeneOverlap(
        matched=alignment.matched,
        panel_size=alignment.panel_size,
        fraction=alignment.fraction,
        missing_genes=alignment.missing_genes[:MAX_LISTED],
        n_missing=len(alignment.missing_genes),
        n_unused_input_genes=len(alignment.unused_input_genes),
    )


def _align(model: LoadedModel, expr: Expression, min_overlap: float) -> tuple[Array, Alignment]:
    alignment = align(model.card.panel, model.lookup, expr.genes, min_overlap=min_overlap)
    return alignment.apply(expr.values, model.fill), alignment


async def _run(
    model: LoadedModel, expr: Expression, min_overlap: float
) -> tuple[dict[str, Array], Alignment]:
    x, alignment = await asyncio.to_thread(_align, model, expr, min_overlap)
    return await model.batcher.run(x), alignment


async def classify(
    *, session: Session, model: LoadedModel, expr: Expression, request_id: str, min_overlap: float
) -> ClassifyOut:
    """Class probabilities and the most likely label for every sample."""
    card = model.card
    if card.kind is not ModelKind.classifier or card.labels is None:
        raise InvalidRequest(
            f"{card.name} is a {card.kind} model; classify needs a classifier "
            f"(use /v1/models/{card.name}/embed for an encoder)"
        )
    outputs, alignment = await _run(model, expr, min_overlap)
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
    await asyncio.to_thread(
        repository.add_prediction,
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
        gene_overlap=_overlap(alignment),
        predictions=predictions,
    )


async def embed(
    *, session: Session, model: LoadedModel, expr: Expression, request_id: str, min_overlap: float
) -> EmbedOut:
    """The encoder's embedding of every sample (a classifier answers with its own encoder's)."""
    card = model.card
    if not any(o.name == "embedding" for o in card.outputs):
        raise InvalidRequest(
            f"{card.name} has no embedding output; embed with its encoder "
            f"{card.parent.name if card.parent else '(none recorded)'}"
        )
    outputs, alignment = await _run(model, expr, min_overlap)
    embeddings = [
        SampleEmbedding(id=sample_id, embedding=row.tolist())
        for sample_id, row in zip(expr.sample_ids, outputs["embedding"], strict=True)
    ]
    await asyncio.to_thread(
        repository.add_prediction,
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
        gene_overlap=_overlap(alignment),
        embeddings=embeddings,
    )
