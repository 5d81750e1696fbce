"""Aligning a matrix to a model's gene panel (reorder, fill the missing genes, drop the rest)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from app.inference.genes import gene_key
from training.data.matrix import ExpressionMatrix


def align_to_panel(
    matrix: ExpressionMatrix,
    panel: Sequence[str],
    fill_values: Sequence[float],
    *,
    min_overlap: float = 0.5,
) -> tuple[ExpressionMatrix, list[str]]:
    """The matrix with exactly the panel's genes in panel order, and the panel genes it lacked.

    Parameters
    ----------
    matrix:
        Samples on the model's input scale.
    panel:
        Gene ids the model expects, in order.
    fill_values:
        Value per panel gene for a gene the matrix lacks (the training mean on the input scale).
    min_overlap:
        Smallest share of panel genes the matrix must have; fewer raises ValueError, since
        a mostly-filled profile says little about the sample.
    """
    if len(fill_values) != len(panel):
        raise ValueError(f"{len(fill_values)} fill values for a panel of {len(panel)} genes")
    # the service's rule: Ensembl versions and case do not tell genes apart
    column = {gene_key(gene): j for j, gene in enumerate(matrix.gene_ids)}
    present = [gene_key(g) in column for g in panel]
    overlap = sum(present) / len(panel)
    if overlap < min_overlap:
        raise ValueError(
            f"the data has {sum(present)} of the model's {len(panel)} genes ({overlap:.0%}); "
            f"at least {min_overlap:.0%} are needed. Are the gene ids of the same kind?"
        )
    X = np.tile(np.asarray(fill_values, dtype=np.float32), (matrix.shape[0], 1))
    have = np.flatnonzero(present)
    source = np.array([column[gene_key(panel[int(j)])] for j in have], dtype=np.int64)
    X[:, have] = matrix.X[:, source]
    missing = [g for g, p in zip(panel, present, strict=True) if not p]
    aligned = ExpressionMatrix(
        X=X, sample_ids=matrix.sample_ids, gene_ids=list(panel), obs=matrix.obs
    )
    return aligned, missing
