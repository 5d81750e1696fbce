"""Issue 13: a NUL character is refused at the edge (422 naming the field), never a 500 that
fails other clients' writes; bad query parameters are named; offsets are bounded; `limit=N`
answers at most N rows."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from tests.app.conftest import Labs
from tests.factories import GENES

PROBLEM = "application/problem+json"


def _values(n: int, seed: int = 0) -> list[list[float]]:
    return np.abs(np.random.default_rng(seed).normal(size=(n, len(GENES)))).round(4).tolist()


def _records(ids: list[str]) -> dict[str, Any]:
    rows = _values(len(ids))
    return {
        "genes": GENES,
        "samples": [{"id": i, "values": v} for i, v in zip(ids, rows, strict=False)],
    }


def _problem(r: Any, status: int = 422) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    body: dict[str, Any] = r.json()
    return body


@pytest.mark.parametrize(
    "url",
    [
        "/v1/datasets?name=a%00b",
        "/v1/finetune-jobs?status=queued%00",
        "/v1/predictions?sample_id=S%001",
        "/v1/predictions?model=x&request_id=r%00",
        "/v1/models?x%00=1",
    ],
)
def test_nul_in_a_query_parameter_is_a_422_naming_it(client: TestClient, url: str) -> None:
    problem = _problem(client.get(url))
    assert "NUL" in problem["detail"]
    name = url.split("?")[1].split("&")[-1].split("=")[0].replace("%00", "\\x00")
    assert problem["parameters"] == [name]


def test_nul_in_the_path_is_a_422(client: TestClient) -> None:
    problem = _problem(client.get("/v1/models/toy%00classifier"))
    assert problem["parameters"] == ["path"]


def test_nul_in_a_json_sample_id_is_a_422_naming_it_and_others_are_recorded(
    client: TestClient,
) -> None:
    body = _records(["S1", "bad\x00id"])
    problem = _problem(client.post("/v1/models/toy-classifier/classify", json=body))
    assert "NUL" in problem["detail"]
    assert "samples.1.id" in problem["detail"]
    # the matrix form, and a gene name
    matrix = {"genes": GENES, "sample_ids": ["a\x00"], "values": _values(1)}
    assert (
        "sample_ids" in _problem(client.post("/v1/models/toy-encoder/embed", json=matrix))["detail"]
    )
    genes = {"genes": ["G0\x00", *GENES[1:]], "sample_ids": ["a"], "values": _values(1)}
    assert "genes.0" in _problem(client.post("/v1/models/toy-encoder/embed", json=genes))["detail"]
    # a good request right after is answered and recorded
    ok = client.post("/v1/models/toy-classifier/classify", json=_records(["S1", "S2"]))
    assert ok.status_code == 200, ok.text


def test_nul_in_a_csv_sample_id_is_a_422(client: TestClient) -> None:
    table = pd.DataFrame(_values(2), columns=GENES, index=["S1", "S\x002"])
    r = client.post(
        "/v1/models/toy-classifier/classify",
        content=table.to_csv(index_label="sample").encode(),
        headers={"Content-Type": "text/csv"},
    )
    assert "NUL" in _problem(r)["detail"]


def test_nul_in_body_fields_of_jobs_and_keys_is_a_422_naming_the_field(labs: Labs) -> None:
    dataset = labs.upload(labs.a)
    body = {
        "encoder": {"name": "toy-encoder"},
        "dataset_id": dataset,
        "label_column": "y",
        "output_name": "lab-a-model",
        "description": "nul\x00here",
    }
    problem = _problem(labs.client.post("/v1/finetune-jobs", json=body, headers=labs.a))
    assert "body field 'description'" in problem["detail"]
    assert "NUL" in problem["detail"]
    r = labs.client.post("/v1/keys", json={"name": "a\x00b"}, headers=labs.admin)
    assert "body field 'name'" in _problem(r)["detail"]


def test_nul_in_a_dataset_upload_is_a_422_naming_where(labs: Labs) -> None:
    table = pd.DataFrame(_values(4), columns=GENES, index=[f"S{i}" for i in range(4)])
    table["y"] = ["a", "b", "a\x00", "b"]
    files = {"file": ("t.csv", table.to_csv(index_label="sample").encode())}
    r = labs.client.post("/v1/datasets", files=files, headers=labs.a)
    problem = _problem(r)
    assert "label column 'y'" in problem["detail"]
    assert "NUL" in problem["detail"]
    table = table.drop(columns="y").rename(index={"S1": "S\x001"})
    files = {"file": ("t.csv", table.to_csv(index_label="sample").encode())}
    assert (
        "sample ids"
        in _problem(labs.client.post("/v1/datasets", files=files, headers=labs.a))["detail"]
    )
    files = {"file": ("t.csv", table.to_csv(index_label="sample").encode())}
    r = labs.client.post("/v1/datasets", files=files, data={"name": "x\x00"}, headers=labs.a)
    assert "body field 'name'" in _problem(r)["detail"]


@pytest.mark.parametrize("route", ["/v1/datasets", "/v1/finetune-jobs", "/v1/predictions"])
def test_an_offset_beyond_the_bound_is_a_422_naming_offset(client: TestClient, route: str) -> None:
    problem = _problem(client.get(f"{route}?offset={2**63}"))
    assert problem["parameters"] == ["offset"]
    assert "query parameter 'offset'" in problem["detail"]
    assert client.get(f"{route}?offset={2**31}").status_code == 200


@pytest.mark.parametrize("route", ["/v1/datasets", "/v1/finetune-jobs", "/v1/predictions"])
def test_a_bad_limit_names_the_parameter_not_the_body(client: TestClient, route: str) -> None:
    for bad in ("abc", "0", "100000"):
        problem = _problem(client.get(f"{route}?limit={bad}"))
        assert problem["parameters"] == ["limit"]
        assert "query parameter 'limit'" in problem["detail"]
        assert "body" not in problem["detail"]


def test_the_openapi_shows_the_bounds(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for path in ("/v1/datasets", "/v1/finetune-jobs", "/v1/predictions", "/v1/keys", "/v1/audit"):
        params = {p["name"]: p["schema"] for p in spec["paths"][path]["get"]["parameters"]}
        assert params["offset"]["maximum"] == 2**31, path
        assert params["limit"]["minimum"] == 1, path
        assert params["limit"]["maximum"] <= 10_000, path


def test_limit_counts_entries_on_predictions(client: TestClient) -> None:
    for call in range(3):  # 3 calls of 4 samples each: 12 entries
        ids = [f"C{call}S{i}" for i in range(4)]
        r = client.post("/v1/models/toy-classifier/classify", json=_records(ids))
        assert r.status_code == 200, r.text
    every = client.get("/v1/predictions?limit=100").json()["predictions"]
    assert len(every) == 12
    order = [p["sample_id"] for p in every]
    for limit, offset in ((1, 0), (5, 0), (5, 3), (4, 4), (7, 10), (3, 12)):
        page = client.get(f"/v1/predictions?limit={limit}&offset={offset}").json()["predictions"]
        assert [p["sample_id"] for p in page] == order[offset : offset + limit]
    one = client.get("/v1/predictions?sample_id=C1S2&limit=1").json()["predictions"]
    assert [p["sample_id"] for p in one] == ["C1S2"]
    assert client.get("/v1/predictions?sample_id=C1S2&offset=1").json()["predictions"] == []


def test_an_unparseable_json_body_is_a_422_not_a_400(labs: Labs) -> None:
    r = labs.client.post(
        "/v1/finetune-jobs",
        content=b"{not json",
        headers={**labs.a, "Content-Type": "application/json"},
    )
    problem = _problem(r)
    assert problem["detail"].startswith("The request body is malformed")


def test_many_bad_fields_are_named_five_at_a_time(labs: Labs) -> None:
    body = {"encoder": {}, "dataset_id": "x", "label_column": "", "output_name": "A", "task": "?"}
    body |= {"description": 1, "strategy": "?"}
    problem = _problem(labs.client.post("/v1/finetune-jobs", json=body, headers=labs.a))
    assert problem["detail"].endswith("; ...")
    assert len(problem["errors"]) > 5
    assert problem["detail"].count("body field") == 5


def test_nul_in_a_gene_column_name_of_an_upload_is_a_422(labs: Labs) -> None:
    values = np.abs(np.random.default_rng(1).normal(size=(3, 3))).round(3)
    table = pd.DataFrame(values, columns=["G0", "G\x001", "G2"], index=["S0", "S1", "S2"])
    files = {"file": ("t.csv", table.to_csv(index_label="sample").encode())}
    problem = _problem(labs.client.post("/v1/datasets", files=files, headers=labs.a))
    assert "gene ids" in problem["detail"]
    assert problem["values"] == ["G\\x001"]


def test_a_version_beyond_the_databases_integer_is_a_422(client: TestClient) -> None:
    problem = _problem(client.get(f"/v1/predictions?version={2**40}"))
    assert problem["parameters"] == ["version"]
    assert client.get(f"/v1/predictions?version={2**31 - 1}").status_code == 200


def test_a_seed_beyond_32_bits_is_a_422_naming_it(labs: Labs) -> None:
    body = {
        "encoder": {"name": "toy-encoder"},
        "dataset_id": labs.upload(labs.a),
        "label_column": "y",
        "output_name": "lab-a-seed",
        "hyperparameters": {"seed": 2**40},
    }
    problem = _problem(labs.client.post("/v1/finetune-jobs", json=body, headers=labs.a))
    assert "body field 'hyperparameters.seed'" in problem["detail"]
