"""Multi-omics request bodies: /v1 JSON with a block per modality, and KServe v2 with a tensor
per modality (`contract.modality`: a NaN row in a modality's tensor is a missing modality).

Every refusal is a 422 naming the modality at fault (``modality`` in the problem body).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pydantic_core
from fastapi import Request
from pydantic import ValidationError

from app.codecs.negotiate import JSON, inflate, media_type
from app.codecs.payloads import Expression, check_count, decode_json
from app.errors import InvalidExpressionData, InvalidRequest, UnsupportedMediaType
from app.inference.backend import Array
from app.schemas.multiomics import MultiOmicsIn
from contract.card import ModelCard
from contract.modality import ModalityInput


@dataclass(frozen=True)
class Block:
    """One modality's samples (a subset of the request's), feature names and raw values."""

    sample_ids: list[str]
    features: list[str]
    values: Array


@dataclass(frozen=True)
class MultiOmicsRequest:
    expr: Expression
    blocks: dict[str, Block]


async def read_multiomics(
    request: Request, *, card: ModelCard, max_samples: int, max_bytes: int
) -> MultiOmicsRequest:
    """The body of a multi-omics classify request (JSON only), decoded in a worker thread."""
    kind = media_type(request.headers.get("content-type"))
    if kind != JSON:
        raise UnsupportedMediaType(
            f"Content-Type {kind!r}: {card.name} is a multi-omics model and takes JSON with a "
            "block per modality ({'expression': ..., 'modalities': {...}})"
        )
    raw = await request.body()
    encoding = request.headers.get("content-encoding")

    def decode() -> MultiOmicsRequest:
        return decode_multiomics(
            inflate(raw, encoding, max_bytes), card=card, max_samples=max_samples
        )

    return await asyncio.to_thread(decode)


def decode_multiomics(body: bytes, *, card: ModelCard, max_samples: int) -> MultiOmicsRequest:
    """Parse and check the blocks: known modalities, one value per feature, finite values."""
    try:
        data = pydantic_core.from_json(body)  # reads NaN/Infinity, refused below by name
    except ValueError as exc:
        raise InvalidRequest(f"The request body is malformed: invalid JSON ({exc})") from exc
    try:
        parsed = MultiOmicsIn.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = [str(p) for p in first["loc"]]
        extra = {"modality": loc[1]} if len(loc) > 1 and loc[0] == "modalities" else {}
        raise InvalidRequest(
            f"{card.name} is a multi-omics model: {'.'.join(loc) or 'body'}: {first['msg']}",
            **extra,
        ) from exc
    expr = decode_json(orjson.dumps(parsed.expression), max_samples=max_samples)
    known = {m.name: m for m in card.modalities or []}
    ids = set(expr.sample_ids)
    blocks = {}
    for name, block in parsed.modalities.items():
        if name not in known:
            raise InvalidRequest(
                f"unknown modality {name!r}; {card.name} takes {sorted(known)}", modality=name
            )
        features = list(block.features)
        if len(set(features)) != len(features):
            dupes = sorted({f for f in features if features.count(f) > 1})
            raise InvalidRequest(
                f"modality {name!r}: duplicate features {dupes[:50]}", modality=name
            )
        sample_ids = [s.id for s in block.samples]
        wrong = [s.id for s in block.samples if len(s.values) != len(features)]
        if wrong:
            raise InvalidExpressionData(
                f"modality {name!r}: samples {wrong[:50]} do not have one value per feature "
                f"({len(features)})",
                modality=name,
                samples=wrong[:50],
            )
        unknown = [s for s in sample_ids if s not in ids]
        if unknown or len(set(sample_ids)) != len(sample_ids):
            raise InvalidRequest(
                f"modality {name!r}: sample ids must be unique and among the expression's "
                f"(not {unknown[:50]})",
                modality=name,
            )
        values = np.asarray([s.values for s in block.samples], dtype=np.float64)
        blocks[name] = Block(
            sample_ids, features, check_values(name, values, known[name], sample_ids)
        )
    return MultiOmicsRequest(expr, blocks)


def check_values(
    name: str,
    values: np.ndarray[Any, np.dtype[np.floating[Any]]],
    spec: ModalityInput,
    sample_ids: list[str] | None = None,
) -> Array:
    """Finite values (and β-values within [0, 1] for a logit modality) as float32."""
    with np.errstate(over="ignore"):
        x = values.astype(np.float32)
    bad = ~np.isfinite(x)
    if spec.transform == "logit":
        bad |= (x < 0) | (x > 1)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1)).tolist()
        named = [sample_ids[r] if sample_ids else str(r) for r in rows[:50]]
        what = (
            "non-finite or outside [0, 1] (β-values)" if spec.transform == "logit" else "non-finite"
        )
        raise InvalidExpressionData(
            f"modality {name!r}: {what} values in samples {named}", modality=name, samples=named
        )
    return x


def v2_modalities(
    inputs: list[Any], tensor: Any, card: ModelCard, n_samples: int, max_samples: int
) -> Array:
    """The packed modality columns of a v2 request (NaN rows where a sample lacks one).

    `inputs` are the request's inputs after ``expression``; `tensor(spec, width)` decodes one.
    A modality left out is missing for every sample; in binary tensors a row of NaN is missing
    for that sample. Any other NaN, an unknown name or a wrong shape is refused by name.
    """
    known: Mapping[str, ModalityInput] = {m.name: m for m in card.modalities or []}
    given: dict[str, Array] = {}
    for spec in inputs:
        name = spec.get("name") if isinstance(spec, dict) else None
        if not isinstance(name, str) or name not in known or name in given:
            raise InvalidRequest(
                f"input {name!r}: {card.name} takes 'expression' then any of {list(known)}, "
                "each once",
                modality=str(name),
            )
        x = tensor(spec, known[name].n_features)
        check_count(x.shape[0], max_samples)
        if x.shape[0] != n_samples:
            raise InvalidRequest(
                f"input {name!r} has {x.shape[0]} rows, expression {n_samples}", modality=name
            )
        missing = np.isnan(x).all(axis=1)
        check_values(name, np.where(missing[:, None], 0.5, x), known[name])
        given[name] = x
    parts = [
        given.get(m.name, np.full((n_samples, m.n_features), np.nan, dtype=np.float32))
        for m in card.modalities or []
    ]
    return np.ascontiguousarray(np.hstack(parts), dtype=np.float32)
