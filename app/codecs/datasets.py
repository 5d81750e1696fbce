"""Parsing uploaded expression tables (CSV/TSV, Parquet, h5ad) into a checked samples × genes array.

Rows are samples (the first column, or the index, holds their ids); numeric columns are genes and
the named (or non-numeric) columns are labels. The stored form is an npz of plain arrays, which
loads with allow_pickle=False.
"""

from __future__ import annotations

import io
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from app.errors import InvalidExpressionData, InvalidRequest

FORMATS = ("csv", "tsv", "parquet", "h5ad")
MAX_LISTED = 20


@dataclass(frozen=True)
class ParsedDataset:
    """Values (float32), ids and label columns (strings) of an upload."""

    X: npt.NDArray[np.float32]
    sample_ids: list[str]
    gene_ids: list[str]
    labels: dict[str, list[str]]


def guess_format(filename: str) -> str:
    """The format named by a file's suffix (.gz allowed for text)."""
    name = filename.lower().removesuffix(".gz")
    for suffix, fmt in ((".csv", "csv"), (".tsv", "tsv"), (".txt", "tsv"), (".parquet", "parquet")):
        if name.endswith(suffix):
            return fmt
    if name.endswith(".h5ad"):
        return "h5ad"
    raise InvalidRequest(f"cannot tell the format of {filename!r}; give format= one of {FORMATS}")


def read_table(data: bytes, fmt: str, filename: str) -> pd.DataFrame:
    """A table indexed by sample id (first column, or the Parquet index)."""
    try:
        if fmt in ("csv", "tsv"):
            gz = filename.lower().endswith(".gz")
            sep = "," if fmt == "csv" else "\t"
            table = pd.read_csv(
                io.BytesIO(data), sep=sep, index_col=0, compression="gzip" if gz else None
            )
        elif fmt == "parquet":
            table = pd.read_parquet(io.BytesIO(data))
            if isinstance(table.index, pd.RangeIndex):
                table = table.set_index(table.columns[0])
        else:
            raise InvalidRequest(f"{fmt} is not a table format; use csv, tsv or parquet")
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise InvalidRequest(f"{filename}: cannot be read as {fmt}: {exc}") from exc
    table.index = table.index.astype(str)
    table.columns = table.columns.astype(str)
    return table


def from_table(table: pd.DataFrame, label_columns: list[str] | None) -> ParsedDataset:
    """Split a table into gene columns (numeric) and label columns."""
    if label_columns is None:
        label_columns = [c for c in table.columns if not pd.api.types.is_numeric_dtype(table[c])]
    absent = [c for c in label_columns if c not in table.columns]
    if absent:
        raise InvalidRequest(f"label columns {absent} are not in the table")
    genes = table.drop(columns=label_columns)
    not_numeric = [c for c in genes.columns if not pd.api.types.is_numeric_dtype(genes[c])]
    if not_numeric:
        raise InvalidExpressionData(
            f"gene columns {not_numeric[:MAX_LISTED]} hold non-numeric values; name label "
            "columns in label_columns",
            genes=not_numeric[:MAX_LISTED],
        )
    labels = {c: [str(v) for v in table[c].tolist()] for c in label_columns}
    return checked(genes.to_numpy(dtype=np.float32), list(table.index), list(genes.columns), labels)


def read_h5ad(data: bytes, max_cells: int) -> ParsedDataset:
    """An AnnData file: X (dense or sparse) and every obs column as labels."""
    import anndata

    with tempfile.NamedTemporaryFile(suffix=".h5ad") as tmp:
        tmp.write(data)
        tmp.flush()
        try:
            adata = anndata.read_h5ad(tmp.name)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InvalidRequest(f"cannot be read as h5ad: {exc}") from exc
    if adata.n_obs * adata.n_vars > max_cells:
        raise InvalidRequest(f"{adata.n_obs}×{adata.n_vars} is more than {max_cells} values")
    x = adata.X.toarray() if hasattr(adata.X, "toarray") else np.asarray(adata.X)
    labels = {str(c): [str(v) for v in adata.obs[c].tolist()] for c in adata.obs.columns}
    return checked(
        np.asarray(x, dtype=np.float32),
        [str(s) for s in adata.obs_names],
        [str(g) for g in adata.var_names],
        labels,
    )


def attach_labels(parsed: ParsedDataset, labels: pd.DataFrame) -> ParsedDataset:
    """Add the columns of a separate labels table (indexed by sample id) to `parsed`."""
    missing = [s for s in parsed.sample_ids if s not in labels.index]
    if missing:
        raise InvalidExpressionData(
            f"{len(missing)} samples have no row in the labels table",
            samples=missing[:MAX_LISTED],
        )
    if labels.index.duplicated().any():
        dupes = labels.index[labels.index.duplicated()].unique().tolist()
        raise InvalidExpressionData("the labels table repeats samples", samples=dupes[:MAX_LISTED])
    rows = labels.loc[parsed.sample_ids]
    extra = {str(c): [str(v) for v in rows[c].tolist()] for c in rows.columns}
    return ParsedDataset(parsed.X, parsed.sample_ids, parsed.gene_ids, {**parsed.labels, **extra})


def checked(
    X: npt.NDArray[np.float32], samples: list[str], genes: list[str], labels: dict[str, list[str]]
) -> ParsedDataset:
    """Refuse empty data, duplicate ids and non-finite values, naming the culprits."""
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise InvalidExpressionData(f"the data has shape {X.shape}; it needs samples and genes")
    for kind, ids in (("samples", samples), ("genes", genes)):
        dupes = pd.Index(ids)[pd.Index(ids).duplicated()].unique().tolist()
        if dupes:
            raise InvalidExpressionData(f"duplicate {kind} ids", **{kind: dupes[:MAX_LISTED]})
    bad_rows, bad_cols = np.nonzero(~np.isfinite(X))
    if bad_rows.size:
        raise InvalidExpressionData(
            f"{bad_rows.size} values are missing or not finite",
            samples=sorted({samples[i] for i in bad_rows})[:MAX_LISTED],
            genes=sorted({genes[j] for j in bad_cols})[:MAX_LISTED],
        )
    return ParsedDataset(X, samples, genes, labels)


def save_npz(parsed: ParsedDataset, path: Path) -> None:
    """Write plain arrays only (unicode, not object), so loading needs no pickle."""
    arrays: dict[str, npt.NDArray[np.generic]] = {
        "X": parsed.X,
        "sample_ids": np.array(parsed.sample_ids, dtype=np.str_),
        "gene_ids": np.array(parsed.gene_ids, dtype=np.str_),
        "label_columns": np.array(list(parsed.labels), dtype=np.str_),
    }
    for i, values in enumerate(parsed.labels.values()):
        arrays[f"label_{i}"] = np.array(values, dtype=np.str_)
    tmp = path.with_name(f".{path.name}.part")
    with tmp.open("wb") as fh:
        np.savez(fh, **arrays)  # type: ignore[arg-type]
    tmp.replace(path)


def load_npz(path: Path) -> ParsedDataset:
    """Read what save_npz wrote."""
    with np.load(path, allow_pickle=False) as npz:
        columns = [str(c) for c in npz["label_columns"]]
        return ParsedDataset(
            X=npz["X"].astype(np.float32),
            sample_ids=[str(s) for s in npz["sample_ids"]],
            gene_ids=[str(g) for g in npz["gene_ids"]],
            labels={c: [str(v) for v in npz[f"label_{i}"]] for i, c in enumerate(columns)},
        )
