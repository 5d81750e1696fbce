"""Large /v1 JSON bodies read by Arrow's JSON parser, which releases the GIL while it parses.

orjson is the faster parser on one core (2,000 × 765 samples: 95 ms with `np.asarray`, against
125 ms here) but holds the GIL for the whole parse: while one request's body is parsed nothing
else in the process runs, not the event loop receiving the next body, not the ONNX Runtime call
of the request before, not the answer after. Arrow's parser (C++) lets them run on the other
core, and two bodies parse side by side (tests/perf/RESULTS.md, issue 15 point 1). Small bodies
keep orjson: their parse is shorter than a thread switch.

Only a body Arrow reads exactly as the schema says is taken here: one JSON object in UTF-8
without a byte-order mark, no other key, no null, every row as long as the gene list, names
within their lengths, every value finite once float32. Anything else (a text or boolean cell,
NaN, ragged rows, a duplicate key, invalid UTF-8) returns None, and the orjson and strict paths
of `app.codecs.payloads` and `app.codecs.v2` decide and name the cells as before. The names are
then checked as on those paths (`payloads.check_finite`: no NUL). Values are read as float64 and
rounded to float32 by numpy, exactly as `np.asarray(orjson.loads(...), float32)` does.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

# bodies from this size up take this path: a 1 MiB body parses in ~7 ms
MIN_BYTES = 1 << 20

_NAMES = pa.list_(pa.string())
_ROWS = pa.list_(pa.float64())
# /v1: the matrix form's keys and the records form's, all optional; which are present decides
_V1 = pa.schema(
    [
        ("genes", _NAMES),
        ("sample_ids", _NAMES),
        ("values", pa.list_(_ROWS)),
        ("samples", pa.list_(pa.struct([("id", pa.string()), ("values", _ROWS)]))),
    ]
)


def _v2(data: pa.DataType) -> pa.Schema:
    """A KServe v2 request with one input whose `data` is `data`. Only fields whose absence and
    null mean the same to `app.codecs.v2` (an output's parameters do not: declined)."""
    tensor = [("name", pa.string()), ("shape", pa.list_(pa.int64())), ("datatype", pa.string())]
    params = [("input_scale", pa.string()), ("binary_data_output", pa.bool_())]
    return pa.schema(
        [
            ("id", pa.string()),
            ("inputs", pa.list_(pa.struct([*tensor, ("data", data)]))),
            ("outputs", pa.list_(pa.struct([("name", pa.string())]))),
            ("parameters", pa.struct(params)),
        ]
    )


_V2_NESTED, _V2_FLAT = _v2(pa.list_(_ROWS)), _v2(_ROWS)


def read(
    body: bytes, *, gene_length: int, id_length: int
) -> tuple[list[str], list[str], np.ndarray] | None:
    """(sample ids, genes, float32 samples × genes) of a matrix or records body, or None when
    the body is not plainly one (the other paths then decide)."""
    table = _table(body, _V1)
    if table is None:
        return None
    matrix = [table.column(k).null_count == 0 for k in ("sample_ids", "values", "samples")]
    if matrix == [True, True, False]:
        ids, rows = _only(table, "sample_ids"), _only(table, "values")
    elif matrix == [False, False, True]:
        samples = _only(table, "samples")
        if samples.null_count:
            return None
        ids, rows = samples.flatten()
    else:
        return None
    genes = _only(table, "genes")
    if not (_names(genes, gene_length) and _names(ids, id_length)):
        return None
    n, width = len(ids), len(genes)
    if len(rows) != n or rows.null_count:
        return None
    lengths = pc.list_value_length(rows)
    if pc.min(lengths).as_py() != width or pc.max(lengths).as_py() != width:
        return None
    values = _finite_float32(rows.flatten())
    if values is None:
        return None
    return ids.to_pylist(), genes.to_pylist(), values.reshape(n, width)


def read_v2(body: bytes) -> dict[str, Any] | None:
    """A v2 JSON request with one input whose data are numbers (nested by row or flat), its
    data as a float32 array, or None (`app.codecs.v2` then decides)."""
    table = _table(body, _V2_NESTED)
    if table is None:
        table = _table(body, _V2_FLAT)
        if table is None:
            return None
    inputs = _only(table, "inputs")
    if len(inputs) != 1 or inputs.null_count:
        return None
    name, shape, datatype, data = inputs.flatten()
    if data.null_count:  # no data (a binary input, or none): v2 says which
        return None
    data = data.flatten()  # the one input's data
    if pa.types.is_list(data.type):  # nested by row: rows of one length, else declined
        lengths = pc.list_value_length(data)
        if data.null_count or pc.min(lengths).as_py() != pc.max(lengths).as_py():
            return None
        data = data.flatten()
    values = _finite_float32(data)
    if values is None:
        return None
    try:
        spec = {"name": name[0].as_py(), "shape": shape[0].as_py(), "datatype": datatype[0].as_py()}
        request = _present({k: table.column(k)[0].as_py() for k in ("id", "outputs", "parameters")})
    except UnicodeDecodeError:  # Arrow reads invalid UTF-8 without a word; orjson refuses it
        return None
    return {**request, "inputs": [{**spec, "data": values}]}


def _finite_float32(cells: pa.Array) -> np.ndarray | None:
    """The float64 cells rounded to float32 by numpy, or None when one is null or not finite
    as float32 (NaN, or beyond float32's range)."""
    if cells.null_count:
        return None
    with np.errstate(over="ignore"):
        values = cells.to_numpy().astype(np.float32)
    return values if np.isfinite(values).all() else None


def _present(item: Any) -> Any:
    """`item` without the keys Arrow filled with null for fields the body did not have."""
    if isinstance(item, dict):
        return {k: _present(v) for k, v in item.items() if v is not None}
    if isinstance(item, list):
        return [_present(v) for v in item]
    return item


def _table(body: bytes, schema: pa.Schema) -> pa.Table | None:
    """The body as one row of `schema` (absent fields null), or None: not one JSON object in
    UTF-8, another shape."""
    if body.startswith(b"\xef\xbb\xbf"):  # a BOM: Arrow skips it, orjson and pydantic refuse
        return None
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
    if table.num_rows != 1 or any(c.num_chunks != 1 for c in table.columns):
        return None
    return table


def _only(table: pa.Table, column: str) -> pa.Array:
    """The list in the one row's `column`, as an array of its items."""
    return table.column(column).chunk(0).flatten()


def _names(names: pa.Array, longest: int) -> bool:
    """Non-empty, no null, valid UTF-8 (Arrow does not check it; orjson refuses it), every name 1
    to `longest` characters."""
    if len(names) == 0 or names.null_count:
        return False
    try:
        names.validate(full=True)
    except pa.ArrowInvalid:
        return False
    lengths = pc.utf8_length(names)
    return bool(pc.min(lengths).as_py() >= 1 and pc.max(lengths).as_py() <= longest)
