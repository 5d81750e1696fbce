"""Exactly once, piece by piece: the job row is its own outbox (a broker that is away delays a
job, never strands or duplicates it), a retried submission finds its first job, and a job whose
version was published but not recorded is recorded from that version, never trained again."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, delete, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.db.base import utcnow
from app.db.tables import AuditEvent, Dataset, IdempotencyRecord, Job, ModelVersion
from app.jobs.executor import CeleryExecutor
from app.jobs.housekeeping import Housekeeper
from app.jobs.tasks import run_job
from app.main import create_app
from tests.app.conftest import Labs, make_key
from tests.factories import GENES, LABELS, make_settings, write_model
from tests.redis_server import RedisServer


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


def make_job(
    engine: Engine, *, status: str = "queued", output_name: str = "lab-model"
) -> uuid.UUID:
    with Session(engine) as s:
        dataset = Dataset(name="d", path="/nonexistent.npz", source_format="csv", sha256="0" * 64,
                          n_samples=1, n_genes=1, label_counts={}, gene_overlap=[],
                          tenant="lab-a")  # fmt: skip
        s.add(dataset)
        s.flush()
        params = {
            "encoder": {"name": "toy-encoder", "version": 1},
            "task": "classification",
            "output_name": output_name,
        }
        job = Job(status=status, dataset_id=dataset.id, params=params, history=[], progress=0.0,
                  metrics={}, attempts=0, cancel_requested=False, tenant="lab-a")  # fmt: skip
        s.add(job)
        s.commit()
        return job.id


def job_row(engine: Engine, job_id: uuid.UUID) -> Job:
    with Session(engine, expire_on_commit=False) as s:
        job = s.get(Job, job_id)
        assert job is not None
        return job


def celery_settings(database_url: str, models: Path, broker: RedisServer, **extra: Any) -> Settings:
    return make_settings(
        database_url,
        models,
        executor="celery",
        broker_url=broker.url,
        job_queue="jobs",
        job_lease_seconds=3.0,
        **extra,
    )


def test_a_job_waits_in_the_outbox_while_the_broker_is_away(
    engine: Engine, broker: RedisServer, tmp_path: Path
) -> None:
    url = engine.url.render_as_string(hide_password=False)
    settings = celery_settings(url, tmp_path / "models", broker)
    executor = CeleryExecutor(settings)
    housekeeper = Housekeeper(sessionmaker(engine), settings, executor.submit, resume_queued=False)
    try:
        job_id = make_job(engine)
        broker.stop()
        assert housekeeper.run_once() is False  # the broker refused: logged, retried next pass
        assert job_row(engine, job_id).dispatched_at is None  # still in the outbox
        broker.start()
        assert housekeeper.run_once() is True
        assert broker.queue_length("jobs") == 1
        assert job_row(engine, job_id).dispatched_at is not None
        assert housekeeper.run_once() is True
        assert broker.queue_length("jobs") == 1  # handed over once, not at every pass
        # a message older than job_redispatch_seconds may be lost with the broker's data: again
        with Session(engine) as s:
            long_ago = utcnow() - timedelta(seconds=settings.job_redispatch_seconds + 1)
            s.execute(update(Job).where(Job.id == job_id).values(dispatched_at=long_ago))
            s.commit()
        assert housekeeper.run_once() is True
        assert broker.queue_length("jobs") == 2  # the runner claims it once whatever it gets
    finally:
        executor.close()


def test_submitting_while_the_broker_is_away_answers_202_and_dispatches_later(
    engine: Engine, broker: RedisServer, models_dir: Path, tmp_path: Path
) -> None:
    url = engine.url.render_as_string(hide_password=False)
    settings = celery_settings(url, models_dir, broker, auth_enabled=True,
                               data_dir=tmp_path / "data", reload_interval_s=0.1)  # fmt: skip
    key = make_key(engine, "lab-a", "train")
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        labs = Labs(client, key, key, key, key, models_dir, engine)
        dataset = labs.upload(key)
        broker.stop()
        asked = time.monotonic()
        r = labs.job(key, dataset, "lab-model")
        assert r.status_code == 202, r.text
        assert time.monotonic() - asked < 1.0  # the request does not wait for the broker
        job_id = uuid.UUID(r.json()["id"])
        time.sleep(1.0)
        assert job_row(engine, job_id).dispatched_at is None
        broker.start()
        deadline = time.monotonic() + 10  # the next housekeeping pass (half a lease) sends it
        while job_row(engine, job_id).dispatched_at is None:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert broker.queue_length("jobs") == 1
        read = client.get(f"/v1/finetune-jobs/{job_id}", headers=key).json()
        assert (read["status"], read["dispatched_at"] is not None) == ("queued", True)


def test_a_retried_submission_finds_its_first_job_whatever_the_first_answer(labs: Labs) -> None:
    c = labs.client
    dataset = labs.upload(labs.a)
    body = {"encoder": {"name": "toy-encoder"}, "dataset_id": dataset, "label_column": "y",
            "output_name": "lab-model"}  # fmt: skip
    retry = {**labs.a, "Idempotency-Key": "run-7"}
    first = c.post("/v1/finetune-jobs", json=body, headers=retry)
    assert first.status_code == 202

    def forget_the_answer() -> None:
        # what a 5xx answer (or one the middleware could not store) leaves: the key free again
        with Session(labs.engine) as s:
            s.execute(delete(IdempotencyRecord))
            s.commit()

    forget_the_answer()
    again = c.post("/v1/finetune-jobs", json=body, headers=retry)
    assert (again.status_code, again.json()["id"]) == (202, first.json()["id"])
    assert "idempotent-replayed" not in again.headers  # found by the key, not replayed
    forget_the_answer()
    other = c.post("/v1/finetune-jobs", json={**body, "label_column": "z"}, headers=retry)
    assert (other.status_code, other.headers["content-type"]) == (422, "application/problem+json")
    assert first.json()["id"] in other.json()["detail"]
    # another lab's Idempotency-Key is its own
    b_data = labs.upload(labs.b)
    theirs_body = {**body, "dataset_id": b_data, "output_name": "lab-b-model"}
    theirs = c.post(
        "/v1/finetune-jobs", json=theirs_body, headers={**labs.b, "Idempotency-Key": "run-7"}
    )
    assert theirs.status_code == 202
    assert theirs.json()["id"] != first.json()["id"]
    with Session(labs.engine) as s:
        assert s.scalar(select(func.count()).select_from(Job)) == 2


def _runner_settings(engine: Engine, models: Path) -> Settings:
    return make_settings(engine.url.render_as_string(hide_password=False), models,
                         job_lease_seconds=3.0)  # fmt: skip


def test_a_published_but_unrecorded_job_is_recorded_not_trained_again(
    engine: Engine, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    job_id = make_job(engine)
    # an earlier attempt published the version, then could not record it (its runner died)
    write_model(root=models, name="lab-model", genes=GENES, labels=LABELS, job=str(job_id))
    factory = sessionmaker(engine, expire_on_commit=False)
    settings = _runner_settings(engine, models)
    assert run_job(job_id, factory=factory, settings=settings) == "succeeded"
    job = job_row(engine, job_id)
    assert (job.status, job.result_model, job.result_version) == ("succeeded", "lab-model", 1)
    assert "published by an earlier attempt" in (job.history[-1]["reason"] or "")
    assert sorted(p.name for p in (models / "lab-model").iterdir()) == ["1"]  # no second version
    assert run_job(job_id, factory=factory, settings=settings) == "skipped"  # a duplicate message
    with Session(engine) as s:
        (row,) = s.scalars(select(ModelVersion)).all()
        assert (row.name, row.version, row.job_id, row.tenant) == ("lab-model", 1, job_id, "lab-a")
        (event,) = s.scalars(select(AuditEvent).where(AuditEvent.action == "model.publish")).all()
        assert (event.actor, event.tenant, event.detail["version"]) == (f"job {job_id}", "lab-a", 1)


def test_the_housekeeper_adopts_a_lost_runner_s_published_version(
    engine: Engine, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    published, lost = make_job(engine), make_job(engine, output_name="other-model")
    with Session(engine) as s:  # both were running; their runners died (leases expired)
        expired = utcnow() - timedelta(seconds=1)
        s.execute(
            update(Job)
            .where(Job.id.in_([published, lost]))
            .values(status="running", lease_owner="dead", lease_expires_at=expired, attempts=1)
        )
        s.commit()
    write_model(root=models, name="lab-model", genes=GENES, labels=LABELS, job=str(published))
    write_model(root=models, name="lab-model", version=2, genes=GENES, labels=LABELS)  # not its
    sent: list[uuid.UUID] = []
    settings = _runner_settings(engine, models)
    housekeeper = Housekeeper(sessionmaker(engine), settings, sent.append, resume_queued=False)
    assert housekeeper.run_once()
    job = job_row(engine, published)
    assert (job.status, job.result_version, job.lease_owner) == ("succeeded", 1, None)
    assert "was lost after publishing lab-model version 1" in job.history[-1]["reason"]
    assert job_row(engine, lost).status == "queued"  # nothing published: re-queued, and sent
    assert sent == [lost]
    with Session(engine) as s:
        versions = s.scalars(select(ModelVersion.version)).all()
    assert versions == [1]
