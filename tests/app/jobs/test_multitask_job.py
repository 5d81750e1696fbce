"""A multi-task fine-tuning job on pbmc68k (bulk_labels + phase + G2M_score): submitted with
`tasks`, checked at submission, published as one multi-task version and served."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from tests.app.jobs.test_jobs import PROBLEM, job_body, wait_for
from tests.factories import expression_body, once_loaded

pytestmark = pytest.mark.slow  # a real fine-tuning job

TASKS = [
    {"column": "bulk_labels"},
    {"column": "phase", "kind": "classification"},
    {"column": "G2M_score", "kind": "regression", "weight": 0.5},
]


@pytest.fixture
def dataset(svc: TestClient, pbmc_csv: bytes) -> str:
    """pbmc68k with bulk_labels, and phase (missing for the first 100 cells) and G2M_score
    from a labels table."""
    from training.data.pbmc68k import load_pbmc68k_reduced

    m = load_pbmc68k_reduced()
    labels = pd.DataFrame(
        {
            "cell": m.sample_ids,
            "phase": m.obs["phase"].astype(str).to_numpy(),
            "G2M_score": m.obs["G2M_score"].to_numpy(),
        }
    )
    labels.loc[:99, "phase"] = ""
    files = {"file": ("pbmc.csv", pbmc_csv), "labels": ("more.csv", labels.to_csv(index=False))}
    r = svc.post("/v1/datasets", files=files)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _body(dataset_id: str, **overrides: Any) -> dict[str, Any]:
    body = job_body(dataset_id, output_name="lab-multi")
    del body["label_column"]
    return {**body, "tasks": TASKS, **overrides}


def test_a_multi_task_job_publishes_one_served_version(
    svc: TestClient, dataset: str, pbmc_table: pd.DataFrame, service_models: Path
) -> None:
    r = svc.post("/v1/finetune-jobs", json=_body(dataset))
    assert r.status_code == 202, r.text
    job = wait_for(svc, r.json()["id"], {"succeeded", "failed"}, seconds=300)
    assert job["status"] == "succeeded", job["error"]
    assert job["metrics"]["published"] == {"candidate": "frozen", "kind": "multitask"}
    assert set(job["metrics"]["test"]) == {"bulk_labels", "phase", "G2M_score"}
    assert set(job["metrics"]["baseline"]["G2M_score"]) == {"r2", "mae", "spearman"}
    card = json.loads((service_models / "lab-multi" / "1" / "model.json").read_text())
    assert card["kind"] == "multitask"
    assert [(t["name"], t["kind"], t["weight"]) for t in card["tasks"]] == [
        ("bulk_labels", "classification", 1.0),
        ("phase", "classification", 1.0),
        ("G2M_score", "regression", 0.5),
    ]
    assert card["tasks"][1]["n_labelled"] < card["tasks"][0]["n_labelled"]  # masked, kept
    assert card["job"] == job["id"]
    request = expression_body(pbmc_table, 3)
    r = once_loaded(svc.post, "/v1/models/lab-multi/classify", json=request)
    assert r.status_code == 200, r.text
    assert list(r.json()["tasks"]) == ["bulk_labels", "phase", "G2M_score"]
    r = svc.post("/v1/models/lab-multi/regress?task=G2M_score", json=request)
    assert list(r.json()["tasks"]) == ["G2M_score"]
    page = svc.get(f"/ui/parts/jobs/{job['id']}")
    assert page.status_code == 200, page.text
    assert "G2M_score · r2" in page.text
    assert "baseline" in page.text
    listing = svc.get("/ui/parts/jobs")
    assert "bulk_labels, phase, G2M_score" in listing.text


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"tasks": [*TASKS, {"column": "age"}, {"column": "sex"}]}, "no label column 'age', 'sex'"),
        ({"strategy": "auto"}, "needs a named strategy"),
        ({"label_column": "bulk_labels"}, "exclude each other"),
        ({"tasks": [*TASKS, {"column": "phase"}]}, "repeated"),
        ({"tasks": [{"column": "bulk_labels", "kind": "regression"}]}, "needs a number"),
        ({"semi_supervised": {"method": "consistency"}}, "single-task"),
        ({"tune": {"trials": 2}}, "single-task"),
        ({"candidates": ["frozen"]}, "candidates are compared by strategy 'auto'"),
    ],
)
def test_bad_multi_task_jobs_are_refused_at_submission(
    svc: TestClient, dataset: str, overrides: dict[str, Any], message: str
) -> None:
    r = svc.post("/v1/finetune-jobs", json=_body(dataset, **overrides))
    assert (r.status_code, r.headers["content-type"]) == (422, PROBLEM), r.text
    assert message in r.json()["detail"]
    if "age" in message:
        assert r.json()["missing_columns"] == ["age", "sex"]


def test_a_job_names_a_label_column_or_tasks(svc: TestClient, dataset: str) -> None:
    body = _body(dataset)
    del body["tasks"]
    r = svc.post("/v1/finetune-jobs", json=body)
    assert (r.status_code, r.headers["content-type"]) == (422, PROBLEM)
    assert "give label_column" in r.json()["detail"]
    r = svc.post("/v1/finetune-jobs", json=_body(dataset, tasks=[{"column": "x", "weight": 0}]))
    assert r.status_code == 422
