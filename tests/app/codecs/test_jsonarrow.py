"""Large JSON bodies through Arrow's parser (`app.codecs.jsonarrow`): exactly what orjson's fast
path gives for every body it takes; every other body declined, for the other paths to name."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from app.codecs import jsonarrow, payloads, v2
from app.codecs.payloads import decode_json
from app.errors import InvalidExpressionData, InvalidRequest, PayloadTooLarge
from contract.card import ModelCard
from tests.factories import write_model

GENES = ["CD3E", "CD14", "MS4A1"]


def read(body: bytes) -> tuple[list[str], list[str], np.ndarray] | None:
    return jsonarrow.read(body, gene_length=128, id_length=256)


def test_matrix_and_records_read_as_orjson_and_numpy_read_them() -> None:
    rng = np.random.default_rng(0)
    x = rng.lognormal(0, 3, size=(40, 30))  # float64 with 17 significant digits in the text
    x[0, :3] = [0.0, -0.0, 1e-320]  # zeros and a subnormal double
    genes = [f"G{i}" for i in range(29)] + ["\u00e9\\u00e9"]  # an escape is fine here
    ids = [f"{i:05d}" for i in range(40)]
    bodies = [
        orjson.dumps({"values": x.tolist(), "genes": genes, "sample_ids": ids}),
        orjson.dumps(
            {
                "samples": [{"values": r, "id": i} for i, r in zip(ids, x.tolist(), strict=True)],
                "genes": genes,
            }
        ),
    ]
    for body in bodies:
        got = read(body)
        assert got is not None
        fast = payloads._fast_json(body, 100) or decode_json(body, max_samples=100)
        assert (got[0], got[1]) == (fast.sample_ids, fast.genes)
        assert got[2].dtype == np.float32
        assert got[2].flags.c_contiguous
        assert np.array_equal(got[2], fast.values)
        assert np.array_equal(got[2], np.asarray(x, dtype=np.float32))


def body(values: str = "[[1, 2.5, 0], [3e2, -0.0, 7]]", **fields: str) -> bytes:
    parts = {"genes": json.dumps(GENES), "sample_ids": '["S1", "S2"]', "values": values}
    parts.update(fields)
    # latin-1 keeps a lone "\xff" a lone byte: invalid UTF-8 on purpose
    return ("{" + ", ".join(f'"{k}": {v}' for k, v in parts.items()) + "}").encode("latin-1")


@pytest.mark.parametrize(
    "declined",
    [
        body('[[1, "2", 3], [4, 5, 6]]'),  # a number as text
        body("[[1, 2, true], [4, 5, 6]]"),
        body("[[1, 2, null], [4, 5, 6]]"),
        body("[[1, 2, 3], null]"),
        body("[[1, 2, NaN], [4, 5, 6]]"),
        body("[[1, 2, 1e39], [4, 5, 6]]"),  # beyond float32
        body("[[1, 2, 3], [4, 5]]"),  # ragged
        body("[[1, 2, [3]], [4, 5, 6]]"),
        body("[[1, 2, 3]]"),  # fewer rows than ids
        body(sample_ids='["S1", null]'),
        body(sample_ids='["S1", ""]'),
        body(genes=json.dumps(["CD3E", "CD14", "X" * 129])),
        body(genes="[]", values="[[], []]", sample_ids='["S1", "S2"]'),
        body(extra="1"),
        body() + b'\n{"genes": ["A"], "sample_ids": ["S"], "values": [[1]]}',  # two objects
        b'{"genes": ["A"], "genes": ["B"], "sample_ids": ["S"], "values": [[1]]}',
        b'{"genes": ["A"], "values": [[1]]}',  # no ids
        b'{"genes": ["A"], "samples": [{"id": "S", "values": [1], "x": 2}]}',
        b'{"genes": ["A"], "samples": [null]}',
        b"[[1, 2]]",
        b"",
        b"{not json",
        b"\xef\xbb\xbf" + body(),  # a byte-order mark: orjson and pydantic refuse it
        body(sample_ids='["S1", "S\xff"]'),  # not UTF-8
        body(genes='["CD3E", "CD14", "\xc3"]'),
        body(sample_ids='["S1", "S2"]', samples="[]"),  # both forms at once
    ],
)
def test_anything_not_plainly_a_matrix_is_declined(declined: bytes) -> None:
    assert read(declined) is None


def test_large_bodies_take_arrow_and_bad_cells_are_still_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    n, genes = 400, [f"G{i}" for i in range(400)]
    x = np.random.default_rng(1).random((n, len(genes)), dtype=np.float32)
    good = orjson.dumps(
        {"genes": genes, "sample_ids": [f"s{i}" for i in range(n)], "values": x},
        option=orjson.OPT_SERIALIZE_NUMPY,
    )
    assert len(good) >= jsonarrow.MIN_BYTES
    taken: list[bool] = []
    real = jsonarrow.read

    def spy(*args: Any, **kwargs: Any) -> Any:
        taken.append(real(*args, **kwargs) is not None)
        return real(*args, **kwargs)

    monkeypatch.setattr(jsonarrow, "read", spy)
    got = decode_json(good, max_samples=n)
    assert taken == [True]  # Arrow read it, not a fallback
    assert np.array_equal(got.values, x)
    with pytest.raises(PayloadTooLarge):
        decode_json(good, max_samples=n - 1)
    # a NUL in an id: refused by name, as a small body's would be
    with pytest.raises(InvalidExpressionData, match="sample_ids"):
        decode_json(good.replace(b'"s7"', b'"s\\u0000"', 1), max_samples=n)
    # one text cell deep in the body: Arrow declines, the strict path names sample and gene
    last = good.rindex(b",")
    bad = good[:last] + b',"7"' + good[good.index(b"]", last) :]
    with pytest.raises(InvalidExpressionData) as err:
        decode_json(bad, max_samples=n)
    assert err.value.extra["samples"] == [f"s{n - 1}"]
    assert err.value.extra["genes"] == [genes[-1]]


def v2_body(data: str = "[1, 2, 3, 4]", tensor: str = "", extra: str = "") -> str:
    return (
        '{"inputs": [{"name": "expression", "shape": [2, 2], "datatype": "FP32", '
        f'"data": {data}{tensor}}}]{extra}}}'
    )


V2_BODIES = {
    "nested": v2_body("[[1, 2.5], [3e2, -0.0]]"),
    "flat, id, parameters, outputs": v2_body(
        extra=', "id": "r1", "outputs": [{"name": "probabilities"}], '
        '"parameters": {"binary_data_output": false, "input_scale": "counts"}'
    ),
}


@pytest.mark.parametrize("text", V2_BODIES.values(), ids=list(V2_BODIES))
def test_v2_requests_read_as_orjson_reads_them(text: str) -> None:
    request = jsonarrow.read_v2(text.encode())
    assert request is not None
    expected = orjson.loads(text)
    data = request["inputs"][0].pop("data")
    assert data.dtype == np.float32
    cells = np.asarray(expected["inputs"][0].pop("data"), np.float32).ravel()
    assert data.tolist() == cells.tolist()
    assert request == expected


@pytest.mark.parametrize(
    "declined",
    [
        v2_body("[[1, 2], [3]]"),  # ragged
        v2_body("[1, null, 3, 4]"),
        v2_body('[1, "2", 3, 4]'),
        v2_body("[1, NaN, 3, 4]"),
        v2_body(extra=', "outputs": [{"name": "p", "parameters": {"binary_data": true}}]'),
        v2_body(tensor=', "parameters": {"binary_data_size": 16}'),
        v2_body().replace(', "data": [1, 2, 3, 4]', ""),  # no data at all
        v2_body(extra=', "id": "r\xff"').encode("latin-1").decode("utf-8", "surrogateescape"),
        v2_body(extra=', "x": 1'),
        v2_body().replace("}]", '}, {"name": "b", "shape": [1], "datatype": "FP32", "data": [1]}]'),
        '{"inputs": []}',
    ],
)
def test_v2_requests_not_plainly_numbers_are_declined(declined: str) -> None:
    assert jsonarrow.read_v2(declined.encode("utf-8", "surrogateescape")) is None


def test_large_v2_bodies_take_arrow_and_bad_cells_are_still_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    genes = [f"G{i}" for i in range(400)]
    card = ModelCard.read(write_model(root=tmp_path, name="m", genes=genes, latent=2))
    x = np.random.default_rng(2).random((400, 400), dtype=np.float32)
    tensor = {"name": "expression", "shape": [400, 400], "datatype": "FP32", "data": x}
    good = orjson.dumps({"id": "big", "inputs": [tensor]}, option=orjson.OPT_SERIALIZE_NUMPY)
    assert len(good) >= jsonarrow.MIN_BYTES
    taken: list[bool] = []
    real = jsonarrow.read_v2

    def spy(body: bytes) -> Any:
        taken.append(real(body) is not None)
        return real(body)

    monkeypatch.setattr(jsonarrow, "read_v2", spy)
    parsed = v2.parse(good, None, card, 1000)
    assert taken == [True]  # Arrow read it, not a fallback
    assert parsed.id == "big"
    assert np.array_equal(parsed.x, x)
    with pytest.raises(PayloadTooLarge):
        v2.parse(good, None, card, 399)
    last = good.rindex(b",")
    bad = good[:last] + b',"7"' + good[good.index(b"]", last) :]
    with pytest.raises(InvalidRequest, match="numbers only"):
        v2.parse(bad, None, card, 1000)
    nan = good[:last] + b",NaN" + good[good.index(b"]", last) :]
    with pytest.raises(InvalidExpressionData) as err:
        v2.parse(nan, None, card, 1000)
    assert err.value.extra["samples"] == ["399"]
