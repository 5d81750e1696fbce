"""GET /v1/predictions: past results by sample id and model, as JSON and as CSV."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from fastapi.testclient import TestClient

from tests.factories import LABELS, TARGETS


def test_find_past_results_and_download_csv(client: TestClient) -> None:
    genes = [f"G{i}" for i in range(10)]
    body = {
        "genes": genes,
        "samples": [
            {"id": "LIMS-1", "values": [1.0] * 10},
            {"id": "LIMS-2", "values": [2.0] * 10},
        ],
    }
    first = client.post("/v1/models/toy-classifier/classify", json=body)
    assert first.status_code == 200, first.text
    assert [p["id"] for p in first.json()["predictions"]] == ["LIMS-1", "LIMS-2"]  # echoed
    body["samples"] = body["samples"][1:]
    assert client.post("/v1/models/toy-classifier/classify?version=1", json=body).status_code == 200
    assert client.post("/v1/models/toy-encoder/embed", json=body).status_code == 200

    found = client.get("/v1/predictions", params={"sample_id": "LIMS-2"}).json()["predictions"]
    assert len(found) == 3
    assert {p["sample_id"] for p in found} == {"LIMS-2"}
    by_model = client.get(
        "/v1/predictions", params={"sample_id": "LIMS-2", "model": "toy-classifier"}
    ).json()["predictions"]
    assert [p["version"] for p in by_model] == [1, 2]  # newest first
    assert by_model[1]["output"] == first.json()["predictions"][1]
    one = client.get("/v1/predictions", params={"sample_id": "LIMS-1"}).json()["predictions"]
    assert [(p["model"], p["version"]) for p in one] == [("toy-classifier", 2)]
    assert client.get("/v1/predictions", params={"sample_id": "nobody"}).json() == {
        "predictions": []
    }

    r = client.get("/v1/predictions", params={"model": "toy-classifier", "format": "csv"})
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [row["sample_id"] for row in rows] == ["LIMS-2", "LIMS-1", "LIMS-2"]
    assert {f"p_{label}" for label in LABELS} <= set(rows[0])
    assert rows[0]["label"] in LABELS
    assert client.get("/v1/predictions", params={"format": "xml"}).status_code == 422


def test_regressor_results_download_with_their_values(regressor: Path, client: TestClient) -> None:
    body = {"genes": [f"G{i}" for i in range(10)], "samples": [{"id": "L7", "values": [1.0] * 10}]}
    answer = client.post("/v1/models/toy-regressor/regress", json=body).json()
    r = client.get("/v1/predictions", params={"sample_id": "L7", "format": "csv"})
    (row,) = list(csv.DictReader(io.StringIO(r.text)))
    assert (row["task"], row["label"]) == ("regress", "")
    for target in TARGETS:
        assert float(row[f"value_{target}"]) == answer["predictions"][0]["values"][target]
