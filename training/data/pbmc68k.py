"""scanpy's bundled pbmc68k_reduced: the real single-cell data the demo and the tests use."""

from __future__ import annotations

from contract.io.formats import from_anndata
from contract.matrix import ExpressionMatrix


def load_pbmc68k_reduced() -> ExpressionMatrix:
    """scanpy's bundled 700-cell PBMC set: log-normalised ``.raw.X``, obs with ``bulk_labels``."""
    import scanpy as sc  # deferred: heavy import; the file ships inside scanpy, nothing downloads

    matrix = from_anndata(sc.datasets.pbmc68k_reduced(), "raw", source="pbmc68k_reduced")
    obs = matrix.obs.copy()
    obs["bulk_labels"] = obs["bulk_labels"].astype(str)
    return ExpressionMatrix(
        X=matrix.X, sample_ids=matrix.sample_ids, gene_ids=matrix.gene_ids, obs=obs
    )
