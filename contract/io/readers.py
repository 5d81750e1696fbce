"""Readers from files into an ExpressionMatrix: CSV/TSV (+gz), GCT 1.2, Parquet, h5ad, 10x mtx.

Delimited text goes through pyarrow's multi-threaded CSV parser (a 20,000 × 10,000 table reads
in seconds, see tests/perf/); pandas is the fallback only to name the cells a file gets wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from contract.io.checks import OrientationArg, refuse_duplicates
from contract.io.delimited import assemble, known, open_text, read_delimited, read_header
from contract.io.formats import read_10x, read_h5ad
from contract.matrix import ExpressionMatrix

__all__ = [
    "attach_obs",
    "read_10x",
    "read_csv",
    "read_gct",
    "read_h5ad",
    "read_matrix",
    "read_obs",
    "read_parquet",
]

_TABLE_SEPARATORS = {".csv": ",", ".tsv": "\t", ".txt": "\t"}
SUFFIXES = (".h5ad", ".parquet", ".gct", *_TABLE_SEPARATORS, "10x folder")


def read_matrix(path: str | Path, **kwargs: Any) -> ExpressionMatrix:
    """Read an expression file, picking the reader by suffix (see SUFFIXES; text may be .gz)."""
    path = Path(path)
    if path.is_dir():
        return read_10x(path, **kwargs)
    suffix = _suffix(path)
    readers: dict[str, Callable[..., ExpressionMatrix]] = {
        ".h5ad": read_h5ad,
        ".parquet": read_parquet,
        ".gct": read_gct,
    }
    if suffix in readers:
        return readers[suffix](path, **kwargs)
    if suffix in _TABLE_SEPARATORS:
        return read_csv(path, **kwargs)
    raise ValueError(
        f"{path}: unsupported file type {suffix or '(no suffix)'!r}; "
        f"expected one of {list(SUFFIXES)} (text optionally .gz)"
    )


def read_csv(
    path: str | Path,
    orientation: OrientationArg = "auto",
    sep: str | None = None,
    obs_columns: Sequence[str] = (),
    *,
    allow_missing: bool = False,
) -> ExpressionMatrix:
    """Read a delimited table whose first column holds ids.

    Parameters
    ----------
    path:
        A .csv, .tsv or .txt file, optionally gzipped (``.csv.gz``).
    orientation:
        ``"samples_as_rows"`` (first column = sample ids, header = gene ids),
        ``"genes_as_rows"`` (first column = gene ids, header = sample ids) or ``"auto"``:
        detected from the ids (Ensembl ids, GEO/SRA/TCGA accessions, cell barcodes), else the
        longer axis is taken to be the genes.
    sep:
        Field separator; ``None`` picks it from the suffix (``,`` for .csv, tab otherwise).
    obs_columns:
        With samples as rows: non-expression columns (labels, batch) to move into ``obs``.
    allow_missing:
        Keep empty cells as NaN (for QC to drop or fill) instead of refusing the file.
    """
    path = Path(path)
    sep = _separator(path, sep)
    names = read_header(path, sep)
    return read_delimited(path, sep, names, 1, orientation, obs_columns, (), allow_missing)


def read_gct(path: str | Path, *, allow_missing: bool = False) -> ExpressionMatrix:
    """Read a GCT 1.2 file (genes as rows; the Description column is dropped).

    Parameters
    ----------
    path:
        A ``.gct`` file (optionally ``.gct.gz``): ``#1.2``, a line with the row and column
        counts, a header ``Name  Description  sample…``, then one line per gene.
    allow_missing:
        Keep empty cells as NaN instead of refusing the file.
    """
    path = Path(path)
    with open_text(path) as fh:
        version, dims, header = fh.readline().strip(), fh.readline().split("\t"), fh.readline()
    if version != "#1.2":
        raise ValueError(f"{path}: not a GCT 1.2 file (first line {version[:20]!r})")
    names = header.rstrip("\r\n").split("\t")
    if len(names) < 3 or [n.lower() for n in names[:2]] != ["name", "description"]:
        raise ValueError(f"{path}: the GCT header must start Name<TAB>Description<TAB>sample")
    matrix = read_delimited(path, "\t", names, 3, "genes_as_rows", (), (names[1],), allow_missing)
    try:
        n_rows, n_cols = int(dims[0]), int(dims[1])
    except (ValueError, IndexError) as exc:
        raise ValueError(f"{path}: the second line must hold the row and column counts") from exc
    if (n_rows, n_cols) != (matrix.shape[1], matrix.shape[0]):
        raise ValueError(
            f"{path}: the header announces {n_rows} genes × {n_cols} samples but the file has "
            f"{matrix.shape[1]} × {matrix.shape[0]}"
        )
    return matrix


def read_parquet(
    path: str | Path,
    orientation: OrientationArg = "auto",
    obs_columns: Sequence[str] = (),
    *,
    allow_missing: bool = False,
) -> ExpressionMatrix:
    """Read a Parquet table: ids in the pandas index or else in the first (string) column.

    Parameters
    ----------
    path:
        A ``.parquet`` file (as written by pandas ``to_parquet`` or pyarrow).
    orientation, obs_columns, allow_missing:
        As for `read_csv`.
    """
    import pyarrow.parquet as pq  # deferred: only this format needs it

    path = Path(path)
    try:
        table = pq.read_table(path).to_pandas()
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable Parquet file ({exc})") from exc
    if isinstance(table.index, pd.RangeIndex) and table.shape[1]:
        table = table.set_index(table.columns[0])
    table.index = table.index.astype(str)
    table.columns = table.columns.astype(str)
    if table.shape[0] == 0 or table.shape[1] == 0:
        raise ValueError(f"{path}: the table has no data (shape {table.shape})")
    obs = table[list(known(path, obs_columns, table.columns))].astype(str)
    data = table.drop(columns=list(obs_columns))
    values = _numeric_frame(path, data)
    return assemble(
        str(path), list(data.index), list(data.columns), values, orientation, obs, allow_missing
    )


def read_obs(path: str | Path, sep: str | None = None) -> pd.DataFrame:
    """Per-sample metadata from a CSV/TSV (first column = sample ids), every value a string."""
    path = Path(path)
    sep = _separator(path, sep)
    try:
        table = pd.read_csv(path, sep=sep, index_col=0, dtype=str, keep_default_na=False)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, EOFError) as exc:
        raise ValueError(f"{path}: not a readable table ({exc})") from exc
    table.index = table.index.astype(str)
    refuse_duplicates(path, "sample", list(table.index))
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


def _numeric_frame(path: Path, data: pd.DataFrame) -> npt.NDArray[np.float32]:
    bad = [c for c in data.columns if not pd.api.types.is_numeric_dtype(data[c])]
    if bad:
        raise ValueError(f"{path}: non-numeric columns {bad[:10]}")
    return data.to_numpy(dtype=np.float32, na_value=np.nan)


def _separator(path: Path, sep: str | None) -> str:
    """`sep`, else the one the suffix names (``,`` for .csv, tab for .tsv and .txt)."""
    sep = sep or _TABLE_SEPARATORS.get(_suffix(path))
    if sep is None:
        raise ValueError(f"{path}: cannot tell the separator from the suffix; pass sep=")
    return sep


def _suffix(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""
