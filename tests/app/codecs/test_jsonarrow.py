"""Large JSON bodies through Arrow's parser (`app.codecs.jsonarrow`): exactly what orjson's fast
path gives for every body it takes; every other body declined, for the other paths to name."""

from __future__ import annotations

import json

import numpy as np
import orjson
import pytest

from app.codecs import jsonarrow, payloads
from app.codecs.payloads import decode_json
from app.errors import InvalidExpressionData, PayloadTooLarge

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
    return ("{" + ", ".join(f'"{k}": {v}' for k, v in parts.items()) + "}").encode()


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
    monkeypatch.setattr(
        jsonarrow,
        "read",
        lambda *a, **k: taken.append(True) or real(*a, **k),  # type: ignore[func-returns-value]
    )
    got = decode_json(good, max_samples=n)
    assert taken == [True]
    assert np.array_equal(got.values, x)
    with pytest.raises(PayloadTooLarge):
        decode_json(good, max_samples=n - 1)
    # one text cell deep in the body: Arrow declines, the strict path names sample and gene
    last = good.rindex(b",")
    bad = good[:last] + b',"7"' + good[good.index(b"]", last) :]
    with pytest.raises(InvalidExpressionData) as err:
        decode_json(bad, max_samples=n)
    assert err.value.extra["samples"] == [f"s{n - 1}"]
    assert err.value.extra["genes"] == [genes[-1]]
