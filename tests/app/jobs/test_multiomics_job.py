"""A multi-omics fine-tuning job: the expression dataset plus a dataset per modality, published
and served with a block per modality."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from tests.factories import once_loaded, service_client
from tests.training.multiomics import conftest as fixtures
from training.multiomics.data import MultiOmics

pytestmark = pytest.mark.slow  # a real fine-tuning job

omics, omics_encoder = fixtures.omics, fixtures.omics_encoder
NOBODY = "00000000-0000-0000-0000-000000000000"


@pytest.fixture
def jobs_client(engine: Engine, omics_encoder: Path, tmp_path: Path) -> Iterator[TestClient]:
    models = tmp_path / "models"
    shutil.copytree(omics_encoder / "omics-enc", models / "omics-enc")
    with service_client(engine, models, tmp_path / "data") as client:
        yield client


def _upload(client: TestClient, table: pd.DataFrame, name: str) -> str:
    csv = table.to_csv(index_label="sample").encode()
    r = client.post("/v1/datasets", files={"file": (f"{name}.csv", csv)}, data={"name": name})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _datasets(client: TestClient, data: MultiOmics) -> tuple[str, dict[str, str]]:
    e = data.expression
    table = pd.DataFrame(e.X, index=e.sample_ids, columns=e.gene_ids)
    table["label"] = e.labels("label")
    ids = {}
    for name, m in data.modalities.items():
        ids[name] = _upload(client, pd.DataFrame(m.X, index=m.sample_ids, columns=m.gene_ids), name)
    return _upload(client, table, "rna"), ids


def _body(expression: str, modalities: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {
        "encoder": {"name": "omics-enc"},
        "dataset_id": expression,
        "label_column": "label",
        "strategy": "frozen",
        "hyperparameters": {"epochs": 3, "patience": 2},
        "output_name": "omics-job",
        "modalities": modalities,
    } | extra


def test_a_multiomics_job_publishes_a_served_model(
    jobs_client: TestClient, omics: MultiOmics
) -> None:
    c = jobs_client
    expression, modalities = _datasets(c, omics)
    r = c.post("/v1/finetune-jobs", json=_body(expression, modalities))
    assert r.status_code == 202, r.text
    deadline = time.monotonic() + 120
    while (job := c.get(f"/v1/finetune-jobs/{r.json()['id']}").json())["status"] not in {
        "succeeded",
        "failed",
    }:
        assert time.monotonic() < deadline, job
        time.sleep(0.2)
    assert job["status"] == "succeeded", job["error"]
    assert job["metrics"]["published"]["kind"] == "multiomics"
    assert len(job["curve"]) == job["metrics"]["epochs_run"] > 0
    assert set(job["metrics"]["modalities"]) == {"methylation", "protein"}
    compared = job["metrics"]["selection"]  # beside logistic regressions on the same test samples
    assert [c["name"] for c in compared["candidates"]] == [
        "multiomics", "logistic", "logistic+modalities"
    ]  # fmt: skip
    assert job["metrics"]["warnings"] == compared["warnings"]
    detail = once_loaded(c.get, "/v1/models/omics-job").json()
    assert [m["name"] for m in detail["modalities"]] == ["methylation", "protein"]
    e, p = omics.expression, omics.modalities["protein"]
    body = {
        "expression": {"genes": e.gene_ids, "sample_ids": e.sample_ids[:3],
                       "values": e.X[:3].tolist()},
        "modalities": {"protein": {"features": p.gene_ids, "samples": [
            {"id": p.sample_ids[0], "values": p.X[0].tolist()}]}},
    }  # fmt: skip
    r = c.post("/v1/models/omics-job/classify", json=body)
    assert r.status_code == 200, r.text
    assert all("methylation" in row["missing_modalities"] for row in r.json()["predictions"])


@pytest.mark.parametrize(
    ("extra", "status", "message"),
    [
        ({"task": "regression"}, 422, "takes no task regression"),
        ({"semi_supervised": {"method": "consistency"}}, 422, "takes no semi_supervised"),
        ({"tune": {"trials": 2}}, 422, "takes no tune"),
        ({"modalities": {"Protein": NOBODY}}, 422, "pattern"),
        ({"modalities": {"protein": NOBODY}}, 404, ""),
    ],
)
def test_bad_multiomics_jobs_are_refused(
    jobs_client: TestClient, omics: MultiOmics, extra: dict[str, Any], status: int, message: str
) -> None:
    expression, modalities = _datasets(jobs_client, omics)
    r = jobs_client.post("/v1/finetune-jobs", json=_body(expression, modalities) | extra)
    assert r.status_code == status, r.text
    assert message in r.text
