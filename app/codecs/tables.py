"""Tabular payloads (CSV/TSV, Arrow IPC stream, Parquet): one row per sample, one column per gene.

The sample ids are the first column of a CSV/TSV (its header cell may say anything). In Arrow and
Parquet they are the column named `sample_id`, else the first column when it holds strings, else
the samples are numbered from 0. Every other column is a gene and must hold numbers.
"""

from __future__ import annotations

import io
import os
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from app.codecs.payloads import (
    MAX_LISTED,
    Expression,
    _listed,
    check_count,
    check_finite,
    check_ids,
)
from app.errors import InvalidExpressionData, InvalidRequest

ID_COLUMN = "sample_id"


def decode_delimited(body: bytes, *, delimiter: str, max_samples: int) -> Expression:
    """CSV (delimiter ',') or TSV ('\\t'): samples as rows, the first column their ids.

    Every gene column is typed float32 up front and the values come out as one matrix; a table
    that does not parse that way (a text or empty cell, a ragged row) is read again with type
    inference, which names the cells at fault.
    """
    what = "CSV" if delimiter == "," else "TSV"
    end = body.find(b"\n")
    first_line = (body if end < 0 else body[:end]).rstrip(b"\r")  # a slice: no copy of the body
    names = [n.strip().strip('"') for n in first_line.decode("utf-8", "replace").split(delimiter)]
    fast = _typed(body, delimiter, names, max_samples)
    if fast is not None:
        return fast
    id_column = names[0]
    try:
        table = pacsv.read_csv(
            io.BytesIO(body),
            parse_options=pacsv.ParseOptions(delimiter=delimiter),
            # ids stay text even when they look like numbers ("007" must not become 7)
            convert_options=pacsv.ConvertOptions(
                column_types={id_column: pa.string()}, strings_can_be_null=True
            ),
            read_options=pacsv.ReadOptions(use_threads=False),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise InvalidRequest(f"The request body is not readable {what}: {exc}") from exc
    if table.num_columns < 2:
        raise InvalidRequest(f"the {what} needs a sample-id column and at least one gene column")
    ids = [_text(v) for v in table.column(0).to_pylist()]
    return _to_expression(table, ids, first_gene=1, max_samples=max_samples)


def block_size(n_bytes: int, n_columns: int) -> int:
    """pyarrow CSV block size: one block per core, but few column chunks on wide tables.

    Each block is parsed on its own thread and becomes one chunk per column; on a 20,000-column
    table the per-chunk work outweighs the parallelism past two blocks, on a 765-column one it
    does not (measured in tests/perf/bench.py's parse limits).
    """
    blocks = max(1, min(os.cpu_count() or 1, 40_000 // max(n_columns, 1), n_bytes >> 20))
    return max(1 << 20, -(-n_bytes // blocks) + (1 << 16))


def _typed(body: bytes, delimiter: str, names: list[str], max_samples: int) -> Expression | None:
    """The expression of a table whose gene columns all parse as float32; else None."""
    if len(names) < 2 or len(set(names)) != len(names) or not all(names):
        return None
    types = {names[0]: pa.string(), **dict.fromkeys(names[1:], pa.float32())}
    try:
        table = pacsv.read_csv(
            pa.BufferReader(body),
            read_options=pacsv.ReadOptions(
                column_names=names, skip_rows=1, block_size=block_size(len(body), len(names))
            ),
            parse_options=pacsv.ParseOptions(delimiter=delimiter),
            convert_options=pacsv.ConvertOptions(column_types=types, strings_can_be_null=True),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    if table.num_rows == 0:
        return None
    ids = [_text(v) for v in table.column(0).to_pylist()]
    check_count(len(ids), max_samples)
    if not all(ids):
        return None
    batch = table.drop_columns([names[0]]).combine_chunks().to_batches()[0]
    try:  # the tensor refuses null cells: one check over the matrix, not one per column
        tensor = batch.to_tensor(row_major=True)
    except pa.ArrowTypeError:
        return None  # empty cells: named by the inferring path
    check_ids(ids)
    with np.errstate(over="ignore"):  # beyond float32: inf, named by check_finite
        values = np.asarray(tensor.to_numpy(), dtype=np.float32)
    return check_finite(Expression(ids, names[1:], values))


def decode_arrow(body: bytes, *, max_samples: int) -> Expression:
    """An Arrow IPC stream."""
    try:
        table = pa.ipc.open_stream(pa.BufferReader(body)).read_all()
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as exc:
        raise InvalidRequest(f"The request body is not an Arrow IPC stream: {exc}") from exc
    return _from_table(table, max_samples)


def decode_parquet(body: bytes, *, max_samples: int) -> Expression:
    """A Parquet file."""
    try:
        table = pq.read_table(pa.BufferReader(body))
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as exc:
        raise InvalidRequest(f"The request body is not a Parquet file: {exc}") from exc
    return _from_table(table, max_samples)


def _from_table(table: pa.Table, max_samples: int) -> Expression:
    names = table.column_names
    if ID_COLUMN in names:
        index = names.index(ID_COLUMN)
        table = table.select([index, *(i for i in range(len(names)) if i != index)])
    elif not names or not pa.types.is_string(table.schema.field(0).type):
        ids = [str(i) for i in range(table.num_rows)]
        return _to_expression(table, ids, first_gene=0, max_samples=max_samples)
    ids = [_text(v) for v in table.column(0).to_pylist()]
    return _to_expression(table, ids, first_gene=1, max_samples=max_samples)


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _to_expression(
    table: pa.Table, ids: list[str], *, first_gene: int, max_samples: int
) -> Expression:
    check_count(len(ids), max_samples)
    empty = [f"row {i + 1}" for i, s in enumerate(ids) if not s]
    if empty:
        raise InvalidExpressionData(f"samples without an id: {_listed(empty)}", samples=empty)
    check_ids(ids)
    genes = table.column_names[first_gene:]
    if not genes:
        raise InvalidRequest("the table has no gene columns")
    columns = []
    bad_genes: list[str] = []
    bad_samples: set[int] = set()
    for gene, column in zip(genes, table.columns[first_gene:], strict=True):
        kind = column.type
        if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_null(kind):
            nulls = column.null_count
            if nulls:
                bad_genes.append(gene)
                bad_samples.update(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False)))
            columns.append(column.to_numpy().astype(np.float32, copy=False))
        else:  # text, booleans, dates...: name the cells that are not numbers
            bad_genes.append(gene)
            bad_samples.update(i for i, v in enumerate(column.to_pylist()) if not _is_number(v))
    if bad_genes:
        samples = [ids[i] for i in sorted(bad_samples)]
        raise InvalidExpressionData(
            f"empty or non-numeric values in {len(samples)} sample(s): {_listed(samples)} "
            f"(genes: {_listed(bad_genes)})",
            samples=samples[:MAX_LISTED],
            genes=bad_genes[:MAX_LISTED],
        )
    values = np.column_stack(columns) if columns else np.empty((len(ids), 0), np.float32)
    return check_finite(Expression(ids, [str(g) for g in genes], values))


def _is_number(value: Any) -> bool:
    if isinstance(value, bool) or value is None:
        return False
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True
