"""Readers from files (h5ad, CSV/TSV, optionally gzipped) into an ExpressionMatrix."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from training.data.matrix import ExpressionMatrix

Orientation = Literal["samples_as_rows", "genes_as_rows"]

_TABLE_SEPARATORS = {".csv": ",", ".tsv": "\t", ".txt": "\t"}


def read_matrix(path: str | Path, **kwargs: Any) -> ExpressionMatrix:
    """Read an expression file, picking the reader by suffix (.h5ad, .csv, .tsv, .txt; +.gz)."""
    path = Path(path)
    suffix = _suffix(path)
    if suffix == ".h5ad":
        return read_h5ad(path, **kwargs)
    if suffix in _TABLE_SEPARATORS:
        return read_csv(path, **kwargs)
    raise ValueError(
        f"{path}: unsupported file type {suffix or '(no suffix)'!r}; "
        f"expected .h5ad or one of {sorted(_TABLE_SEPARATORS)} (optionally .gz)"
    )


def read_h5ad(path: str | Path, layer: str = "X") -> ExpressionMatrix:
    """Read an AnnData file into a dense float32 matrix.

    Parameters
    ----------
    path:
        The .h5ad file.
    layer:
        ``"X"`` for ``adata.X``, ``"raw"`` for ``adata.raw.X`` (with the raw gene ids), or the
        name of an entry in ``adata.layers``.
    """
    import anndata  # deferred: heavy import, only needed for this format

    path = Path(path)
    try:
        adata = anndata.read_h5ad(path)
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise ValueError(f"{path}: not a readable .h5ad file ({exc})") from exc
    return _from_anndata(adata, layer, source=str(path))


def read_csv(
    path: str | Path,
    orientation: Orientation = "samples_as_rows",
    sep: str | None = None,
    obs_columns: Sequence[str] = (),
) -> ExpressionMatrix:
    """Read a delimited table whose first column holds ids.

    Parameters
    ----------
    path:
        A .csv, .tsv or .txt file, optionally gzipped (``.csv.gz``).
    orientation:
        ``"samples_as_rows"`` (first column = sample ids, header = gene ids) or
        ``"genes_as_rows"`` (first column = gene ids, header = sample ids).
    sep:
        Field separator; ``None`` picks it from the suffix (``,`` for .csv, tab otherwise).
    obs_columns:
        With samples as rows: non-expression columns (labels, batch) to move into ``obs``.
    """
    path = Path(path)
    if orientation not in ("samples_as_rows", "genes_as_rows"):
        raise ValueError(
            f"orientation must be samples_as_rows or genes_as_rows, not {orientation!r}"
        )
    if obs_columns and orientation != "samples_as_rows":
        raise ValueError("obs_columns needs orientation='samples_as_rows'")
    if sep is None:
        sep = _TABLE_SEPARATORS.get(_suffix(path))
        if sep is None:
            raise ValueError(f"{path}: cannot tell the separator from the suffix; pass sep=")
    try:
        # ids stay strings ("001" must not become 1); values parse as numbers where they can
        header = pd.read_csv(path, sep=sep, header=None, nrows=1, dtype=str, keep_default_na=False)
        names = [str(v) for v in header.iloc[0]] if header.shape[0] else []
        id_column: dict[Hashable, Any] = {names[0]: str} if names else {}
        table = pd.read_csv(path, sep=sep, index_col=0, dtype=id_column)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, EOFError) as exc:
        raise ValueError(f"{path}: not a readable table ({exc})") from exc
    if table.shape[0] == 0 or table.shape[1] == 0:
        raise ValueError(f"{path}: the table has no data (shape {table.shape})")
    table.index = table.index.astype(str)
    # pandas renames repeated header names ("g1", "g1.1"); keep them as written so they are caught
    if len(names) == table.shape[1] + 1:
        table.columns = pd.Index(names[1:])
    row_kind, col_kind = (
        ("sample", "gene") if orientation == "samples_as_rows" else ("gene", "sample")
    )
    _refuse_duplicates(path, row_kind, list(table.index))
    _refuse_duplicates(path, col_kind, list(table.columns))
    missing = [c for c in obs_columns if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: obs columns {missing} are not in the header")
    obs = table[list(obs_columns)].copy()
    values = _numeric(path, table.drop(columns=list(obs_columns)), row_kind)
    if orientation == "genes_as_rows":
        values = values.T
    sample_ids = list(values.index)
    obs.index = pd.Index(sample_ids)
    return ExpressionMatrix(
        X=values.to_numpy(dtype=np.float32),
        sample_ids=sample_ids,
        gene_ids=list(values.columns),
        obs=obs,
    )


def load_pbmc68k_reduced() -> ExpressionMatrix:
    """scanpy's bundled 700-cell PBMC set: log-normalised ``.raw.X``, obs with ``bulk_labels``."""
    import scanpy as sc  # deferred: heavy import; the file ships inside scanpy, nothing downloads

    matrix = _from_anndata(sc.datasets.pbmc68k_reduced(), "raw", source="pbmc68k_reduced")
    obs = matrix.obs.copy()
    obs["bulk_labels"] = obs["bulk_labels"].astype(str)
    return ExpressionMatrix(
        X=matrix.X, sample_ids=matrix.sample_ids, gene_ids=matrix.gene_ids, obs=obs
    )


def read_obs(path: str | Path, sep: str | None = None) -> pd.DataFrame:
    """Per-sample metadata from a CSV/TSV (first column = sample ids), every value a string."""
    path = Path(path)
    sep = sep or _TABLE_SEPARATORS.get(_suffix(path))
    if sep is None:
        raise ValueError(f"{path}: cannot tell the separator from the suffix; pass sep=")
    try:
        table = pd.read_csv(path, sep=sep, index_col=0, dtype=str, keep_default_na=False)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, EOFError) as exc:
        raise ValueError(f"{path}: not a readable table ({exc})") from exc
    table.index = table.index.astype(str)
    _refuse_duplicates(path, "sample", list(table.index))
    return table


def attach_obs(matrix: ExpressionMatrix, obs: pd.DataFrame) -> ExpressionMatrix:
    """The matrix plus metadata columns from a table indexed by sample id (extra rows ignored)."""
    index = obs.index.astype(str)
    absent = [s for s in matrix.sample_ids if s not in set(index)]
    if absent:
        raise ValueError(f"the metadata lacks {len(absent)} samples, e.g. {absent[:10]}")
    aligned = obs.set_axis(index).loc[matrix.sample_ids]
    merged = pd.concat([matrix.obs.drop(columns=aligned.columns, errors="ignore"), aligned], axis=1)
    return ExpressionMatrix(
        X=matrix.X, sample_ids=matrix.sample_ids, gene_ids=matrix.gene_ids, obs=merged
    )


def _from_anndata(adata: Any, layer: str, source: str) -> ExpressionMatrix:
    if layer == "X":
        data, genes = adata.X, adata.var_names
    elif layer == "raw":
        if adata.raw is None:
            raise ValueError(f"{source}: has no .raw; use layer='X' or one of {list(adata.layers)}")
        data, genes = adata.raw.X, adata.raw.var_names
    elif layer in adata.layers:
        data, genes = adata.layers[layer], adata.var_names
    else:
        raise ValueError(f"{source}: no layer {layer!r}; have 'X', 'raw' and {list(adata.layers)}")
    dense = data.toarray() if hasattr(data, "toarray") else np.asarray(data)
    X = np.ascontiguousarray(dense, dtype=np.float32)
    sample_ids = [str(s) for s in adata.obs_names]
    _refuse_duplicates(source, "sample", sample_ids)
    _refuse_duplicates(source, "gene", [str(g) for g in genes])
    _refuse_non_finite(source, X, sample_ids)
    obs = adata.obs.copy()
    obs.index = pd.Index(sample_ids)
    return ExpressionMatrix(X=X, sample_ids=sample_ids, gene_ids=[str(g) for g in genes], obs=obs)


def _numeric(path: Path, table: pd.DataFrame, row_kind: str) -> pd.DataFrame:
    numeric = pd.DataFrame(
        {c: pd.to_numeric(table[c], errors="coerce") for c in table.columns}, index=table.index
    )
    bad = numeric.isna()
    bad_rows = np.asarray(bad.to_numpy().any(axis=1), dtype=bool)
    if bad_rows.any():
        rows = [str(r) for r, b in zip(table.index, bad_rows, strict=True) if b]
        first = rows[0]
        column = next(c for c in table.columns if bad.at[first, c])
        raise ValueError(
            f"{path}: non-numeric or missing values in {len(rows)} {row_kind} rows, e.g. "
            f"{rows[:10]} (first: row {first!r}, column {column!r} = {table.at[first, column]!r})"
        )
    values = numeric.astype(np.float64)
    _refuse_non_finite(str(path), values.to_numpy(dtype=np.float32), list(values.index))
    return values


def _refuse_non_finite(source: str, X: npt.NDArray[Any], row_ids: list[str]) -> None:
    finite = np.isfinite(X).all(axis=1)
    if not finite.all():
        rows = [row_ids[i] for i in np.flatnonzero(~finite)]
        raise ValueError(
            f"{source}: infinite or NaN values (or beyond float32) in rows {rows[:10]}"
        )


def _refuse_duplicates(source: object, kind: str, ids: list[str]) -> None:
    index = pd.Index(ids)
    dupes = index[index.duplicated()].unique().tolist()
    if dupes:
        raise ValueError(f"{source}: duplicate {kind} ids {dupes[:10]}")


def _suffix(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""
