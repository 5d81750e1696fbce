"""Gene-id harmonisation of a whole ExpressionMatrix (the service applies the same rules)."""

from __future__ import annotations

import warnings

from app.inference.genes import Harmonised, harmonise
from training.data.matrix import ExpressionMatrix


class DuplicateGenesWarning(UserWarning):
    """Some columns named the same gene and were aggregated."""


def harmonise_matrix(matrix: ExpressionMatrix, scale: str) -> tuple[ExpressionMatrix, Harmonised]:
    """Strip Ensembl versions, fold case, aggregate duplicate genes (warning lists them).

    Parameters
    ----------
    matrix:
        Any matrix; NaN (missing) values propagate into an aggregated column.
    scale:
        The matrix's scale: ``counts``/``normalized`` sum duplicates, ``log``/``standardized``
        average them.
    """
    folded = harmonise(matrix.X, matrix.gene_ids, scale)
    message = folded.warning()
    if message is not None:
        warnings.warn(message, DuplicateGenesWarning, stacklevel=2)
    out = ExpressionMatrix(
        X=folded.values, sample_ids=matrix.sample_ids, gene_ids=folded.genes, obs=matrix.obs
    )
    return out, folded
