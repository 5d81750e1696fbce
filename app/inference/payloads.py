"""Decoders: a request body in, (sample ids, gene ids, float32 samples × genes matrix) out."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from app.errors import InvalidExpressionData, PayloadTooLarge
from app.schemas.predict import ExpressionIn

MAX_LISTED = 50


@dataclass(frozen=True)
class Expression:
    sample_ids: list[str]
    genes: list[str]
    values: npt.NDArray[np.float32]


def _listed(ids: list[str]) -> str:
    more = f" and {len(ids) - MAX_LISTED} more" if len(ids) > MAX_LISTED else ""
    return ", ".join(ids[:MAX_LISTED]) + more


def decode_records(body: ExpressionIn, *, max_samples: int) -> Expression:
    """Check a records body and turn it into a matrix; every problem names its samples."""
    sample_ids = [s.id for s in body.samples]
    if len(sample_ids) > max_samples:
        raise PayloadTooLarge(
            f"{len(sample_ids)} samples in one request; at most {max_samples} are accepted",
            max_samples=max_samples,
        )
    dupes = sorted(s for s, n in Counter(sample_ids).items() if n > 1)
    if dupes:
        raise InvalidExpressionData(f"duplicate sample ids: {_listed(dupes)}", samples=dupes)
    n_genes = len(body.genes)
    wrong = [s.id for s in body.samples if len(s.values) != n_genes]
    if wrong:
        raise InvalidExpressionData(
            f"{len(wrong)} sample(s) do not have one value per gene ({n_genes} genes): "
            f"{_listed(wrong)}",
            samples=wrong[:MAX_LISTED],
        )
    nulls = [s.id for s in body.samples if any(v is None for v in s.values)]
    if nulls:
        raise InvalidExpressionData(
            f"{len(nulls)} sample(s) have null values: {_listed(nulls)}",
            samples=nulls[:MAX_LISTED],
        )
    values = np.array([s.values for s in body.samples], dtype=np.float32)
    return check_finite(Expression(sample_ids, list(body.genes), values))


def check_finite(expr: Expression) -> Expression:
    """Refuse NaN and ±Inf, naming the samples and genes that hold them."""
    bad = ~np.isfinite(expr.values)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        cols = np.flatnonzero(bad.any(axis=0))
        samples = [expr.sample_ids[i] for i in rows]
        genes = [expr.genes[j] for j in cols]
        raise InvalidExpressionData(
            f"NaN or infinite values in {len(samples)} sample(s): {_listed(samples)} "
            f"(genes: {_listed(genes)})",
            samples=samples[:MAX_LISTED],
            genes=genes[:MAX_LISTED],
        )
    return expr
