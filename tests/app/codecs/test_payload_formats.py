"""/v1 classify/embed in every payload format, answers by Accept, and each decoder's refusals."""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from tests.factories import GENES, LABELS, make_settings

PROBLEM = "application/problem+json"
URL = "/v1/models/toy-classifier/classify"
# the toy models take log-scale input: non-negative, fractional, small
X = np.abs(np.random.default_rng(3).normal(size=(3, 10))).astype(np.float32)
IDS = ["007", "S1", "S2"]


@pytest.fixture
def c(sqlite_url: str, models_dir: Path) -> Iterator[TestClient]:
    # formats do not depend on the database: the embedded default is enough here
    with TestClient(create_app(make_settings(sqlite_url, models_dir))) as client:
        yield client


@pytest.fixture
def expected(c: TestClient) -> list[str]:
    body = {
        "genes": GENES,
        "samples": [{"id": i, "values": r.tolist()} for i, r in zip(IDS, X, strict=True)],
    }
    r = c.post(URL, json=body)
    assert r.status_code == 200, r.text
    return [p["label"] for p in r.json()["predictions"]]


def _labels(r: object) -> list[tuple[str, str]]:
    out = r.json()  # type: ignore[attr-defined]
    return [(p["id"], p["label"]) for p in out["predictions"]]


def _table() -> pa.Table:
    return pa.table({"sample_id": IDS, **{g: X[:, j] for j, g in enumerate(GENES)}})


def _csv(delimiter: str) -> bytes:
    sink = io.BytesIO()
    pacsv.write_csv(_table(), sink, pacsv.WriteOptions(delimiter=delimiter))
    return sink.getvalue()


def _arrow(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def _parquet(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def _npz(**arrays: np.ndarray) -> bytes:
    sink = io.BytesIO()
    np.savez(sink, **arrays)
    return sink.getvalue()


def _npy(array: np.ndarray) -> bytes:
    sink = io.BytesIO()
    np.save(sink, array, allow_pickle=False)
    return sink.getvalue()


def _object_npy() -> bytes:
    """An npy header declaring Python objects (would need unpickling), followed by junk."""
    sink = io.BytesIO()
    header = {"descr": "|O", "fortran_order": False, "shape": (1, 10)}
    np.lib.format.write_array_header_1_0(sink, header)
    return sink.getvalue() + b"\x80\x04junk"


def test_every_format_gives_the_same_answer(c: TestClient, expected: list[str]) -> None:
    matrix = {"genes": GENES, "sample_ids": IDS, "values": X.tolist()}
    bodies = {
        "application/json": orjson.dumps(matrix),
        "text/csv": _csv(","),
        "text/tab-separated-values": _csv("\t"),
        "application/vnd.apache.arrow.stream": _arrow(_table()),
        "application/vnd.apache.parquet": _parquet(_table()),
        "application/x-npz": _npz(values=X, genes=np.array(GENES), sample_ids=np.array(IDS)),
    }
    for kind, body in bodies.items():
        r = c.post(URL, content=body, headers={"content-type": kind})
        assert r.status_code == 200, (kind, r.text)
        assert _labels(r) == list(zip(IDS, expected, strict=True)), kind
    r = c.post(
        URL,
        content=_npy(X),
        headers={"content-type": "application/x-npy", "x-sample-ids": ",".join(IDS)},
    )
    assert _labels(r) == list(zip(IDS, expected, strict=True))
    r = c.post(
        URL,
        content=gzip.compress(_csv(",")),
        headers={"content-type": "text/csv", "content-encoding": "gzip"},
    )
    assert _labels(r) == list(zip(IDS, expected, strict=True))


def test_answers_follow_accept(c: TestClient, expected: list[str]) -> None:
    body = {"genes": GENES, "sample_ids": IDS, "values": X.tolist()}
    r = c.post(URL, json=body, headers={"accept": "text/csv"})
    assert r.headers["content-type"].startswith("text/csv")
    table = pacsv.read_csv(io.BytesIO(r.content))
    assert table.column("label").to_pylist() == expected
    assert table.column_names == ["sample_id", "label", *(f"p_{label}" for label in LABELS)]
    assert r.headers["x-gene-overlap"] == "10/10"
    r = c.post(URL, json=body, headers={"accept": "application/vnd.apache.arrow.stream"})
    assert pa.ipc.open_stream(r.content).read_all().column("label").to_pylist() == expected
    r = c.post(URL, json=body, headers={"accept": "application/vnd.apache.parquet"})
    assert pq.read_table(pa.BufferReader(r.content)).column("sample_id").to_pylist() == IDS
    r = c.post(
        "/v1/models/toy-encoder/embed", json=body, headers={"accept": "text/tab-separated-values"}
    )
    assert r.text.splitlines()[0].replace('"', "").split("\t") == [
        "sample_id",
        "e0",
        "e1",
        "e2",
        "e3",
    ]
    r = c.post(URL, json=body, headers={"accept": "image/png"})
    assert r.status_code == 406
    assert r.headers["content-type"] == PROBLEM


def _refused(c: TestClient, body: bytes, kind: str, **headers: str) -> dict[str, object]:
    r = c.post(URL, content=body, headers={"content-type": kind, **headers})
    assert r.status_code == 422, (kind, r.text)
    assert r.headers["content-type"] == PROBLEM
    problem: dict[str, object] = r.json()
    return problem


def test_bad_cells_are_named_in_every_format(c: TestClient) -> None:
    csv = _csv(",").decode().splitlines()
    csv[2] = csv[2].replace(csv[2].split(",")[3], "high", 1)  # sample S1, gene G2
    csv[3] = csv[3].rsplit(",", 1)[0] + ","  # sample S2, gene G9 left empty
    problem = _refused(c, "\n".join(csv).encode(), "text/csv")
    assert problem["samples"] == ["S1", "S2"]
    assert problem["genes"] == ["G2", "G9"]

    table = _table().set_column(2, "G1", pa.array(["1", "x", "2"]))
    problem = _refused(c, _arrow(table), "application/vnd.apache.arrow.stream")
    assert (problem["samples"], problem["genes"]) == (["S1"], ["G1"])

    bad = X.copy()
    bad[2, 4] = np.nan
    table = pa.table({"sample_id": IDS, **{g: bad[:, j] for j, g in enumerate(GENES)}})
    problem = _refused(c, _parquet(table), "application/vnd.apache.parquet")
    assert (problem["samples"], problem["genes"]) == (["S2"], ["G4"])

    matrix = {"genes": GENES, "sample_ids": IDS, "values": X.tolist()}
    matrix["values"][1][5] = "7"  # type: ignore[index]
    problem = _refused(c, orjson.dumps(matrix), "application/json")
    assert (problem["samples"], problem["genes"]) == (["S1"], ["G5"])
    matrix["values"] = X.tolist()[:2]
    problem = _refused(c, orjson.dumps(matrix), "application/json")
    assert "3 sample ids but 2 rows" in str(problem["detail"])


def test_binary_bodies_are_checked_and_never_unpickled(c: TestClient) -> None:
    problem = _refused(c, _npy(X[:, :9]), "application/x-npy")
    assert "panel has 10 genes" in str(problem["detail"])
    problem = _refused(c, _object_npy(), "application/x-npy")
    assert "not a readable npy" in str(problem["detail"])  # allow_pickle=False refuses objects
    problem = _refused(c, _npy(X), "application/x-npy", **{"x-sample-ids": "a,b"})
    assert "names 2 samples" in str(problem["detail"])
    problem = _refused(c, _npz(values=X), "application/x-npz")
    assert "lacks ['genes']" in str(problem["detail"])
    problem = _refused(c, b"not arrow", "application/vnd.apache.arrow.stream")
    assert "Arrow" in str(problem["detail"])
    problem = _refused(c, b"PAR1junk", "application/vnd.apache.parquet")
    assert "Parquet" in str(problem["detail"])
    dup = pa.table({"sample_id": ["a", "a"], "G0": [1.0, 2.0]})
    assert _refused(c, _arrow(dup), "application/vnd.apache.arrow.stream")["samples"] == ["a"]


def test_unknown_types_encodings_and_broken_gzip(c: TestClient) -> None:
    r = c.post(URL, content=b"x", headers={"content-type": "application/xml"})
    assert r.status_code == 415
    assert r.headers["content-type"] == PROBLEM
    r = c.post(URL, content=b"x", headers={"content-type": "text/csv", "content-encoding": "br"})
    assert r.status_code == 415
    _refused(c, b"not gzip", "text/csv", **{"content-encoding": "gzip"})


def test_a_gzip_bomb_is_413(sqlite_url: str, models_dir: Path) -> None:
    settings = make_settings(sqlite_url, models_dir, max_body_bytes=4096)
    bomb = gzip.compress(b"0" * 1_000_000)
    assert len(bomb) < 4096
    with TestClient(create_app(settings)) as client:
        r = client.post(
            URL, content=bomb, headers={"content-type": "text/csv", "content-encoding": "gzip"}
        )
    assert r.status_code == 413
    assert r.headers["content-type"] == PROBLEM


def test_more_malformed_bodies_are_named(c: TestClient) -> None:
    npz = _npz(values=X, genes=np.array(GENES[:9]))
    assert "names 9 genes" in str(_refused(c, npz, "application/x-npz")["detail"])
    npz = _npz(values=X, genes=np.array(GENES), sample_ids=np.array(["a"]))
    assert "names 1 samples" in str(_refused(c, npz, "application/x-npz")["detail"])
    assert "readable npz" in str(_refused(c, b"PK junk", "application/x-npz")["detail"])
    assert "matrix" in str(_refused(c, _npy(X[0]), "application/x-npy")["detail"])
    words = _npy(np.array([["a"] * 10]))
    assert "numbers" in str(_refused(c, words, "application/x-npy")["detail"])
    no_id = pa.table({"sample_id": ["a", None], "G0": [1.0, 2.0]})
    problem = _refused(c, _arrow(no_id), "application/vnd.apache.arrow.stream")
    assert problem["samples"] == ["row 2"]
    assert "gene column" in str(_refused(c, b"id\na\nb\n", "text/csv")["detail"])
    assert "readable CSV" in str(_refused(c, b'id,G0\n"a,1\n', "text/csv")["detail"])
    only_ids = pa.table({"sample_id": ["a"]})
    problem = _refused(c, _parquet(only_ids), "application/vnd.apache.parquet")
    assert "no gene columns" in str(problem["detail"])
    numbered = pa.table({g: X[:, j] for j, g in enumerate(GENES)})  # no id column: 0, 1, 2
    r = c.post(
        URL,
        content=_arrow(numbered),
        headers={"content-type": "application/vnd.apache.arrow.stream"},
    )
    assert [p["id"] for p in r.json()["predictions"]] == ["0", "1", "2"]


def test_openapi_documents_every_request_format(c: TestClient) -> None:
    post = c.get("/openapi.json").json()["paths"]["/v1/models/{name}/classify"]["post"]
    assert set(post["requestBody"]["content"]) == {
        "application/json",
        "text/csv",
        "text/tab-separated-values",
        "application/vnd.apache.arrow.stream",
        "application/vnd.apache.parquet",
        "application/x-npy",
        "application/x-npz",
    }
    assert {"406", "413", "415", "422"} <= set(post["responses"])
