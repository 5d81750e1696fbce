"""Large /v1 JSON bodies read by Arrow's JSON parser, which releases the GIL while it parses.

orjson is the faster parser on one core (2,000 × 765 samples: 95 ms with `np.asarray`, against
125 ms here) but holds the GIL for the whole parse: while one request's body is parsed nothing
else in the process runs, not the event loop receiving the next body, not the ONNX Runtime call
of the request before, not the answer after. Arrow's parser (C++) lets them run on the other
core, and two bodies parse side by side (tests/perf/RESULTS.md, issue 15 point 1). Small bodies
keep orjson: their parse is shorter than a thread switch.

Only a body Arrow reads exactly as the schema says is taken here: one JSON object, no other key,
no null, every row as long as the gene list, names within their lengths, every value finite once
float32. Anything else (a text or boolean cell, NaN, ragged rows, a duplicate key, `\\u` escapes
are fine) returns None, and the orjson and strict paths of `app.codecs.payloads` decide and name
the cells as before. Values are read as float64 and rounded to float32 by numpy, exactly as
`np.asarray(orjson.loads(...), float32)` does.
"""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

# bodies from this size up take this path: a 1 MiB body parses in ~7 ms
MIN_BYTES = 1 << 20

_NAMES = pa.list_(pa.string())
_ROWS = pa.list_(pa.float64())
_MATRIX = pa.schema([("genes", _NAMES), ("sample_ids", _NAMES), ("values", pa.list_(_ROWS))])
_RECORDS = pa.schema(
    [("genes", _NAMES), ("samples", pa.list_(pa.struct([("id", pa.string()), ("values", _ROWS)])))]
)


def read(
    body: bytes, *, gene_length: int, id_length: int
) -> tuple[list[str], list[str], np.ndarray] | None:
    """(sample ids, genes, float32 samples × genes) of a matrix or records body, or None when
    the body is not plainly one (the other paths then decide)."""
    table = _table(body, _MATRIX)
    if table is not None:
        ids, rows = _only(table, "sample_ids"), _only(table, "values")
    else:
        table = _table(body, _RECORDS)
        if table is None:
            return None
        samples = _only(table, "samples")
        if samples.null_count:
            return None
        ids, rows = samples.flatten()
    genes = _only(table, "genes")
    if not (_names(genes, gene_length) and _names(ids, id_length)):
        return None
    n, width = len(ids), len(genes)
    if len(rows) != n or rows.null_count:
        return None
    lengths = pc.list_value_length(rows)
    if pc.min(lengths).as_py() != width or pc.max(lengths).as_py() != width:
        return None
    cells = rows.flatten()
    if cells.null_count:
        return None
    with np.errstate(over="ignore"):
        values = cells.to_numpy().astype(np.float32).reshape(n, width)
    if not np.isfinite(values).all():
        return None
    return ids.to_pylist(), genes.to_pylist(), values


def _table(body: bytes, schema: pa.Schema) -> pa.Table | None:
    """The body as one row of `schema`, or None (not JSON, another shape, a null field)."""
    try:
        table = pajson.read_json(
            io.BytesIO(body),
            read_options=pajson.ReadOptions(use_threads=False, block_size=len(body) + 1),
            parse_options=pajson.ParseOptions(
                explicit_schema=schema, unexpected_field_behavior="error"
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if table.num_rows != 1 or any(c.null_count or c.num_chunks != 1 for c in table.columns):
        return None
    return table


def _only(table: pa.Table, column: str) -> pa.Array:
    """The list in the one row's `column`, as an array of its items."""
    return table.column(column).chunk(0).flatten()


def _names(names: pa.Array, longest: int) -> bool:
    """Non-empty, no null, every name 1 to `longest` characters."""
    if len(names) == 0 or names.null_count:
        return False
    lengths = pc.utf8_length(names)
    return bool(pc.min(lengths).as_py() >= 1 and pc.max(lengths).as_py() <= longest)
