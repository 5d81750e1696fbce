"""The delimited-text engine behind read_csv and read_gct: pyarrow parses, checks name the faults.

Every value column is typed float32 up front and parsed by pyarrow's multi-threaded reader in
64 MiB blocks; pandas re-reads a file only to name the cells of a failed parse.
"""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from contract.io.checks import (
    OrientationArg,
    refuse_duplicates,
    refuse_missing,
    refuse_non_finite,
    resolve_orientation,
)
from contract.matrix import ExpressionMatrix


def read_delimited(
    path: Path,
    sep: str,
    names: list[str],
    skip_rows: int,
    orientation: OrientationArg,
    obs_columns: Sequence[str],
    ignore: Sequence[str],
    allow_missing: bool,
) -> ExpressionMatrix:
    """Parse a delimited table (header `names`, data after `skip_rows` lines) into a matrix."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    columns = names[1:]
    if len(set(columns)) != len(columns):
        _refuse_duplicate_columns(path, sep, skip_rows, names, orientation)
    known(path, obs_columns, columns)
    if not columns:
        raise ValueError(f"{path}: the table has no data (one column only)")
    strings = {names[0], *obs_columns, *ignore}
    types = {n: (pa.string() if n in strings else pa.float32()) for n in names}
    try:
        table = pacsv.read_csv(
            path,
            # large blocks: with 1 MiB ones a 10,000-column table splits into ~10^6 chunks and
            # parsing slows several-fold (measured in tests/perf/bench_read_csv.py)
            read_options=pacsv.ReadOptions(
                column_names=names, skip_rows=skip_rows, block_size=1 << 26
            ),
            parse_options=pacsv.ParseOptions(delimiter=sep),
            convert_options=pacsv.ConvertOptions(
                column_types=types, strings_can_be_null=False, quoted_strings_can_be_null=False
            ),
        )
    except pa.ArrowInvalid as exc:
        if "CSV conversion error" not in str(exc):
            raise ValueError(f"{path}: not a readable table ({exc})") from exc
        _name_bad_cells(path, sep, skip_rows, names, strings, orientation)
        raise ValueError(f"{path}: not a readable table ({exc})") from exc
    if table.num_rows == 0:
        raise ValueError(f"{path}: the table has no data (no rows)")
    row_ids = [str(v) for v in table.column(0).to_pylist()]
    data = [c for c in columns if c not in strings]
    # one contiguous samples-or-genes × columns block, filled a column at a time
    values = np.empty((len(data), table.num_rows), dtype=np.float32)
    for j, name in enumerate(data):
        values[j] = table.column(name).to_numpy(zero_copy_only=False)
    obs = pd.DataFrame(
        {c: table.column(c).to_pylist() for c in obs_columns}, index=pd.Index(row_ids)
    )
    return assemble(str(path), row_ids, data, values.T, orientation, obs, allow_missing)


def assemble(
    source: str,
    row_ids: list[str],
    column_ids: list[str],
    values: npt.NDArray[np.float32],
    orientation: OrientationArg,
    obs: pd.DataFrame,
    allow_missing: bool,
) -> ExpressionMatrix:
    """Orient, check and wrap parsed values (rows × columns) as samples × genes."""
    resolved = "samples_as_rows" if len(obs.columns) else orientation
    resolved = resolve_orientation(resolved, row_ids, column_ids)
    row_kind = "sample" if resolved == "samples_as_rows" else "gene"
    refuse_duplicates(source, row_kind, row_ids)
    if not allow_missing:
        refuse_missing(source, values, row_ids, row_kind)
    refuse_non_finite(source, values, row_ids, allow_missing=allow_missing)
    if resolved == "genes_as_rows":
        values, row_ids, column_ids = values.T, column_ids, row_ids
    obs = obs.set_axis(pd.Index(row_ids)) if len(obs.columns) else pd.DataFrame(index=row_ids)
    return ExpressionMatrix(
        X=np.ascontiguousarray(values, dtype=np.float32),
        sample_ids=row_ids,
        gene_ids=column_ids,
        obs=obs,
    )


def _name_bad_cells(
    path: Path,
    sep: str,
    skip_rows: int,
    names: list[str],
    strings: set[str],
    orientation: OrientationArg,
) -> None:
    """Re-read with pandas to raise an error naming the rows with non-numeric cells."""
    table = pd.read_csv(
        path,
        sep=sep,
        header=None,
        names=names,
        skiprows=skip_rows,
        dtype=str,
        keep_default_na=False,
        index_col=0,
    )
    data = table[[c for c in names[1:] if c not in strings]]
    numeric = data.apply(pd.to_numeric, errors="coerce")
    bad = numeric.isna() & (data != "")
    rows = [str(r) for r in data.index[bad.to_numpy().any(axis=1)]]
    resolved = resolve_orientation(orientation, [str(r) for r in data.index], names[1:])
    kind = "sample" if resolved == "samples_as_rows" else "gene"
    if rows:
        first = rows[0]
        column = next(c for c in data.columns if bad.at[first, c])
        raise ValueError(
            f"{path}: non-numeric values in {len(rows)} {kind} rows, e.g. {rows[:10]} "
            f"(first: row {first!r}, column {column!r} = {data.at[first, column]!r})"
        )


def _refuse_duplicate_columns(
    path: Path, sep: str, skip_rows: int, names: list[str], orientation: OrientationArg
) -> None:
    """Raise naming the repeated header ids as genes or samples (rare: the cost is one re-read)."""
    first = pd.read_csv(
        path,
        sep=sep,
        header=None,
        usecols=[0],
        skiprows=skip_rows,
        dtype=str,
        keep_default_na=False,
    )
    resolved = resolve_orientation(orientation, list(first[0]), names[1:])
    refuse_duplicates(path, "gene" if resolved == "samples_as_rows" else "sample", names[1:])


def known(path: Path, wanted: Sequence[str], have: Sequence[str]) -> Sequence[str]:
    """The wanted columns, after checking the header has them all."""
    missing = [c for c in wanted if c not in set(have)]
    if missing:
        raise ValueError(f"{path}: obs columns {missing} are not in the header")
    return wanted


def read_header(path: Path, sep: str) -> list[str]:
    """The header fields of a (possibly gzipped) delimited file."""
    try:
        with open_text(path) as fh:
            line = fh.readline()
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise ValueError(f"{path}: not a readable table ({exc})") from exc
    names = [n.strip().strip('"') for n in line.rstrip("\r\n").split(sep)]
    if len(names) < 2:
        raise ValueError(f"{path}: the table has no data (header {line[:80]!r})")
    return names


def open_text(path: Path) -> Any:
    """Open a text file for reading, gunzipping a .gz one."""
    if path.suffix.lower() == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open(encoding="utf-8")
