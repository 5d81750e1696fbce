"""A fine-tuning job's `tune`: refused by name when out of range; the study in the job and card."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.app.jobs.test_jobs import PROBLEM, job_body, upload_pbmc, wait_for

SOME_DATASET = "00000000-0000-0000-0000-000000000000"


@pytest.mark.parametrize(
    ("tune", "field"),
    [
        ({"trials": 0}, "tune.trials"),
        ({"trials": 201}, "tune.trials"),
        ({"timeout_s": 0}, "tune.timeout_s"),
        ({"timeout_s": "Infinity"}, "tune.timeout_s"),
        ({"trials": 5, "sampler": "grid"}, "tune.sampler"),
    ],
)
def test_a_bad_search_is_refused_by_name(svc: TestClient, tune: dict[str, Any], field: str) -> None:
    r = svc.post("/v1/finetune-jobs", json=job_body(SOME_DATASET, tune=tune))
    assert (r.status_code, r.headers["content-type"]) == (422, PROBLEM), r.text
    assert field in r.json()["detail"]


@pytest.mark.slow
def test_a_tuned_job_records_its_study_in_the_job_and_the_card(
    svc: TestClient, pbmc_csv: bytes, service_models: Path
) -> None:
    dataset_id = upload_pbmc(svc, pbmc_csv)
    body = job_body(
        dataset_id,
        strategy="auto",
        candidates=["frozen", "logistic"],
        tune={"trials": 2, "timeout_s": 600},
    )
    r = svc.post("/v1/finetune-jobs", json=body)
    assert r.status_code == 202, r.text
    job = wait_for(svc, r.json()["id"], {"succeeded", "failed"}, seconds=600)
    assert job["status"] == "succeeded", job["error"]
    selection = job["metrics"]["selection"]
    assert [c["name"] for c in selection["candidates"]] == ["frozen", "logistic", "tuned"]
    tuning = selection["tuning"]
    assert (tuning["trials"], tuning["timeout_s"], tuning["seed"]) == (2, 600, 0)
    assert tuning["complete"] + tuning["pruned"] == 2
    card = json.loads((service_models / "lab-celltype" / "1" / "model.json").read_text())
    assert card["selection"]["tuning"] == tuning
