"""Content negotiation for /v1: request bodies by Content-Type (and Content-Encoding), answers by
Accept. Decompression and decoding run in a worker thread, never on the event loop."""

from __future__ import annotations

import asyncio
import io
import zlib
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from fastapi import Request
from fastapi.responses import Response

from app.codecs import tables
from app.codecs.payloads import Expression, decode_json, decode_npy, decode_npz
from app.errors import (
    InvalidRequest,
    NotAcceptable,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from app.schemas.predict import Answer, ClassifyOut, MultiTaskOut, RegressOut, SamplePrediction

JSON = "application/json"
CSV, TSV = "text/csv", "text/tab-separated-values"
ARROW, PARQUET = "application/vnd.apache.arrow.stream", "application/vnd.apache.parquet"
NPY, NPZ = "application/x-npy", "application/x-npz"
ALIASES = {"text/tsv": TSV, "application/x-parquet": PARQUET, "application/octet-stream": NPY}
REQUEST_TYPES = (JSON, CSV, TSV, ARROW, PARQUET, NPY, NPZ)
RESPONSE_TYPES = (JSON, CSV, TSV, ARROW, PARQUET)


def media_type(header: str | None) -> str:
    """The bare, lower-case media type of a Content-Type header."""
    bare = (header or JSON).split(";", 1)[0].strip().lower()
    if bare.endswith("+json"):
        return JSON
    return ALIASES.get(bare, bare)


def inflate(body: bytes, encoding: str | None, limit: int) -> bytes:
    """Undo gzip/deflate Content-Encoding, refusing anything that inflates past `limit` bytes."""
    coding = (encoding or "identity").strip().lower()
    if coding == "identity":
        return body
    if coding not in ("gzip", "deflate"):
        raise UnsupportedMediaType(f"Content-Encoding {coding!r}; use gzip, deflate or none")
    inflater = zlib.decompressobj(wbits=31 if coding == "gzip" else 15)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise InvalidRequest(f"the {coding} body cannot be decompressed: {exc}") from exc
    if len(out) > limit or inflater.unconsumed_tail:
        raise PayloadTooLarge(f"the body inflates to more than {limit} bytes", max_body_bytes=limit)
    return out


async def read_expression(
    request: Request, *, panel: list[str], max_samples: int, max_bytes: int
) -> Expression:
    """Decode the body, whatever its format, into an Expression (in a worker thread)."""
    kind = media_type(request.headers.get("content-type"))
    if kind not in REQUEST_TYPES:
        raise UnsupportedMediaType(f"Content-Type {kind!r}; accepted: {', '.join(REQUEST_TYPES)}")
    raw = await request.body()
    encoding = request.headers.get("content-encoding")
    ids_header = request.headers.get("x-sample-ids")
    sample_ids = [s.strip() for s in ids_header.split(",")] if ids_header else None

    def decode() -> Expression:
        body = inflate(raw, encoding, max_bytes)
        if kind == JSON:
            return decode_json(body, max_samples=max_samples)
        if kind in (CSV, TSV):
            delimiter = "," if kind == CSV else "\t"
            return tables.decode_delimited(body, delimiter=delimiter, max_samples=max_samples)
        if kind == ARROW:
            return tables.decode_arrow(body, max_samples=max_samples)
        if kind == PARQUET:
            return tables.decode_parquet(body, max_samples=max_samples)
        if kind == NPZ:
            return decode_npz(body, max_samples=max_samples)
        return decode_npy(body, panel=panel, sample_ids=sample_ids, max_samples=max_samples)

    return await asyncio.to_thread(decode)


def choose(accept: str | None) -> str:
    """The first supported type the Accept header lists; JSON for none or */*."""
    for part in (accept or "*/*").split(","):
        kind = part.split(";", 1)[0].strip().lower()
        if kind in ("*/*", "application/*", "") or media_type(kind) == JSON:
            return JSON
        kind = ALIASES.get(kind, kind)
        if kind in RESPONSE_TYPES:
            return kind
    raise NotAcceptable(f"cannot answer in {accept!r}; available: {', '.join(RESPONSE_TYPES)}")


def _table(out: Answer) -> pa.Table:
    if isinstance(out, ClassifyOut):
        labels = list(out.predictions[0].probabilities) if out.predictions else []
        columns: dict[str, list[Any]] = {
            "sample_id": [p.id for p in out.predictions],
            "label": [p.label for p in out.predictions],
        }
        for label in labels:
            columns[f"p_{label}"] = [p.probabilities[label] for p in out.predictions]
        return pa.table(columns)
    if isinstance(out, RegressOut):
        targets = list(out.predictions[0].values) if out.predictions else []
        columns = {"sample_id": [p.id for p in out.predictions]}
        for target in targets:
            columns[target] = [p.values[target] for p in out.predictions]
        return pa.table(columns)
    if isinstance(out, MultiTaskOut):
        return _tasks_table(out)
    width = len(out.embeddings[0].embedding) if out.embeddings else 0
    columns = {"sample_id": [e.id for e in out.embeddings]}
    for k in range(width):
        columns[f"e{k}"] = [e.embedding[k] for e in out.embeddings]
    return pa.table(columns)


def _tasks_table(out: MultiTaskOut) -> pa.Table:
    """A row per sample; per classification task `<task>.label` and `<task>.p_<class>`, per
    regression task a column named after it."""
    columns: dict[str, list[Any]] = {}
    for name, answer in out.tasks.items():
        rows = answer.predictions
        columns.setdefault("sample_id", [p.id for p in rows])
        for p in rows:
            if isinstance(p, SamplePrediction):
                columns.setdefault(f"{name}.label", []).append(p.label)
                for label, value in p.probabilities.items():
                    columns.setdefault(f"{name}.p_{label}", []).append(value)
            else:
                columns.setdefault(name, []).append(p.values[name])
    return pa.table(columns)


def _write(kind: str) -> Callable[[pa.Table, io.BytesIO], None]:
    def write(table: pa.Table, sink: io.BytesIO) -> None:
        if kind in (CSV, TSV):
            delimiter = "," if kind == CSV else "\t"
            pacsv.write_csv(table, sink, pacsv.WriteOptions(delimiter=delimiter))
        elif kind == ARROW:
            with pa.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table)
        else:
            pq.write_table(table, sink)

    return write


def render(out: Answer, kind: str) -> Response:
    """The answer in the negotiated format; tables carry the gene overlap in headers."""
    if kind == JSON:
        # pydantic-core writes the JSON itself: no Python dicts of the answer in between
        return Response(out.model_dump_json(), media_type=JSON)
    sink = io.BytesIO()
    _write(kind)(_table(out), sink)
    overlap = out.gene_overlap
    headers = {
        "X-Model": f"{out.model.name}/{out.model.version}",
        "X-Gene-Overlap": f"{overlap.matched}/{overlap.panel_size}",
    }
    if out.transform_applied is not None:
        headers["X-Input-Transform"] = out.transform_applied
    return Response(sink.getvalue(), media_type=kind, headers=headers)
