"""The fast decoders (orjson + one numpy conversion; pyarrow typed float32) accept exactly what
the strict ones accept, and every body they do not vouch for is named by the strict path."""

from __future__ import annotations

import json

import numpy as np
import pytest

from app.codecs import payloads, tables, v2
from app.codecs.payloads import decode_json, marks_match
from app.errors import InvalidExpressionData, InvalidRequest
from contract.card import ModelCard

GENES = ["CD3E", "CD14", "MS4A1"]


def matrix(values: str, genes: list[str] = GENES, ids: str = '["S1", "S2"]') -> bytes:
    return f'{{"genes": {json.dumps(genes)}, "sample_ids": {ids}, "values": {values}}}'.encode()


def test_a_clean_matrix_takes_the_fast_path_and_matches_the_strict_one() -> None:
    body = matrix("[[1, 2.5, 0], [3e2, -0.0, 7]]")
    fast = payloads._fast_json(body, 10)
    assert fast is not None
    assert fast.values.dtype == np.float32
    assert fast.values.tolist() == [[1, 2.5, 0], [300, 0, 7]]
    strict = payloads.decode_matrix(payloads.MatrixIn.model_validate_json(body), max_samples=10)
    assert (fast.sample_ids, fast.genes) == (strict.sample_ids, strict.genes)
    assert np.array_equal(fast.values, strict.values)
    records = {"genes": GENES, "samples": [{"id": "a", "values": [1, 2, 3]}]}
    got = payloads._fast_json(json.dumps(records).encode(), 10)
    assert got is not None
    assert got.sample_ids == ["a"]


@pytest.mark.parametrize(
    ("cells", "bad"),
    [
        ('[[1, "2", 3], [4, 5, 6]]', ("S1", "CD14")),  # a number as text
        ("[[1, 2, 3], [4, true, 6]]", ("S2", "CD14")),
        ("[[1, 2, false], [4, 5, 6]]", ("S1", "MS4A1")),
        ('[[1, 2, 3], [4, 5, "x"]]', ("S2", "MS4A1")),
    ],
)
def test_a_cell_that_is_not_a_number_is_named(cells: str, bad: tuple[str, str]) -> None:
    assert payloads._fast_json(matrix(cells), 10) is None
    with pytest.raises(InvalidExpressionData) as err:
        decode_json(matrix(cells), max_samples=10)
    assert (err.value.extra["samples"], err.value.extra["genes"]) == ([bad[0]], [bad[1]])


def test_null_nan_ragged_and_records_errors_are_named() -> None:
    with pytest.raises(InvalidExpressionData, match="null") as err:
        decode_json(matrix("[[1, null, 3], [4, 5, 6]]"), max_samples=10)
    assert err.value.extra["samples"] == ["S1"]
    with pytest.raises(InvalidExpressionData, match="NaN") as err:
        decode_json(matrix("[[1, NaN, 3], [4, 5, Infinity]]"), max_samples=10)
    assert err.value.extra["samples"] == ["S1", "S2"]
    with pytest.raises(InvalidExpressionData, match="one value per gene") as err:
        decode_json(matrix("[[1, 2], [4, 5, 6]]"), max_samples=10)
    assert err.value.extra["samples"] == ["S1"]
    body = {"genes": GENES, "samples": [{"id": "a", "values": [1, 2, 3], "extra": 1}]}
    with pytest.raises(InvalidRequest):
        decode_json(json.dumps(body).encode(), max_samples=10)


def test_names_with_quotes_escapes_and_letters_still_decode() -> None:
    genes = ['a"quoted"', "ümlaut", "naïve\\u"]
    body = matrix("[[1, 2, 3], [4, 5, 6]]", genes=genes, ids='["S\\"1", "S\\u0032"]')
    got = decode_json(body, max_samples=10)
    assert (got.genes, got.sample_ids) == (genes, ['S"1', "S2"])
    assert got.values.tolist() == [[1, 2, 3], [4, 5, 6]]


def test_marks_count_strings_and_literals() -> None:
    assert marks_match(b'{"a": [1, 2]}', ["a"])
    assert not marks_match(b'{"a": [1, "2"]}', ["a"])
    assert not marks_match(b'{"a": true, "b": [null, 1]}', ["a", "b"], [True])
    assert marks_match(b'{"a": true, "b": [1]}', ["a", "b"], [True])
    assert not marks_match(b'{"a": false, "b": [false]}', ["a", "b"], [False])


def test_v2_json_data_checked_by_counting(tmp_path: object) -> None:
    from pathlib import Path

    from tests.factories import write_model

    folder = write_model(root=Path(str(tmp_path)), name="m", genes=GENES, latent=2)
    card = ModelCard.read(folder)

    def body(data: str, extra: str = "") -> bytes:
        return (
            '{"id": "req-1", "parameters": {"binary_data_output": false}, "inputs": [{"name": '
            f'"expression", "shape": [2, 3], "datatype": "FP32", "data": {data}}}]{extra}}}'
        ).encode()

    ok = v2.parse(body("[1, 2, 3, 4, 5, 6]"), None, card, 10)
    assert ok.x.tolist() == [[1, 2, 3], [4, 5, 6]]
    assert ok.id == "req-1"
    assert v2.parse(body("[[1, 2, 3], [4, 5, 6]]"), None, card, 10).x.shape == (2, 3)
    with pytest.raises(InvalidRequest, match="numbers only"):
        v2.parse(body('[1, 2, 3, 4, 5, "6"]'), None, card, 10)
    with pytest.raises(InvalidRequest, match="numbers only"):
        v2.parse(body("[true, false, true, true, false, true]"), None, card, 10)
    with pytest.raises(InvalidExpressionData):
        v2.parse(body("[1, 2, 3, 4, 5, NaN]"), None, card, 10)


def test_csv_typed_path_and_its_fallback() -> None:
    ok = b"id,CD3E,CD14,MS4A1\n007,1,2.5,3\nS2,4,5,6e1\n"
    fast = tables._typed(ok, ",", ["id", "CD3E", "CD14", "MS4A1"], 10)
    assert fast is not None
    assert fast.sample_ids == ["007", "S2"]
    assert fast.values.tolist() == [[1, 2.5, 3], [4, 5, 60]]
    for bad, sample in ((b"S1,1,x,3\n", "S1"), (b"S1,1,,3\n", "S1")):
        body = b"id,CD3E,CD14,MS4A1\nS0,1,2,3\n" + bad
        assert tables._typed(body, ",", ["id", "CD3E", "CD14", "MS4A1"], 10) is None
        with pytest.raises(InvalidExpressionData) as err:
            tables.decode_delimited(body, delimiter=",", max_samples=10)
        assert (err.value.extra["samples"], err.value.extra["genes"]) == ([sample], ["CD14"])
    with pytest.raises(InvalidExpressionData, match="NaN or infinite"):
        tables.decode_delimited(b"id,A,B\nS1,1,inf\n", delimiter=",", max_samples=10)
    with pytest.raises(InvalidExpressionData, match="duplicate"):
        tables.decode_delimited(b"id,A,B\nS1,1,2\nS1,3,4\n", delimiter=",", max_samples=10)
    assert tables.block_size(57 << 20, 20_001) >= 28 << 20
    assert tables.block_size(17 << 20, 766) <= 9 << 20


def test_csv_null_cells_anywhere_in_a_many_block_table_are_named() -> None:
    genes = [f"G{j}" for j in range(50)]
    rows = [",".join([f"S{i}", *(str(i + j) for j in range(50))]) for i in range(12_000)]
    rows[11_900] = rows[11_900].replace(",11949", ",NA")  # a late block's cell, read as null
    body = ("id," + ",".join(genes) + "\n" + "\n".join(rows) + "\n").encode()
    assert len(body) > 2 * tables.block_size(1, 51)  # more than one block wherever 2+ cores
    assert tables._typed(body, ",", ["id", *genes], 20_000) is None
    with pytest.raises(InvalidExpressionData) as err:
        tables.decode_delimited(body, delimiter=",", max_samples=20_000)
    assert (err.value.extra["samples"], err.value.extra["genes"]) == (["S11900"], ["G49"])
    # an empty cell and a duplicate id: the duplicate is named first, as before
    body = b"id,A,B\nS1,1,\nS1,3,4\n"
    with pytest.raises(InvalidExpressionData, match="duplicate"):
        tables.decode_delimited(body, delimiter=",", max_samples=10)


def test_csv_header_without_a_newline_or_rows_is_refused() -> None:
    for body in (b"id,A,B\n", b"id,A,B\r\n"):
        with pytest.raises(InvalidExpressionData, match="at least one of each"):
            tables.decode_delimited(body, delimiter=",", max_samples=10)
    with pytest.raises(InvalidRequest, match="not readable CSV"):  # pyarrow: no row at all
        tables.decode_delimited(b"id,A,B", delimiter=",", max_samples=10)


@pytest.mark.parametrize(
    "genes",
    [["A", ""], ["A", "x" * 129], ["A", 3], ["A", None], ["A", ["B"]]],
)
def test_gene_names_the_fast_path_does_not_vouch_for_go_to_the_strict_one(
    genes: list[object],
) -> None:
    body = json.dumps({"genes": genes, "sample_ids": ["S1"], "values": [[1, 2]]}).encode()
    assert payloads._fast_json(body, 10) is None
    with pytest.raises((InvalidRequest, InvalidExpressionData)):
        decode_json(body, max_samples=10)
    assert payloads._names([], 128)
    assert payloads._names(["a", "x" * 128], 128)
    assert not payloads._names("AB", 128)
    assert not payloads._names(None, 128)
