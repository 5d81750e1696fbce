"""Two labs on one service: each sees and changes only its own datasets, jobs, predictions and
models, on every route (another lab's rows are a 404, as if they did not exist); an admin key
sees everything; with auth off everything belongs to the one default tenant."""

from __future__ import annotations

import csv
import io
import time
import uuid
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.repository import datasets as datasets_repo
from app.db.repository import jobs as jobs_repo
from app.db.repository.tenancy import Tenancy
from app.db.tables import Dataset, Job, ModelName, Prediction
from tests.app.conftest import Labs
from tests.factories import GENES, LABELS, write_model

PROBLEM = "application/problem+json"


def classify_body(ids: list[str]) -> dict[str, Any]:
    values = np.random.default_rng(1).gamma(2.0, 1.0, size=(len(ids), len(GENES))).round(3)
    return {
        "genes": GENES,
        "samples": [{"id": i, "values": v.tolist()} for i, v in zip(ids, values, strict=True)],
    }


def v2_body() -> dict[str, Any]:
    return {"inputs": [{"name": "expression", "shape": [1, 10], "datatype": "FP32",
                        "data": [0.5] * 10}]}  # fmt: skip


def test_datasets_are_visible_only_inside_their_tenant(labs: Labs) -> None:
    c = labs.client
    mine = labs.upload(labs.a, "lab-a cells")
    theirs = labs.upload(labs.b, "lab-b cells")
    for key, own, other in ((labs.a, mine, theirs), (labs.b, theirs, mine)):
        listed = [d["id"] for d in c.get("/v1/datasets", headers=key).json()["datasets"]]
        assert listed == [own]
        assert c.get(f"/v1/datasets/{own}", headers=key).status_code == 200
        for r in (
            c.get(f"/v1/datasets/{other}", headers=key),
            c.delete(f"/v1/datasets/{other}", headers=key),
        ):
            # not 403: whether another lab's dataset exists does not leak
            assert (r.status_code, r.headers["content-type"]) == (404, PROBLEM)
            assert f"no dataset {other}" in r.json()["detail"]
    everything = c.get("/v1/datasets", headers=labs.admin).json()["datasets"]
    assert {d["id"] for d in everything} == {mine, theirs}
    # the web app's fragments answer from the same tenancy
    assert "lab-b cells" not in c.get("/ui/parts/datasets", headers=labs.a).text
    assert "lab-a cells" in c.get("/ui/parts/datasets", headers=labs.a).text
    r = c.get("/ui/parts/label-columns", params={"dataset_id": theirs}, headers=labs.a)
    assert r.status_code == 404
    assert c.delete(f"/v1/datasets/{mine}", headers=labs.a).status_code == 204
    assert c.get(f"/v1/datasets/{mine}", headers=labs.admin).status_code == 404
    with Session(labs.engine) as s:
        assert s.scalars(select(Dataset.tenant)).all() == ["lab-b"]


def test_jobs_are_visible_and_cancellable_only_inside_their_tenant(labs: Labs) -> None:
    c = labs.client
    a_data, b_data = labs.upload(labs.a), labs.upload(labs.b)
    r = labs.job(labs.a, a_data, "lab-a-celltype")
    assert r.status_code == 202, r.text
    job = r.json()
    assert (job["status"], job["tenant"]) == ("queued", "lab-a")
    # fine-tuning on another lab's dataset: that dataset does not exist for this key
    r = labs.job(labs.b, a_data, "lab-b-celltype")
    assert (r.status_code, r.headers["content-type"]) == (404, PROBLEM)
    assert f"no dataset {a_data}" in r.json()["detail"]
    assert labs.job(labs.b, b_data, "lab-b-celltype").status_code == 202
    b_jobs = c.get("/v1/finetune-jobs", headers=labs.b).json()["jobs"]
    assert [j["params"]["output_name"] for j in b_jobs] == ["lab-b-celltype"]
    for r in (
        c.get(f"/v1/finetune-jobs/{job['id']}", headers=labs.b),
        c.post(f"/v1/finetune-jobs/{job['id']}/cancel", headers=labs.b),
        c.get(f"/ui/parts/jobs/{job['id']}", headers=labs.b),
    ):
        assert (r.status_code, r.headers["content-type"]) == (404, PROBLEM)
    assert "lab-a-celltype" not in c.get("/ui/parts/jobs", headers=labs.b).text
    assert "lab-a-celltype" in c.get("/ui/parts/jobs", headers=labs.a).text
    assert c.get(f"/v1/finetune-jobs/{job['id']}", headers=labs.a).json()["status"] == "queued"
    listed = c.get("/v1/finetune-jobs", headers=labs.admin).json()["jobs"]
    assert {j["tenant"] for j in listed} == {"lab-a", "lab-b"}
    cancelled = c.post(f"/v1/finetune-jobs/{job['id']}/cancel", headers=labs.admin)
    assert cancelled.json()["status"] == "cancelled"
    # a dataset another lab's queued job uses cannot be deleted by that lab either
    assert c.delete(f"/v1/datasets/{b_data}", headers=labs.b).status_code == 409


def test_predictions_are_found_and_exported_only_inside_their_tenant(labs: Labs) -> None:
    c = labs.client
    url = "/v1/models/toy-classifier/classify"
    assert c.post(url, json=classify_body(["S1", "S2"]), headers=labs.a).status_code == 200
    assert c.post(url, json=classify_body(["S2"]), headers=labs.b).status_code == 200
    for key, expected in ((labs.a, 1), (labs.b, 1), (labs.admin, 2)):
        found = c.get("/v1/predictions", params={"sample_id": "S2"}, headers=key).json()
        assert len(found["predictions"]) == expected
    assert c.get("/v1/predictions", params={"sample_id": "S1"}, headers=labs.b).json() == {
        "predictions": []
    }
    exported = c.get("/v1/predictions", params={"sample_id": "S1", "format": "csv"},
                     headers=labs.b)  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert rows == []  # the header alone
    mine = c.get("/v1/predictions", params={"sample_id": "S1", "format": "csv"}, headers=labs.a)
    assert [r["sample_id"] for r in csv.DictReader(io.StringIO(mine.text))] == ["S1"]
    history = c.get("/ui/parts/history", params={"sample_id": "S1"}, headers=labs.b).text
    assert "0 results for" in history
    assert "1 result for" in c.get("/ui/parts/history", params={"sample_id": "S1"},
                                   headers=labs.a).text  # fmt: skip
    with Session(labs.engine) as s:
        tenants = sorted(s.scalars(select(Prediction.tenant)).all())
    assert tenants == ["lab-a", "lab-b"]


def _own_model(labs: Labs, key: dict[str, str], name: str) -> None:
    """Claim `name` with a job of `key`'s lab and publish a version of it, as the job would."""
    data = labs.upload(key)
    assert labs.job(key, data, name).status_code == 202
    write_model(root=labs.models, name=name, genes=GENES, labels=LABELS, seed=3)
    labs.wait_visible(key, name)


def test_a_tenant_s_models_are_invisible_to_other_tenants(labs: Labs) -> None:
    c = labs.client
    _own_model(labs, labs.a, "lab-a-model")
    with Session(labs.engine) as s:
        assert s.get(ModelName, "lab-a-model").tenant == "lab-a"  # type: ignore[union-attr]

    def names(key: dict[str, str] | None) -> set[str]:
        return {m["name"] for m in c.get("/v1/models", headers=key or {}).json()["models"]}

    operator = {"toy-encoder", "toy-classifier"}
    assert names(labs.a) == operator | {"lab-a-model"}
    assert names(labs.b) == operator
    assert names(None) == operator  # no key: the operator's models only
    assert names(labs.admin) == operator | {"lab-a-model"}
    body = classify_body(["S1"])
    for key, status in ((labs.a, 200), (labs.a_predict, 200), (labs.b, 404), (labs.admin, 200)):
        assert c.get("/v1/models/lab-a-model", headers=key).status_code == status
        r = c.post("/v1/models/lab-a-model/classify", json=body, headers=key)
        assert r.status_code == status, r.text
        r = c.post("/v2/models/lab-a-model/infer", json=v2_body(), headers=key)
        assert r.status_code == status, r.text
        assert c.get("/v2/models/lab-a-model", headers=key).status_code == status
        r = c.post("/v1/preprocess", json={"model": "lab-a-model", **body}, headers=key)
        # its own lab learns the toy model has no preprocessing; the other lab, nothing
        assert r.status_code == (404 if status == 404 else 422), r.text
    for task in ("embed", "regress"):  # a classifier: 422 to its lab, 404 to the other
        assert (
            c.post(f"/v1/models/lab-a-model/{task}", json=body, headers=labs.a).status_code == 422
        )
        assert (
            c.post(f"/v1/models/lab-a-model/{task}", json=body, headers=labs.b).status_code == 404
        )
    assert c.get("/v2/models/lab-a-model/ready", headers=labs.a).status_code == 200
    assert c.get("/v2/models/lab-a-model/ready", headers=labs.b).status_code == 404
    upload = {"file": ("cells.csv", b"sample," + ",".join(GENES).encode() + b"\nS1" + b",1.0" * 10)}
    r = c.post("/ui/parts/predict", files=upload, data={"model": "lab-a-model"}, headers=labs.b)
    assert (r.status_code, r.headers["content-type"]) == (404, PROBLEM)
    r = c.post("/ui/parts/predict", files=upload, data={"model": "lab-a-model"}, headers=labs.a)
    assert r.status_code == 200, r.text
    assert "lab-a-model" not in c.get("/ui/parts/model-names", headers=labs.b).text
    assert "lab-a-model" in c.get("/ui/parts/model-names", headers=labs.a).text
    r = c.post("/v1/models/lab-a-model/classify", json=body, headers=labs.b)
    assert r.json()["detail"] == c.post(
        "/v1/models/no-such-model/classify", json=body, headers=labs.b
    ).json()["detail"].replace("no-such-model", "lab-a-model")  # the same words as for none
    assert c.get("/v2/models/lab-a-model").status_code == 404  # no key
    assert "lab-a-model" not in c.get("/ui/parts/models", headers=labs.b).text
    assert "lab-a-model" in c.get("/ui/parts/models", headers=labs.a).text
    assert "lab-a-model" not in c.get("/ui/parts/model-options", headers=labs.b).text
    assert c.get("/ui/parts/models/lab-a-model", headers=labs.b).status_code == 404
    ready = c.get("/readyz").json()  # probes see the operator's models, a count of the rest
    assert {m["name"] for m in ready["models"]} == operator
    assert ready["tenant_models"] == 1


def test_publishing_under_another_tenant_s_or_the_operator_s_name_is_403(labs: Labs) -> None:
    c = labs.client
    _own_model(labs, labs.a, "lab-a-model")
    b_data = labs.upload(labs.b)
    for name in ("lab-a-model", "toy-classifier"):
        r = labs.job(labs.b, b_data, name)
        assert (r.status_code, r.headers["content-type"]) == (403, PROBLEM), r.text
        assert name in r.json()["detail"]
    assert c.get("/v1/finetune-jobs", headers=labs.b).json()["jobs"] == []  # nothing queued
    # the owner publishes again; an admin may publish under any name
    a_data = labs.upload(labs.a)
    assert labs.job(labs.a, a_data, "lab-a-model").status_code == 202
    admin_data = labs.upload(labs.admin)
    assert labs.job(labs.admin, admin_data, "toy-classifier").status_code == 202
    # ... and the version the operator's model served stays served until promoted: pinned at
    # submission, read by every replica's next scan (before it can see the job's new version)
    deadline = time.monotonic() + 10
    while not (model := _listed(c, "toy-classifier"))["aliases"]:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert model["aliases"] == {"production": 2}
    assert (model["default_version"], model["default_rule"]) == (2, "production alias")
    with Session(labs.engine) as s:
        owners = {n.name: n.tenant for n in s.scalars(select(ModelName))}
    assert owners == {"lab-a-model": "lab-a"}  # the operator's name stays the operator's


def _listed(c: TestClient, name: str) -> Any:
    return {m["name"]: m for m in c.get("/v1/models").json()["models"]}[name]


def test_a_new_name_is_claimed_by_the_first_tenant_at_submission(labs: Labs) -> None:
    a_data, b_data = labs.upload(labs.a), labs.upload(labs.b)
    assert labs.job(labs.a, a_data, "shared-name").status_code == 202
    r = labs.job(labs.b, b_data, "shared-name")  # before any version exists
    assert r.status_code == 403


def test_with_auth_off_everything_belongs_to_the_default_tenant(
    client: TestClient, engine: Any
) -> None:
    r = client.post("/v1/models/toy-classifier/classify", json=classify_body(["S1"]))
    assert r.status_code == 200
    table = "sample,G0,G1,G2,G3,G4,G5,G6,G7,G8,G9,y\n"
    table += "".join(f"S{i},{','.join(['1.5'] * 10)},{'ab'[i % 2]}\n" for i in range(4))
    r = client.post("/v1/datasets", files={"file": ("d.csv", table.encode())})
    assert r.status_code == 201, r.text
    with Session(engine) as s:
        assert s.scalars(select(Prediction.tenant)).all() == ["default"]
        assert s.scalars(select(Dataset.tenant)).all() == ["default"]
    assert client.get("/v1/datasets").json()["datasets"][0]["tenant"] == "default"


def test_the_repository_refuses_to_change_a_row_outside_the_tenancy(labs: Labs) -> None:
    dataset = labs.upload(labs.a)
    job = labs.job(labs.a, dataset, "lab-a-model").json()
    with Session(labs.engine) as s:
        row = s.get(Dataset, uuid.UUID(dataset))
        queued = s.get(Job, uuid.UUID(job["id"]))
        assert row is not None
        assert queued is not None
        with pytest.raises(LookupError, match="not in this tenancy"):
            datasets_repo.delete(s, row, tenancy=Tenancy("lab-b"))
        with pytest.raises(LookupError, match="not in this tenancy"):
            jobs_repo.cancel(s, queued, tenancy=Tenancy("lab-b"))
        assert datasets_repo.get(s, row.id, tenancy=Tenancy("lab-b")) is None
        assert jobs_repo.get(s, queued.id, tenancy=Tenancy("lab-b", all_tenants=True)) is not None
