"""Open Inference Protocol (KServe v2) bodies: JSON and Triton's binary tensor extension.

A binary request is a JSON header (its length in `Inference-Header-Content-Length`) followed by
raw little-endian row-major tensors, in the order the header lists them; `Inference-Header-
Content-Length: 0` means the whole body is the one input of a single sample. Models take one FP32
input of shape [batch, n_genes] in panel order (no gene names on this protocol).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import pydantic_core

from app.codecs import jsonarrow
from app.codecs.multiomics import v2_modalities
from app.codecs.payloads import check_count, marks_match
from app.errors import InvalidExpressionData, InvalidRequest
from app.inference.backend import Array
from contract.card import InputScale, ModelCard

DTYPES: dict[str, np.dtype[Any]] = {
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "INT8": np.dtype("i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "UINT8": np.dtype("u1"),
}


@dataclass(frozen=True)
class InferRequest:
    id: str | None
    x: Array
    outputs: list[str]
    binary: dict[str, bool]
    declared_scale: InputScale | None = None  # request parameters.input_scale, if given
    # a multi-omics model's modality columns, packed after x (NaN rows: missing), if any
    extra: Array | None = None


def parse(
    body: bytes, header_length: int | None, card: ModelCard, max_samples: int
) -> InferRequest:
    """Decode an inference request for one model; InvalidRequest names what is wrong."""
    n_genes = card.n_genes
    if header_length == 0:  # raw binary request: the body is one sample's tensor
        x = _frombuffer(body, DTYPES["FP32"], [1, n_genes], "the raw binary body")
        return InferRequest(None, _finite(x), [o.name for o in card.outputs], {})
    if header_length is not None and not 0 < header_length <= len(body):
        raise InvalidRequest(
            f"Inference-Header-Content-Length {header_length} does not fit a {len(body)}-byte body"
        )
    header, binary = (
        (body, memoryview(b"")) if header_length is None else _split(body, header_length)
    )
    # a large JSON body through Arrow's parser, which releases the GIL (app.codecs.jsonarrow)
    large = header_length is None and len(header) >= jsonarrow.MIN_BYTES
    arrow = jsonarrow.read_v2(header) if large else None
    request = _json(header) if arrow is None else arrow
    if not isinstance(request, dict) or not isinstance(request.get("inputs"), list):
        raise InvalidRequest("the inference request needs an 'inputs' list")
    inputs = request["inputs"]
    expected = card.inputs[0].name
    if card.modalities is not None and inputs and isinstance(inputs[0], dict):
        return _multiomics(request, inputs, binary, card, max_samples)
    if len(inputs) != 1 or not isinstance(inputs[0], dict) or inputs[0].get("name") != expected:
        names = [i.get("name") if isinstance(i, dict) else i for i in inputs]
        raise InvalidRequest(f"this model takes one input named {expected!r}, got {names}")
    # JSON data whose every '"', 'u' and 'a' the rest of the request accounts for holds only
    # numbers (see app.codecs.payloads.marks_match): one float32 conversion, no type inference
    plain = arrow is not None or (
        header_length is None and _only_numbers(header, request, inputs[0])
    )
    x = _tensor(inputs[0], binary, n_genes, plain)
    check_count(x.shape[0], max_samples)
    outputs, binary_out = _outputs(request, card)
    request_id = request.get("id")
    return InferRequest(
        None if request_id is None else str(request_id),
        _finite(x),
        outputs,
        binary_out,
        _declared_scale(request),
    )


def _multiomics(
    request: dict[str, Any],
    inputs: list[Any],
    binary: memoryview,
    card: ModelCard,
    max_samples: int,
) -> InferRequest:
    """`expression` first, then any of the model's modalities (`app.codecs.multiomics`); binary
    tensors follow the header in the order the inputs list them."""
    if inputs[0].get("name") != card.inputs[0].name:
        raise InvalidRequest(f"the first input must be {card.inputs[0].name!r}")
    offset = 0

    def tensor(spec: dict[str, Any], width: int) -> Array:
        nonlocal offset
        size = (spec.get("parameters") or {}).get("binary_data_size")
        if not isinstance(size, int):
            return _tensor(spec, memoryview(b""), width)
        chunk = binary[offset : offset + size]
        offset += size
        return _tensor(spec, chunk, width)

    x = _finite(tensor(inputs[0], card.n_genes))
    check_count(x.shape[0], max_samples)
    extra = v2_modalities(inputs[1:], tensor, card, x.shape[0], max_samples)
    if offset != len(binary):
        raise InvalidRequest(f"{len(binary) - offset} bytes after the binary inputs")
    outputs, binary_out = _outputs(request, card)
    request_id = request.get("id")
    return InferRequest(
        None if request_id is None else str(request_id),
        x,
        outputs,
        binary_out,
        _declared_scale(request),
        extra,
    )


def _declared_scale(request: dict[str, Any]) -> InputScale | None:
    declared = (request.get("parameters") or {}).get("input_scale")
    if declared is None:
        return None
    try:
        return InputScale(declared)
    except ValueError:
        choices = [s.value for s in InputScale]
        raise InvalidRequest(f"parameters.input_scale {declared!r}: one of {choices}") from None


def _split(body: bytes, header_length: int) -> tuple[bytes, memoryview]:
    # a view, not a slice: slicing bytes would copy the (up to hundreds of MB) tensor data
    return body[:header_length], memoryview(body)[header_length:]


def _json(header: bytes) -> Any:
    try:
        return orjson.loads(header)
    except orjson.JSONDecodeError:
        pass
    try:
        return pydantic_core.from_json(header)  # NaN/Infinity read, then named as bad rows
    except ValueError as exc:
        raise InvalidRequest(f"the inference request is not valid JSON: {exc}") from exc


def _only_numbers(body: bytes, request: Any, spec: dict[str, Any]) -> bool:
    """True when the data of `spec` can hold nothing but numbers (and nested lists)."""
    if not isinstance(spec.get("data"), list):
        return False
    strings: list[str] = []
    literals: list[object] = []

    def walk(item: Any) -> None:
        if isinstance(item, dict):
            for key, value in item.items():
                strings.append(key)
                if not (item is spec and key == "data"):
                    walk(value)
        elif isinstance(item, list):
            for value in item:
                walk(value)
        elif isinstance(item, str):
            strings.append(item)
        elif item is None or isinstance(item, bool):
            literals.append(item)

    walk(request)
    return marks_match(body, strings, literals)


def _tensor(spec: dict[str, Any], binary: memoryview, n_genes: int, plain: bool = False) -> Array:
    datatype, shape = spec.get("datatype"), spec.get("shape")
    if datatype not in DTYPES:
        raise InvalidRequest(f"input datatype {datatype!r}; supported: {sorted(DTYPES)}")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise InvalidRequest(f"input shape must be a list of sizes, got {shape!r}")
    if len(shape) == 1:
        shape = [1, *shape]
    if len(shape) != 2 or shape[1] != n_genes:
        raise InvalidRequest(f"input shape {spec['shape']}: this model takes [-1, {n_genes}]")
    if shape[0] == 0:
        raise InvalidRequest(f"input shape {spec['shape']} holds no sample; send at least one")
    params = spec.get("parameters") or {}
    if "binary_data_size" in params:
        size = params["binary_data_size"]
        if not isinstance(size, int) or size != len(binary):
            raise InvalidRequest(
                f"binary_data_size {size!r} but {len(binary)} bytes follow the JSON header"
            )
        return _frombuffer(binary, DTYPES[datatype], shape, "the binary input")
    if "data" not in spec:
        raise InvalidRequest("the input has neither 'data' nor parameters.binary_data_size")
    if plain:
        try:
            with np.errstate(over="ignore"):  # beyond float32: inf, refused by name in _finite
                data = np.asarray(spec["data"], dtype=np.float32)
        except (ValueError, TypeError):  # ragged: inferred below, and refused with a reason
            plain = False
    if not plain:
        data = np.array(spec["data"])
    if data.dtype.kind not in "fiu":
        raise InvalidRequest(f"input data must be numbers only (got {data.dtype} elements)")
    if data.size != shape[0] * shape[1]:
        raise InvalidRequest(f"input has {data.size} values, shape {spec['shape']} needs more")
    with np.errstate(over="ignore"):
        return np.ascontiguousarray(data.reshape(shape), dtype=np.float32)


def _frombuffer(
    raw: bytes | memoryview, dtype: np.dtype[Any], shape: list[int], what: str
) -> Array:
    if len(raw) != shape[0] * shape[1] * dtype.itemsize:
        raise InvalidRequest(
            f"{what} has {len(raw)} bytes; shape {shape} of {dtype} needs "
            f"{shape[0] * shape[1] * dtype.itemsize}"
        )
    array = np.frombuffer(raw, dtype=dtype).reshape(shape)
    with np.errstate(over="ignore"):  # FP64 beyond float32: inf, refused by name in _finite
        return array if dtype == np.float32 else array.astype(np.float32)


def _finite(x: Array) -> Array:
    if np.isfinite(x).all():  # the common case: one pass, no second mask
        return x
    bad = ~np.isfinite(x)
    rows = np.flatnonzero(bad.any(axis=1)).tolist()
    cols = np.flatnonzero(bad.any(axis=0)).tolist()
    raise InvalidExpressionData(
        f"NaN or infinite values in rows {rows[:50]} (columns {cols[:50]})",
        samples=[str(r) for r in rows[:50]],
    )


def _outputs(request: dict[str, Any], card: ModelCard) -> tuple[list[str], dict[str, bool]]:
    known = [o.name for o in card.outputs]
    default_binary = bool((request.get("parameters") or {}).get("binary_data_output", False))
    asked = request.get("outputs")
    if not asked:
        return known, dict.fromkeys(known, default_binary)
    names, binary = [], {}
    for out in asked:
        name = out.get("name") if isinstance(out, dict) else None
        if name not in known:
            raise InvalidRequest(f"unknown output {name!r}; this model has {known}")
        params = out.get("parameters") or {}
        if "classification" in params:
            raise InvalidRequest(
                "the classification extension is not supported; ask for 'probabilities'"
            )
        names.append(name)
        binary[name] = bool(params.get("binary_data", default_binary))
    return names, binary


def encode(
    *, card: ModelCard, request: InferRequest, outputs: dict[str, npt.NDArray[np.float32]]
) -> tuple[bytes, int | None]:
    """The response body, and the JSON header's length when binary outputs follow it."""
    described, chunks = [], []
    for name in request.outputs:
        value = np.ascontiguousarray(outputs[name], dtype="<f4")
        entry: dict[str, Any] = {"name": name, "datatype": "FP32", "shape": list(value.shape)}
        if request.binary.get(name):
            raw = value.tobytes()
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = value.reshape(-1)
        described.append(entry)
    header: dict[str, Any] = {
        "model_name": card.name,
        "model_version": str(card.version),
        "outputs": described,
    }
    if request.id is not None:
        header["id"] = request.id
    head = orjson.dumps(header, option=orjson.OPT_SERIALIZE_NUMPY)
    if not chunks:
        return head, None
    return head + b"".join(chunks), len(head)
