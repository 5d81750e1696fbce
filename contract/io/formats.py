"""Sparse-capable readers: AnnData h5ad and 10x Genomics mtx folders.

Single-cell matrices are mostly zeros, so they stay scipy-sparse while genes are chosen
(``genes=``, e.g. a model's panel) and become a dense float32 ExpressionMatrix only at the end.
"""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from contract.io.checks import refuse_duplicates, refuse_non_finite
from contract.matrix import ExpressionMatrix


def read_h5ad(
    path: str | Path, layer: str = "X", *, genes: Sequence[str] | None = None
) -> ExpressionMatrix:
    """Read an AnnData file into a dense float32 matrix.

    Parameters
    ----------
    path:
        The .h5ad file.
    layer:
        ``"X"`` for ``adata.X``, ``"raw"`` for ``adata.raw.X`` (with the raw gene ids), or the
        name of an entry in ``adata.layers``.
    genes:
        Keep only these genes (in this order; absent ones are refused) before densifying.
    """
    import anndata  # deferred: heavy import, only needed for this format

    path = Path(path)
    try:
        adata = anndata.read_h5ad(path)
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise ValueError(f"{path}: not a readable .h5ad file ({exc})") from exc
    return from_anndata(adata, layer, source=str(path), genes=genes)


def read_10x(
    folder: str | Path,
    *,
    gene_column: str = "gene_ids",
    genes: Sequence[str] | None = None,
) -> ExpressionMatrix:
    """Read a Cell Ranger matrix folder (matrix.mtx, features.tsv or genes.tsv, barcodes.tsv).

    Parameters
    ----------
    folder:
        The folder; each file may be gzipped (Cell Ranger ≥ 3 writes ``*.gz``).
    gene_column:
        ``"gene_ids"`` (first column, Ensembl ids) or ``"gene_symbols"`` (second column).
    genes:
        Keep only these genes (in this order) before densifying.
    """
    from scipy.io import mmread
    from scipy.sparse import csr_matrix

    folder = Path(folder)
    if gene_column not in ("gene_ids", "gene_symbols"):
        raise ValueError(f"gene_column must be gene_ids or gene_symbols, not {gene_column!r}")
    mtx = _find(folder, ["matrix.mtx"])
    features = _find(folder, ["features.tsv", "genes.tsv"])
    barcodes = _find(folder, ["barcodes.tsv"])
    try:
        with _open(mtx) as fh:
            counts = csr_matrix(mmread(fh).T)  # the file is genes × cells
        var = pd.read_csv(features, sep="\t", header=None, dtype=str, keep_default_na=False)
        cells = pd.read_csv(barcodes, sep="\t", header=None, dtype=str, keep_default_na=False)
    except (OSError, ValueError, EOFError) as exc:
        raise ValueError(f"{folder}: not a readable 10x matrix folder ({exc})") from exc
    if counts.shape != (cells.shape[0], var.shape[0]):
        raise ValueError(
            f"{folder}: matrix.mtx is {counts.shape[1]} features × {counts.shape[0]} cells but "
            f"there are {var.shape[0]} features and {cells.shape[0]} barcodes"
        )
    keep = np.ones(var.shape[0], dtype=bool)
    if var.shape[1] >= 3:  # feature type column: drop antibody capture, CRISPR guides, ...
        keep = (var[2] == "Gene Expression").to_numpy()
    column = 0 if gene_column == "gene_ids" or var.shape[1] < 2 else 1
    gene_ids = [str(g) for g in var[column][keep]]
    return _densify(counts[:, keep], list(cells[0]), gene_ids, pd.DataFrame(), str(folder), genes)


def from_anndata(
    adata: Any, layer: str, source: str, genes: Sequence[str] | None = None
) -> ExpressionMatrix:
    """An ExpressionMatrix from an in-memory AnnData (X, raw or a named layer)."""
    if layer == "X":
        data, var_names = adata.X, adata.var_names
    elif layer == "raw":
        if adata.raw is None:
            raise ValueError(f"{source}: has no .raw; use layer='X' or one of {list(adata.layers)}")
        data, var_names = adata.raw.X, adata.raw.var_names
    elif layer in adata.layers:
        data, var_names = adata.layers[layer], adata.var_names
    else:
        raise ValueError(f"{source}: no layer {layer!r}; have 'X', 'raw' and {list(adata.layers)}")
    sample_ids = [str(s) for s in adata.obs_names]
    return _densify(data, sample_ids, [str(g) for g in var_names], adata.obs, source, genes)


def _densify(
    data: Any,
    sample_ids: list[str],
    gene_ids: list[str],
    obs: pd.DataFrame,
    source: str,
    genes: Sequence[str] | None,
) -> ExpressionMatrix:
    refuse_duplicates(source, "sample", sample_ids)
    refuse_duplicates(source, "gene", gene_ids)
    if genes is not None:
        column = {g: j for j, g in enumerate(gene_ids)}
        absent = [g for g in genes if g not in column]
        if absent:
            raise ValueError(f"{source}: lacks {len(absent)} requested genes, e.g. {absent[:10]}")
        data = data[:, [column[g] for g in genes]]
        gene_ids = list(genes)
    dense = data.toarray() if hasattr(data, "toarray") else np.asarray(data)
    X = np.ascontiguousarray(dense, dtype=np.float32)
    refuse_non_finite(source, X, sample_ids)
    obs = obs.copy() if len(obs.columns) else pd.DataFrame(index=pd.Index(sample_ids))
    obs.index = pd.Index(sample_ids)
    return ExpressionMatrix(X=X, sample_ids=sample_ids, gene_ids=gene_ids, obs=obs)


def _find(folder: Path, names: list[str]) -> Path:
    for name in names:
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    raise ValueError(f"{folder}: no {' or '.join(names)} (optionally .gz) in this folder")


def _open(path: Path) -> Any:
    return gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")
