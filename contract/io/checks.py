"""Checks every reader applies: unique ids, finite values, and orientation from the ids."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

Orientation = Literal["samples_as_rows", "genes_as_rows"]
OrientationArg = Literal["auto", "samples_as_rows", "genes_as_rows"]

# ids that can only be genes (Ensembl, Entrez-style "ENTREZ:") or only samples (GEO, SRA,
# TCGA barcodes, 10x cell barcodes); anything else (symbols vs "S1") decides nothing
_GENE_ID = re.compile(r"^(ENS[A-Z]*G\d{11}(\.\d+)?|ENTREZ:\d+|ILMN_\d+|\d+_(s_)?at)$", re.I)
_SAMPLE_ID = re.compile(r"^(GSM\d+|SRR\d+|ERR\d+|SRX\d+|TCGA-.*|[ACGT]{10,}(-\d+)?)$", re.I)


def _score(ids: Sequence[str]) -> float:
    sample = list(ids[:500])
    if not sample:
        return 0.0
    genes = sum(bool(_GENE_ID.match(i)) for i in sample)
    samples = sum(bool(_SAMPLE_ID.match(i)) for i in sample)
    return (genes - samples) / len(sample)


def detect_orientation(
    row_ids: Sequence[str], column_ids: Sequence[str]
) -> tuple[Orientation, str]:
    """Which axis holds the genes, judged from the ids, else from the sizes; and why."""
    rows, cols = _score(row_ids), _score(column_ids)
    if abs(rows - cols) >= 0.5:
        if rows > cols:
            return "genes_as_rows", "the row ids look like gene ids"
        return "samples_as_rows", "the column ids look like gene ids"
    # expression tables nearly always measure more genes than they have samples
    if len(row_ids) > len(column_ids):
        return "genes_as_rows", "the ids decide nothing and there are more rows than columns"
    return "samples_as_rows", "the ids decide nothing and there are at least as many columns"


def resolve_orientation(
    orientation: str, row_ids: Sequence[str], column_ids: Sequence[str]
) -> Orientation:
    """An explicit orientation as given, ``auto`` detected; anything else refused."""
    if orientation == "auto":
        return detect_orientation(row_ids, column_ids)[0]
    if orientation not in ("samples_as_rows", "genes_as_rows"):
        raise ValueError(
            f"orientation must be auto, samples_as_rows or genes_as_rows, not {orientation!r}"
        )
    return orientation  # type: ignore[return-value]


def refuse_duplicates(source: object, kind: str, ids: list[str]) -> None:
    """Raise naming the ids that occur more than once."""
    index = pd.Index(ids)
    dupes = index[index.duplicated()].unique().tolist()
    if dupes:
        raise ValueError(f"{source}: duplicate {kind} ids {dupes[:10]}")


def refuse_non_finite(
    source: str, X: npt.NDArray[Any], row_ids: list[str], *, allow_missing: bool = False
) -> None:
    """Raise naming the rows with ±inf (and NaN unless missing values are allowed)."""
    bad = np.isinf(X) if allow_missing else ~np.isfinite(X)
    rows_bad = bad.any(axis=1)
    if rows_bad.any():
        rows = [row_ids[i] for i in np.flatnonzero(rows_bad)]
        what = "infinite values" if allow_missing else "infinite or NaN values"
        raise ValueError(f"{source}: {what} (or beyond float32) in rows {rows[:10]}")


def refuse_missing(source: str, X: npt.NDArray[Any], row_ids: list[str], kind: str) -> None:
    """Raise naming the rows with empty cells (NaN after parsing)."""
    rows_bad = np.isnan(X).any(axis=1)
    if rows_bad.any():
        rows = [row_ids[i] for i in np.flatnonzero(rows_bad)]
        raise ValueError(
            f"{source}: missing values in {len(rows)} {kind} rows, e.g. {rows[:10]} "
            "(allow_missing=True keeps them as NaN, for QC to judge)"
        )
