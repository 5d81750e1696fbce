"""GET /v1/predictions: past results by sample id, model, request id and time; JSON, CSV, FHIR."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.observation import Observation

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


def _classify(client: TestClient, request_id: str, *samples: str) -> dict[str, Any]:
    body = {
        "genes": [f"G{i}" for i in range(10)],
        "samples": [{"id": s, "values": [0.5 + i] * 10} for i, s in enumerate(samples)],
    }
    r = client.post(
        "/v1/models/toy-classifier/classify", json=body, headers={"X-Request-ID": request_id}
    )
    assert r.status_code == 200, r.text
    answer: dict[str, Any] = r.json()
    return answer


def test_search_by_request_id_and_time_range(client: TestClient) -> None:
    before = datetime.now(UTC)
    _classify(client, "req-a", "S1", "S2")
    between = datetime.now(UTC)
    _classify(client, "req-b", "S3")
    after = datetime.now(UTC)

    def ids(**params: str) -> list[tuple[str, str]]:
        found = client.get("/v1/predictions", params=params).json()["predictions"]
        return [(p["request_id"], p["sample_id"]) for p in found]

    assert ids(request_id="req-a") == [("req-a", "S1"), ("req-a", "S2")]
    assert ids(since=before.isoformat(), until=between.isoformat()) == ids(request_id="req-a")
    assert ids(since=between.isoformat()) == [("req-b", "S3")]
    assert ids(until=before.isoformat()) == []
    assert len(ids(since=before.isoformat(), until=after.isoformat())) == 3
    # a time without an offset is UTC
    naive = between.replace(tzinfo=None).isoformat()
    assert ids(since=naive) == [("req-b", "S3")]
    bad = client.get(
        "/v1/predictions", params={"since": after.isoformat(), "until": before.isoformat()}
    )
    assert (bad.status_code, bad.headers["content-type"]) == (422, "application/problem+json")
    assert "must be before" in bad.json()["detail"]
    nonsense = client.get("/v1/predictions", params={"since": "yesterday"})
    assert (nonsense.status_code, nonsense.headers["content-type"]) == (
        422,
        "application/problem+json",
    )


def test_predictions_export_as_a_validated_fhir_r4_bundle(
    regressor: Path, client: TestClient
) -> None:
    answer = _classify(client, "req-fhir", "LIMS-9", "LIMS-10")
    body = {
        "genes": [f"G{i}" for i in range(10)],
        "samples": [{"id": "LIMS-9", "values": [1.0] * 10}],
    }
    values = client.post("/v1/models/toy-regressor/regress", json=body).json()
    client.post("/v1/models/toy-encoder/embed", json=body)  # no outputs kept: not reported

    r = client.get("/v1/predictions", params={"format": "fhir"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/fhir+json"
    bundle = Bundle.model_validate_json(r.content)  # FHIR validation by fhir.resources
    assert bundle.type == "collection"
    resources = [e.resource for e in bundle.entry or []]
    reports = [x for x in resources if isinstance(x, DiagnosticReport)]
    observations = {e.fullUrl: e.resource for e in bundle.entry or []}
    assert len(reports) == 2  # the classify and the regress call; the embed kept nothing
    classify = next(x for x in reports if x.identifier[0].value == "req-fhir")
    assert classify.status == "final"
    assert len(classify.result) == 2
    first = observations[classify.result[0].reference]
    assert isinstance(first, Observation)
    assert first.specimen.identifier.value == "LIMS-9"
    assert first.valueCodeableConcept.text == answer["predictions"][0]["label"]
    probs = {c.code.coding[0].code: float(c.valueQuantity.value) for c in first.component}
    assert probs == pytest.approx(answer["predictions"][0]["probabilities"])
    assert set(probs) == set(LABELS)
    assert "toy-classifier/2" in first.method.text
    regress = next(x for x in reports if x is not classify)
    (obs_ref,) = regress.result
    target_values = {
        c.code.text: float(c.valueQuantity.value) for c in observations[obs_ref.reference].component
    }
    assert target_values == pytest.approx(values["predictions"][0]["values"])
    assert set(target_values) == set(TARGETS)
    # the same filters apply; nothing found is an empty Bundle
    only = client.get("/v1/predictions", params={"format": "fhir", "request_id": "req-fhir"})
    assert len(Bundle.model_validate_json(only.content).entry or []) == 3
    empty = Bundle.model_validate_json(
        client.get("/v1/predictions", params={"format": "fhir", "sample_id": "nobody"}).content
    )
    assert empty.entry is None
