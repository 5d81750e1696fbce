"""A job run by this process's executor is served as soon as it is published, with no poll."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import Future
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import Engine

from app.jobs.executor import LocalExecutor
from tests.factories import expression_body, make_settings, service_client


def test_the_executor_reports_only_succeeded_jobs(engine: Engine, tmp_path: Path) -> None:
    calls: list[str] = []
    settings = make_settings(engine.url.render_as_string(hide_password=False), tmp_path)
    executor = LocalExecutor(None, settings, lambda: calls.append("published"))  # type: ignore[arg-type]
    try:
        for outcome in ("skipped", "failed", "succeeded"):
            future: Future[str] = Future()
            future.set_result(outcome)
            executor._published(future)
        crashed: Future[str] = Future()
        crashed.set_exception(RuntimeError("database away"))
        executor._published(crashed)
    finally:
        executor.close()
    assert calls == ["published"]


@pytest.mark.slow
def test_a_finished_job_is_served_without_waiting_for_a_scan(
    engine: Engine, service_models: Path, tmp_path: Path, pbmc_csv: bytes, pbmc_table: pd.DataFrame
) -> None:
    # reload_interval_s=0: models/ is never polled, so only the executor's notice can load it
    with service_client(engine, service_models, tmp_path / "d", reload_interval_s=0) as svc:
        r = svc.post("/v1/datasets", files={"file": ("pbmc.csv", pbmc_csv)})
        assert r.status_code == 201, r.text
        job = {
            "encoder": {"name": "pbmc68k-encoder"},
            "dataset_id": r.json()["id"],
            "label_column": "bulk_labels",
            "hyperparameters": {"epochs": 3, "patience": 3},
            "output_name": f"lab-{uuid.uuid4().hex[:6]}",
        }
        r = svc.post("/v1/finetune-jobs", json=job)
        assert r.status_code == 202, r.text
        deadline = time.monotonic() + 120
        while (state := svc.get(f"/v1/finetune-jobs/{r.json()['id']}").json())["status"] not in (
            "succeeded",
            "failed",
        ):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert state["status"] == "succeeded", state["error"]
        body = expression_body(pbmc_table, 2)
        deadline = time.monotonic() + 5
        while (
            c := svc.post(f"/v1/models/{job['output_name']}/classify", json=body)
        ).status_code != 200:
            assert time.monotonic() < deadline, c.text
            time.sleep(0.05)
        assert c.json()["model"]["version"] == 1
