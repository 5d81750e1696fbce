"""Decoders: a request body in, (sample ids, gene ids, float32 samples × genes matrix) out.

JSON comes as records (`{"genes": [...], "samples": [{"id", "values"}]}`) or as a matrix
(`{"genes": [...], "sample_ids": [...], "values": [[...], ...]}`); npy is a bare float matrix whose
columns follow the model's panel; npz names its own genes. Tables (CSV/TSV, Arrow, Parquet) are
in `app.codecs.tables`. Every refusal names the samples and genes at fault.
"""

from __future__ import annotations

import io
import zipfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import pydantic_core
from pydantic import ValidationError

from app.codecs import jsonarrow
from app.errors import InvalidExpressionData, InvalidRequest, PayloadTooLarge
from app.schemas.predict import ExpressionIn, MatrixIn

MAX_LISTED = 50


@dataclass(frozen=True)
class Expression:
    sample_ids: list[str]
    genes: list[str]
    values: npt.NDArray[np.float32]


def _listed(ids: Sequence[str]) -> str:
    more = f" and {len(ids) - MAX_LISTED} more" if len(ids) > MAX_LISTED else ""
    return ", ".join(ids[:MAX_LISTED]) + more


def check_count(n_samples: int, max_samples: int) -> None:
    """413 when one request carries more samples than allowed."""
    if n_samples > max_samples:
        raise PayloadTooLarge(
            f"{n_samples} samples in one request; at most {max_samples} are accepted",
            max_samples=max_samples,
        )


def check_ids(sample_ids: list[str]) -> None:
    """Refuse duplicate sample ids, naming them."""
    dupes = sorted(s for s, n in Counter(sample_ids).items() if n > 1)
    if dupes:
        raise InvalidExpressionData(f"duplicate sample ids: {_listed(dupes)}", samples=dupes)


def decode_json(body: bytes, *, max_samples: int) -> Expression:
    """Records or matrix JSON (chosen by the keys present), validated strictly.

    A well-formed body takes a fast path (from 1 MiB Arrow's parser, which releases the GIL:
    `app.codecs.jsonarrow`; below, or when Arrow declines, `_fast_json`: orjson, one numpy
    conversion, every cell checked by counting); anything they do not vouch for takes the strict
    pydantic path, which names every bad cell by sample and gene.
    """
    fast = _arrow_json(body, max_samples) if len(body) >= jsonarrow.MIN_BYTES else None
    fast = fast or _fast_json(body, max_samples)
    if fast is not None:
        return fast
    try:
        data = pydantic_core.from_json(body)  # unlike orjson, reads NaN/Infinity: we name them
    except ValueError as exc:
        raise InvalidRequest(f"The request body is malformed: invalid JSON ({exc})") from exc
    if isinstance(data, dict) and "values" in data and "samples" not in data:
        try:
            matrix = MatrixIn.model_validate(data)
        except ValidationError as exc:
            raise _named(exc, data, matrix=True) from exc
        return decode_matrix(matrix, max_samples=max_samples)
    try:
        records = ExpressionIn.model_validate(data)
    except ValidationError as exc:
        raise _named(exc, data, matrix=False) from exc
    return decode_records(records, max_samples=max_samples)


# Bytes whose count in a body proves its numbers are only numbers. JSON outside strings is
# punctuation, digits, '-', '+', '.', 'e'/'E' and the literals true, false and null: a '"'
# starts or ends a string, every 'u' outside a string is in true or null, every 'a' in false.
# So once the counts of '"', 'u' and 'a' in the whole body equal those the names, ids and keys
# account for, no value cell is a string, a boolean or null (a \uXXXX escape or a duplicate key
# only makes the counts differ: the strict path then decides).
_MARKS = b'"ua'
_NOT_MARKS = bytes(b for b in range(256) if b not in _MARKS)


def marks_match(body: bytes, strings: Sequence[str], literals: Sequence[object] = ()) -> bool:
    """True when every '"', 'u' and 'a' of `body` is in `strings` (keys too) or `literals`."""
    text = "".join(strings)
    quotes = 2 * len(strings) + text.count('"')
    u = text.count("u") + sum(1 for v in literals if v is True or v is None)
    a = text.count("a") + sum(1 for v in literals if v is False)
    marks = body.translate(None, _NOT_MARKS)  # one C pass; what remains is small
    return marks.count(b'"') == quotes and marks.count(b"u") == u and marks.count(b"a") == a


def _names(items: Any, longest: int) -> bool:
    """A list of non-empty strings of at most `longest` characters (C-level passes: a 20,000-gene
    list in ~1 ms, not the ~14 ms of a Python loop)."""
    if not isinstance(items, list) or not items:
        return isinstance(items, list)
    if set(map(type, items)) != {str}:
        return False
    lengths = list(map(len, items))
    return min(lengths) > 0 and max(lengths) <= longest


def _arrow_json(body: bytes, max_samples: int) -> Expression | None:
    """A large body through Arrow's parser, which releases the GIL (`app.codecs.jsonarrow`)."""
    read = jsonarrow.read(body, gene_length=128, id_length=256)
    if read is None:
        return None
    ids, genes, values = read
    check_count(len(ids), max_samples)
    check_ids(ids)
    # Arrow's path vouches for non-empty names and finite values; their text is checked here,
    # as `check_finite` does on the other paths
    check_text("sample_ids", ids)
    check_text("genes", genes)
    return Expression(ids, genes, values)


def _fast_json(body: bytes, max_samples: int) -> Expression | None:
    """The matrix of a well-formed body, or None for the strict path to decide (and name)."""
    try:
        data = orjson.loads(body)  # refuses NaN/Infinity: the strict path names them
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    keys = list(data)
    genes = data.get("genes")
    if sorted(keys) == ["genes", "sample_ids", "values"]:
        ids, rows = data["sample_ids"], data["values"]
        strings = [*keys, *genes] if isinstance(genes, list) else []
        strings += ids if isinstance(ids, list) else []
    elif sorted(keys) == ["genes", "samples"] and isinstance(data["samples"], list):
        samples = data["samples"]
        if not all(
            type(s) is dict and len(s) == 2 and "id" in s and "values" in s for s in samples
        ):
            return None
        ids = [s["id"] for s in samples]
        rows = [s["values"] for s in samples]
        strings = [*keys, *genes] if isinstance(genes, list) else []
        strings += [k for s in samples for k in s]
        strings += ids
    else:
        return None
    if not (_names(genes, 128) and _names(ids, 256) and genes and ids):
        return None
    if not isinstance(rows, list) or len(rows) != len(ids):
        return None
    check_count(len(ids), max_samples)
    if not marks_match(body, strings):
        return None
    try:
        with np.errstate(over="ignore"):  # beyond float32: inf, named by check_finite
            values = np.asarray(rows, dtype=np.float32)
    except (ValueError, TypeError):  # ragged rows, nested objects: named by the strict path
        return None
    if values.shape != (len(ids), len(genes)):
        return None
    check_ids(ids)
    return check_finite(Expression(ids, genes, values))


def _named(exc: ValidationError, data: Any, *, matrix: bool) -> InvalidRequest:
    """A validation error, with the sample and gene of every bad value cell named."""
    errors = [
        {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()[:50]
    ]
    where = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors[:5])
    detail = f"The request body is malformed: {where}"
    samples: list[str] = []
    genes: list[str] = []
    for e in errors:
        loc = e["loc"]
        cell = (loc[1], loc[2]) if matrix and len(loc) >= 3 and loc[0] == "values" else None
        if not matrix and len(loc) >= 4 and loc[0] == "samples" and loc[2] == "values":
            cell = (loc[1], loc[3])
        if cell is None or not (isinstance(cell[0], int) and isinstance(cell[1], int)):
            continue
        samples.append(_pick(data, "sample_ids" if matrix else "samples", cell[0], matrix))
        genes.append(_pick(data, "genes", cell[1], True))
    if not samples:
        return InvalidRequest(detail, errors=errors)
    samples, genes = list(dict.fromkeys(samples)), list(dict.fromkeys(genes))
    detail += f" (samples: {_listed(samples)}; genes: {_listed(genes)})"
    return InvalidExpressionData(detail, samples=samples[:MAX_LISTED], genes=genes[:MAX_LISTED])


def _pick(data: Any, key: str, index: int, plain: bool) -> str:
    try:
        item = data[key][index]
        return str(item if plain else item["id"])
    except (KeyError, IndexError, TypeError):
        return f"#{index}"


def decode_records(body: ExpressionIn, *, max_samples: int) -> Expression:
    """Check a records body and turn it into a matrix; every problem names its samples."""
    sample_ids = [s.id for s in body.samples]
    return _from_rows(sample_ids, list(body.genes), [s.values for s in body.samples], max_samples)


def decode_matrix(body: MatrixIn, *, max_samples: int) -> Expression:
    """Check a matrix body (one row of values per sample id) and turn it into a matrix."""
    if len(body.values) != len(body.sample_ids):
        raise InvalidExpressionData(
            f"{len(body.sample_ids)} sample ids but {len(body.values)} rows of values"
        )
    return _from_rows(list(body.sample_ids), list(body.genes), body.values, max_samples)


def _from_rows(
    sample_ids: list[str], genes: list[str], rows: Sequence[list[Any]], max_samples: int
) -> Expression:
    check_count(len(sample_ids), max_samples)
    check_ids(sample_ids)
    n_genes = len(genes)
    wrong = [sid for sid, row in zip(sample_ids, rows, strict=True) if len(row) != n_genes]
    if wrong:
        raise InvalidExpressionData(
            f"{len(wrong)} sample(s) do not have one value per gene ({n_genes} genes): "
            f"{_listed(wrong)}",
            samples=wrong[:MAX_LISTED],
        )
    nulls = [sid for sid, row in zip(sample_ids, rows, strict=True) if None in row]
    if nulls:
        raise InvalidExpressionData(
            f"{len(nulls)} sample(s) have null values: {_listed(nulls)}",
            samples=nulls[:MAX_LISTED],
        )
    with np.errstate(over="ignore"):  # beyond float32: inf, named by check_finite
        values = np.array(rows, dtype=np.float32)
    return check_finite(Expression(sample_ids, genes, values))


def decode_npy(
    body: bytes, *, panel: list[str], sample_ids: list[str] | None, max_samples: int
) -> Expression:
    """An npy matrix, samples × the model's panel genes in panel order."""
    values = _matrix(_load_npy(body), "the npy body")
    if values.shape[1] != len(panel):
        raise InvalidExpressionData(
            f"the npy matrix has {values.shape[1]} columns; this model's panel has {len(panel)} "
            "genes (in the order GET /v1/models/{name} lists them). Send npz to name your genes."
        )
    ids = sample_ids or [str(i) for i in range(values.shape[0])]
    if len(ids) != values.shape[0]:
        raise InvalidExpressionData(
            f"X-Sample-IDs names {len(ids)} samples, the matrix has {values.shape[0]} rows"
        )
    check_count(len(ids), max_samples)
    check_ids(ids)
    return check_finite(Expression(ids, list(panel), values))


def decode_npz(body: bytes, *, max_samples: int) -> Expression:
    """An npz archive with `values` (samples × genes), `genes` and optional `sample_ids`."""
    try:
        with np.load(io.BytesIO(body), allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise InvalidRequest(f"The request body is not a readable npz archive: {exc}") from exc
    missing = [k for k in ("values", "genes") if k not in arrays]
    if missing:
        raise InvalidRequest(f"the npz archive lacks {missing}; it has {sorted(arrays)}")
    values = _matrix(arrays["values"], "npz 'values'")
    genes = [str(g) for g in arrays["genes"].reshape(-1)]
    if len(genes) != values.shape[1]:
        raise InvalidExpressionData(
            f"npz 'genes' names {len(genes)} genes, 'values' has {values.shape[1]} columns"
        )
    ids = [str(s) for s in arrays.get("sample_ids", np.arange(values.shape[0])).reshape(-1)]
    if len(ids) != values.shape[0]:
        raise InvalidExpressionData(
            f"npz 'sample_ids' names {len(ids)} samples, 'values' has {values.shape[0]} rows"
        )
    check_count(len(ids), max_samples)
    check_ids(ids)
    return check_finite(Expression(ids, genes, values))


def _load_npy(body: bytes) -> npt.NDArray[Any]:
    try:
        array: npt.NDArray[Any] = np.load(io.BytesIO(body), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InvalidRequest(f"The request body is not a readable npy array: {exc}") from exc
    return array


def _matrix(array: npt.NDArray[Any], what: str) -> npt.NDArray[np.float32]:
    if array.ndim != 2:
        raise InvalidExpressionData(f"{what} must be a samples × genes matrix, got {array.shape}")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise InvalidExpressionData(f"{what} must hold numbers, not {array.dtype}")
    with np.errstate(over="ignore"):  # beyond float32: inf, named by check_finite
        return np.ascontiguousarray(array, dtype=np.float32)


def check_text(field: str, names: Sequence[str], key: str = "ids") -> None:
    """Refuse a NUL character in ids or labels (no database stores it as text, nor do numpy's
    strings keep it), naming the field and, under `key`, the values."""
    if "\x00" in "".join(names):
        bad = [n.replace("\x00", "\\x00") for n in names if "\x00" in n]
        raise InvalidExpressionData(
            f"{field}: {len(bad)} value(s) contain a NUL character (U+0000): {_listed(bad)}",
            field=field,
            **{key: bad[:MAX_LISTED]},
        )


def check_finite(expr: Expression) -> Expression:
    """Refuse NUL in the ids, NaN and ±Inf in the values (naming the samples and genes at fault):
    the last check of every decoder; a body without samples or genes (a header and no rows) is
    refused here too."""
    if not expr.sample_ids or not expr.genes:
        raise InvalidExpressionData(
            f"the request holds {len(expr.sample_ids)} sample(s) and {len(expr.genes)} gene(s); "
            "it needs at least one of each (a table needs a header and a row per sample)"
        )
    check_text("sample_ids", expr.sample_ids)
    check_text("genes", expr.genes)
    bad = ~np.isfinite(expr.values)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        cols = np.flatnonzero(bad.any(axis=0))
        samples = [expr.sample_ids[i] for i in rows]
        genes = [expr.genes[j] for j in cols]
        raise InvalidExpressionData(
            f"NaN or infinite values in {len(samples)} sample(s): {_listed(samples)} "
            f"(genes: {_listed(genes)})",
            samples=samples[:MAX_LISTED],
            genes=genes[:MAX_LISTED],
        )
    return expr
