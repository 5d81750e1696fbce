"""Classify with a multi-omics model: align the expression to the panel as for any model, each
modality's block to the model's features (its own overlap report), pack the rows (a NaN row for
a sample without a modality, `contract.modality`), run the model, record the call.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

from app.codecs.multiomics import Block, MultiOmicsRequest
from app.db.writer import PredictionWriter
from app.errors import InsufficientGeneOverlap, InvalidRequest
from app.inference.registry import LoadedModel
from app.schemas.multiomics import ModalityOverlap, MultiOmicsClassifyOut
from app.schemas.predict import ModelUsed
from app.services.predict import gene_overlap
from contract.align import MAX_LISTED, PanelInput, to_panel
from contract.card import InputScale
from contract.modality import ModalityInput
from contract.scale import refuse_negative


def _modality(
    spec: ModalityInput, block: Block | None, sample_ids: list[str], min_overlap: float
) -> tuple[np.ndarray[Any, np.dtype[np.float32]], ModalityOverlap]:
    """The modality's columns for every sample (NaN rows where absent) and its overlap."""
    n = len(sample_ids)
    out = np.full((n, spec.n_features), np.nan, dtype=np.float32)
    if block is None:
        return out, ModalityOverlap(
            sent=False, n_samples_present=0, matched=0, n_features=spec.n_features,
            fraction=0.0, missing_features=[], n_missing=spec.n_features,
            n_unused_input_features=0,
        )  # fmt: skip
    where = {f: j for j, f in enumerate(block.features)}
    columns = [where.get(f, -1) for f in spec.features]
    matched = sum(c >= 0 for c in columns)
    fraction = matched / spec.n_features
    if fraction < min_overlap:
        raise InsufficientGeneOverlap(
            f"modality {spec.name!r}: {matched} of the model's {spec.n_features} features in the "
            f"block ({fraction:.0%} < {min_overlap:.0%})",
            modality=spec.name,
        )
    rows = {s: i for i, s in enumerate(sample_ids)}
    take = np.asarray([rows[s] for s in block.sample_ids], dtype=np.int64)
    fill = np.asarray(spec.fill_values, dtype=np.float32)
    filled = np.broadcast_to(fill, (len(take), spec.n_features)).copy()
    have = np.asarray([c >= 0 for c in columns])
    filled[:, have] = block.values[:, [c for c in columns if c >= 0]]
    out[take] = filled
    missing = [f for f, c in zip(spec.features, columns, strict=True) if c < 0]
    used = set(spec.features)
    return out, ModalityOverlap(
        sent=True,
        n_samples_present=len(take),
        matched=matched,
        n_features=spec.n_features,
        fraction=fraction,
        missing_features=missing[:MAX_LISTED],
        n_missing=len(missing),
        n_unused_input_features=sum(f not in used for f in block.features),
    )


def _prepare(
    model: LoadedModel, req: MultiOmicsRequest, min_overlap: float, declared: InputScale | None
) -> tuple[np.ndarray[Any, np.dtype[np.float32]], PanelInput, dict[str, ModalityOverlap]]:
    card, expr = model.card, req.expr
    done = to_panel(
        expr.values, expr.genes, model.index, card.input_scale,
        min_overlap=min_overlap, declared=declared, transforms=card.input_transforms,
    )  # fmt: skip
    refuse_negative(expr.values, card.input_scale, expr.sample_ids, declared)
    parts, overlaps = [done.values], {}
    for spec in card.modalities or []:
        values, overlaps[spec.name] = _modality(
            spec, req.blocks.get(spec.name), expr.sample_ids, min_overlap
        )
        parts.append(values)
    return np.ascontiguousarray(np.hstack(parts), dtype=np.float32), done, overlaps


async def classify(
    *,
    writer: PredictionWriter,
    model: LoadedModel,
    req: MultiOmicsRequest,
    request_id: str,
    min_overlap: float,
    declared_scale: InputScale | None = None,
) -> MultiOmicsClassifyOut:
    """Class probabilities, the label and the modalities each sample was answered without."""
    card = model.card
    if card.labels is None or card.modalities is None:
        raise InvalidRequest(f"{card.name} is not a multi-omics classifier")
    packed, done, overlaps = await asyncio.to_thread(
        _prepare, model, req, min_overlap, declared_scale
    )
    outputs = await model.batcher.run(packed)
    present = {name: set(block.sample_ids) for name, block in req.blocks.items()}
    names = [m.name for m in card.modalities]
    probabilities = outputs["probabilities"]
    best = probabilities.argmax(axis=1).tolist()
    labels = card.labels
    plain = [
        {
            "id": sample_id,
            "label": labels[k],
            "probabilities": dict(zip(labels, row, strict=True)),
            "missing_modalities": [n for n in names if sample_id not in present.get(n, ())],
        }
        for sample_id, k, row in zip(req.expr.sample_ids, best, probabilities.tolist(), strict=True)
    ]
    await writer.record(
        request_id=request_id,
        task="classify",
        model_name=card.name,
        model_version=card.version,
        sample_ids=req.expr.sample_ids,
        outputs=plain,
        gene_overlap=done.alignment.fraction,
    )
    return MultiOmicsClassifyOut.model_validate(
        {
            "request_id": request_id,
            "model": ModelUsed(name=card.name, version=card.version),
            "gene_overlap": gene_overlap(done.alignment, done.folded),
            "transform_applied": done.transform.describe() if done.transform else None,
            "predictions": plain,
            "modality_overlap": overlaps,
        }
    )
