"""Parsing uploaded expression tables (CSV/TSV, Parquet, h5ad) into a checked samples × genes array.

Rows are samples: the first column (or the Parquet index) holds their ids, always read as text
(`01003` stays `01003`). Every other column is a gene and must hold numbers, unless it is a label
column: named in `label_columns`, or, when that is not given, a column in which no cell is a
number. A gene column with a non-numeric cell is refused naming the cell (sample and gene), never
turned into a label column behind the uploader's back. CSV/TSV go through pyarrow's
multi-threaded reader with every gene column typed float32 up front; the cells of a failed parse
are found afterwards, on the failure path only. The stored form is an npz of plain arrays, which
loads with allow_pickle=False.
"""

from __future__ import annotations

import csv
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from app.codecs.negotiate import inflate
from app.codecs.payloads import check_text
from app.errors import InvalidExpressionData, InvalidRequest

FORMATS = ("csv", "tsv", "parquet", "h5ad")
MAX_LISTED = 20
# what pyarrow (and pandas) read as a missing number; in a gene column these cells are NaN, and
# NaN is refused by name in `checked`
NULLS = ["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND"]
NULLS += ["1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"]
# a cell Arrow's float parser accepts (checked on the failure path only)
NUMBER = r"^[+-]?(\d+\.?\d*([eE][+-]?\d+)?|\.\d+([eE][+-]?\d+)?|[iI][nN][fF]([iI][nN][iI][tT][yY])?|[nN][aA][nN])$"  # noqa: E501
SNIFF_ROWS, SNIFF_BYTES = 8, 4 << 20
RETRIES = 4  # typed reads before reading every column as text
CONVERSION = re.compile(r"In CSV column #(\d+): CSV conversion error")
INFLATE_FACTOR = 8  # a gzipped table may inflate to this many times the upload limit


@dataclass(frozen=True)
class ParsedDataset:
    """Values (float32), ids and label columns (strings) of an upload."""

    X: npt.NDArray[np.float32]
    sample_ids: list[str]
    gene_ids: list[str]
    labels: dict[str, list[str]]


@dataclass(frozen=True)
class _Columns:
    """A table as read: sample ids, then every other column by name."""

    ids: list[str]
    names: list[str]
    columns: list[pa.ChunkedArray]


def guess_format(filename: str) -> str:
    """The format named by a file's suffix (.gz allowed for text)."""
    name = filename.lower().removesuffix(".gz")
    for suffix, fmt in ((".csv", "csv"), (".tsv", "tsv"), (".txt", "tsv"), (".parquet", "parquet")):
        if name.endswith(suffix):
            return fmt
    if name.endswith(".h5ad"):
        return "h5ad"
    raise InvalidRequest(f"cannot tell the format of {filename!r}; give format= one of {FORMATS}")


def read_table(
    data: bytes,
    fmt: str,
    filename: str,
    label_columns: list[str] | None,
    *,
    max_values: int,
) -> ParsedDataset:
    """A checked dataset from a CSV/TSV (optionally gzipped) or Parquet table."""
    if fmt in ("csv", "tsv"):
        text = _text(data, filename, max_values)
        table = _read_delimited(text, "," if fmt == "csv" else "\t", filename, label_columns)
    elif fmt == "parquet":
        table = _read_parquet(data, filename)
    else:
        raise InvalidRequest(f"{fmt} is not a table format; use csv, tsv or parquet")
    if len(table.ids) * (len(table.names) + 1) > max_values:
        raise InvalidRequest(f"{len(table.ids)}×{len(table.names) + 1} is more than {max_values}")
    return _split(table, label_columns)


def read_labels(data: bytes, filename: str) -> tuple[list[str], dict[str, list[str]]]:
    """A separate labels table: sample ids (first column) and every other column as text."""
    fmt = guess_format(filename)
    if fmt in ("csv", "tsv"):
        sep = "," if fmt == "csv" else "\t"
        text = _text(data, filename, len(data))
        table = _read_delimited(text, sep, filename, _header(text, sep, filename)[1:])
    elif fmt == "parquet":
        table = _read_parquet(data, filename)
    else:
        raise InvalidRequest(f"{filename}: a labels table must be csv, tsv or parquet")
    return table.ids, {n: _strings(c) for n, c in zip(table.names, table.columns, strict=True)}


def _text(data: bytes, filename: str, max_values: int) -> bytes:
    if not filename.lower().endswith(".gz"):
        return data
    return inflate(data, "gzip", max(max_values, len(data)) * INFLATE_FACTOR)


def _header(data: bytes, sep: str, filename: str) -> list[str]:
    line = data.split(b"\n", 1)[0].rstrip(b"\r")
    try:
        text = line.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidRequest(f"{filename}: the header is not UTF-8 ({exc})") from exc
    names = next(csv.reader([text], delimiter=sep), [])
    if len(names) < 2:
        raise InvalidRequest(f"{filename}: the header needs a sample-id column and more")
    return [n.strip() for n in names]


def _read_delimited(
    data: bytes, sep: str, filename: str, label_columns: list[str] | None
) -> _Columns:
    names = _header(data, sep, filename)
    columns = names[1:]
    _refuse_duplicate_ids("genes", columns)
    if label_columns is not None:
        absent = [c for c in label_columns if c not in columns]
        if absent:
            raise InvalidRequest(f"label columns {absent} are not in the table")
        text = set(label_columns)
    else:  # columns that look like text in the first rows are read as text (maybe labels)
        text = _text_looking(data, sep, names, filename)
    table = None
    for _ in range(RETRIES):
        try:
            table = _arrow_csv(data, sep, names, {c: c in text for c in columns})
            break
        except pa.ArrowInvalid as exc:
            # pyarrow names the first column it could not read as numbers: read it as text
            # (a label column, or a gene column whose bad cells are then named) and try again
            found = CONVERSION.search(str(exc))
            if found is None:
                raise InvalidRequest(f"{filename}: not a readable table: {exc}") from exc
            text.add(names[int(found.group(1))])
    if table is None:  # many text columns: read everything as text, sort them out after
        table = _arrow_csv(data, sep, names, dict.fromkeys(columns, True))
    if table.num_rows == 0:
        raise InvalidExpressionData(f"{filename}: the table has a header and no rows")
    return _Columns(_strings(table.column(0)), columns, table.columns[1:])


def _arrow_csv(data: bytes, sep: str, names: list[str], text: dict[str, bool]) -> pa.Table:
    types = {names[0]: pa.string()} | {
        n: pa.string() if is_text else pa.float32() for n, is_text in text.items()
    }
    try:
        return pacsv.read_csv(
            pa.BufferReader(data),
            # 64 MiB blocks: with the default 1 MiB a 20,000-column table splits into thousands
            # of column chunks and parsing slows several-fold (tests/perf/bench_read_csv.py)
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=1, block_size=1 << 26),
            parse_options=pacsv.ParseOptions(delimiter=sep),
            convert_options=pacsv.ConvertOptions(
                column_types=types,
                null_values=NULLS,
                strings_can_be_null=False,  # ids and labels stay as written ("NA" too)
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid:
        raise
    except (pa.ArrowException, OSError) as exc:
        raise InvalidRequest(f"not a readable table: {exc}") from exc


def _text_looking(data: bytes, sep: str, names: list[str], filename: str) -> set[str]:
    """Columns that pyarrow's type inference reads as anything but numbers in the first rows."""
    end = 0
    for _ in range(SNIFF_ROWS + 1):
        nxt = data.find(b"\n", end, SNIFF_BYTES)
        if nxt < 0:
            break
        end = nxt + 1
    try:
        sample = pacsv.read_csv(
            pa.BufferReader(data[: end or SNIFF_BYTES]),
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=1),
            parse_options=pacsv.ParseOptions(delimiter=sep),
            convert_options=pacsv.ConvertOptions(
                column_types={names[0]: pa.string()}, null_values=NULLS
            ),
        )
    except (pa.ArrowException, OSError) as exc:
        raise InvalidRequest(f"{filename}: not a readable table: {exc}") from exc
    return {field.name for field in sample.schema if not _is_number_type(field.type)} - {names[0]}


def _read_parquet(data: bytes, filename: str) -> _Columns:
    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowException, OSError) as exc:
        raise InvalidRequest(f"{filename}: cannot be read as parquet: {exc}") from exc
    names = table.column_names
    if len(names) < 2:
        raise InvalidRequest(f"{filename}: the table needs a sample-id column and more")
    # pandas stores a named or unnamed index as a column listed in its metadata; a RangeIndex
    # is metadata only, and then the first column holds the ids
    meta = table.schema.pandas_metadata or {}
    index = [c for c in meta.get("index_columns", []) if isinstance(c, str) and c in names]
    id_name = index[0] if index else names[0]
    others = [i for i, n in enumerate(names) if n != id_name and n not in index]
    columns = [names[i] for i in others]
    _refuse_duplicate_ids("genes", columns)
    if table.num_rows == 0:
        raise InvalidExpressionData(f"{filename}: the table has no rows")
    return _Columns(_strings(table.column(id_name)), columns, [table.column(i) for i in others])


def _strings(column: pa.ChunkedArray) -> list[str]:
    """Text of every cell; a missing one is ''."""
    if not pa.types.is_string(column.type) and not pa.types.is_large_string(column.type):
        column = pc.cast(column, pa.string())
    return [str(v) for v in pc.fill_null(column, "").to_pylist()]


def _is_number_type(kind: pa.DataType) -> bool:
    return bool(
        pa.types.is_integer(kind)
        or pa.types.is_floating(kind)
        or pa.types.is_null(kind)
        or pa.types.is_decimal(kind)
    )


@dataclass
class _BadCells:
    rows: list[int]
    genes: list[str]
    first: tuple[int, str, str] | None = None
    count: int = 0


def _split(table: _Columns, label_columns: list[str] | None) -> ParsedDataset:
    """Gene columns into one float32 matrix, label columns into text; bad cells named."""
    declared = set(label_columns or [])
    absent = sorted(declared - set(table.names))
    if absent:
        raise InvalidRequest(f"label columns {absent} are not in the table")
    labels: dict[str, list[str]] = {}
    genes: list[str] = []
    values: list[npt.NDArray[np.float32]] = []
    bad = _BadCells([], [])
    for name, column in zip(table.names, table.columns, strict=True):
        if name in declared:
            labels[name] = _strings(column)
        elif _is_number_type(column.type):
            genes.append(name)
            values.append(_floats(column))
        elif pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            as_floats = _cast_floats(column)
            if as_floats is not None:  # every cell a number
                genes.append(name)
                values.append(as_floats)
                continue
            numeric = pc.match_substring_regex(column, NUMBER)
            if label_columns is None and not pc.any(numeric).as_py():
                labels[name] = _strings(column)  # no number in it: a label column
                continue
            ok = pc.or_(numeric, pc.is_in(column, pa.array(NULLS)))
            if pc.all(ok).as_py():  # numbers and empty cells (refused by name in `checked`)
                genes.append(name)
                values.append(_text_to_floats(column))
            else:
                _note_bad(bad, name, column, pc.invert(ok))
        elif label_columns is None:  # booleans, dates...: labels unless declared otherwise
            labels[name] = _strings(column)
        else:
            _note_bad(bad, name, column, pc.is_valid(column))
    if bad.count:
        _refuse_bad_cells(bad, table.ids)
    n = len(table.ids)
    stacked = np.empty((len(values), n), np.float32)
    for j, column_values in enumerate(values):
        stacked[j] = column_values
    return checked(np.ascontiguousarray(stacked.T), table.ids, genes, labels)


def _floats(column: pa.ChunkedArray) -> npt.NDArray[np.float32]:
    if pa.types.is_null(column.type):
        return np.full(len(column), np.nan, np.float32)
    if pa.types.is_decimal(column.type):
        column = pc.cast(column, pa.float64())
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float32)


def _cast_floats(column: pa.ChunkedArray) -> npt.NDArray[np.float32] | None:
    try:
        return _floats(pc.cast(column, pa.float32()))
    except pa.ArrowInvalid:
        return None


def _text_to_floats(column: pa.ChunkedArray) -> npt.NDArray[np.float32]:
    nulls = pc.is_in(column, pa.array(NULLS))
    return _floats(pc.cast(pc.if_else(nulls, pa.scalar(None, pa.string()), column), pa.float32()))


def _note_bad(bad: _BadCells, gene: str, column: pa.ChunkedArray, mask: pa.ChunkedArray) -> None:
    rows = np.flatnonzero(np.asarray(pc.fill_null(mask, False).to_numpy(zero_copy_only=False)))
    if not rows.size:
        return
    bad.count += int(rows.size)
    bad.genes.append(gene)
    bad.rows.extend(rows[: MAX_LISTED + 1].tolist())
    if bad.first is None:
        bad.first = (int(rows[0]), gene, str(column[int(rows[0])].as_py()))


def _refuse_bad_cells(bad: _BadCells, ids: list[str]) -> None:
    samples = list(dict.fromkeys(ids[i] for i in sorted(set(bad.rows))))
    assert bad.first is not None
    row, gene, value = bad.first
    raise InvalidExpressionData(
        f"{bad.count} non-numeric value(s) in {len(bad.genes)} gene column(s), e.g. sample "
        f"{ids[row]!r}, gene {gene!r}: {value!r}; a label column must be named in label_columns",
        samples=samples[:MAX_LISTED],
        genes=bad.genes[:MAX_LISTED],
    )


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


def attach_labels(
    parsed: ParsedDataset, ids: list[str], columns: dict[str, list[str]]
) -> ParsedDataset:
    """Add the columns of a separate labels table (rows keyed by `ids`) to `parsed`."""
    _refuse_duplicate_ids("samples", ids, what="the labels table repeats samples")
    row = {s: i for i, s in enumerate(ids)}
    missing = [s for s in parsed.sample_ids if s not in row]
    if missing:
        raise InvalidExpressionData(
            f"{len(missing)} samples have no row in the labels table",
            samples=missing[:MAX_LISTED],
        )
    order = [row[s] for s in parsed.sample_ids]
    extra = {c: [values[i] for i in order] for c, values in columns.items()}
    _refuse_nul_labels(extra)
    return ParsedDataset(parsed.X, parsed.sample_ids, parsed.gene_ids, {**parsed.labels, **extra})


def _refuse_duplicate_ids(kind: str, ids: Sequence[str], what: str | None = None) -> None:
    index = pd.Index(ids)
    dupes = index[index.duplicated()].unique().tolist()
    if dupes:
        raise InvalidExpressionData(what or f"duplicate {kind} ids", **{kind: dupes[:MAX_LISTED]})


def _refuse_nul_labels(labels: dict[str, list[str]]) -> None:
    check_text("label columns", list(labels), "values")
    for column, values in labels.items():
        check_text(f"label column {column!r}", values, "values")


def checked(
    X: npt.NDArray[np.float32], samples: list[str], genes: list[str], labels: dict[str, list[str]]
) -> ParsedDataset:
    """Refuse empty data, NUL in any text, duplicate ids and non-finite values, naming the
    culprits."""
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise InvalidExpressionData(f"the data has shape {X.shape}; it needs samples and genes")
    check_text("sample ids", samples, "values")
    check_text("gene ids", genes, "values")
    _refuse_nul_labels(labels)
    empty = [f"row {i + 1}" for i, s in enumerate(samples) if not s]
    if empty:
        raise InvalidExpressionData(f"samples without an id: {empty[:MAX_LISTED]}")
    _refuse_duplicate_ids("samples", samples)
    _refuse_duplicate_ids("genes", genes)
    if np.isfinite(X).all():  # the common case: one pass, no index arrays
        return ParsedDataset(X, samples, genes, labels)
    bad_rows, bad_cols = np.nonzero(~np.isfinite(X))
    raise InvalidExpressionData(
        f"{bad_rows.size} values are missing or not finite",
        samples=sorted({samples[i] for i in bad_rows})[:MAX_LISTED],
        genes=sorted({genes[j] for j in bad_cols})[:MAX_LISTED],
    )


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
            X=npz["X"].astype(np.float32, copy=False),
            sample_ids=[str(s) for s in npz["sample_ids"]],
            gene_ids=[str(g) for g in npz["gene_ids"]],
            labels={c: [str(v) for v in npz[f"label_{i}"]] for i, c in enumerate(columns)},
        )
