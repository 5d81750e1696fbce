"""The lease protocol on both databases: one claim wins, lost runners are re-queued or failed."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import Engine, delete, update
from sqlalchemy.orm import Session

import app.db.base
from app.caller import EMBEDDED
from app.db import migrate
from app.db.base import utcnow
from app.db.repository import jobs
from app.db.session import make_engine
from app.db.tables import Dataset, Job
from app.services import jobs as job_service


def make_job(engine: Engine) -> uuid.UUID:
    with Session(engine) as s:
        dataset = Dataset(
            name="d",
            path="/nonexistent.npz",
            source_format="csv",
            sha256="0" * 64,
            n_samples=1,
            n_genes=1,
            label_counts={},
            gene_overlap=[],
            tenant="default",
        )
        s.add(dataset)
        s.flush()
        job = Job(
            status="queued",
            dataset_id=dataset.id,
            params={"encoder": {"name": "e", "version": 1}, "output_name": "lease-test"},
            history=[],
            progress=0.0,
            metrics={},
            attempts=0,
            cancel_requested=False,
            tenant="default",
        )
        s.add(job)
        s.commit()
        return job.id


def expire(engine: Engine, job_id: uuid.UUID) -> None:
    with Session(engine) as s:
        past = utcnow() - timedelta(seconds=1)
        s.execute(update(Job).where(Job.id == job_id).values(lease_expires_at=past))
        s.commit()


def test_only_one_runner_claims_a_job(engine: Engine) -> None:
    job_id = make_job(engine)
    with Session(engine) as a, Session(engine) as b:
        assert jobs.claim(a, job_id, "runner-a", 30) is not None
        a.commit()
        assert jobs.claim(b, job_id, "runner-b", 30) is None
    with Session(engine) as s:
        assert jobs.renew(s, job_id, "runner-b", 30) is None  # not b's lease
        assert jobs.renew(s, job_id, "runner-a", 30, epoch=3) is False
        s.commit()


def test_leases_follow_the_database_clock_not_the_runners(
    postgresql_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL only: SQLite is embedded, so its clock is the one machine's."""
    engine = make_engine(postgresql_url)
    migrate.upgrade(engine)
    try:
        _check_db_clock(engine, monkeypatch)
    finally:
        with engine.begin() as conn:
            conn.execute(delete(Job))
            conn.execute(delete(Dataset))
        engine.dispose()


def _check_db_clock(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    job_id = make_job(engine)
    with Session(engine) as s:
        jobs.claim(s, job_id, "slow-clock", 30)  # this runner's clock is an hour behind
        s.commit()
    # a reaper on a machine whose clock is an hour ahead: it must not take the live job away
    ahead = utcnow() + timedelta(hours=1)
    monkeypatch.setattr(app.db.base, "utcnow", lambda: ahead)
    with Session(engine) as s:
        assert jobs.reap(s, max_attempts=2) == []
        s.commit()
        job = jobs.for_runner(s, job_id)
        assert job.status == "running"
        assert job.lease_expires_at is not None
        assert job.lease_expires_at < ahead - timedelta(minutes=59)  # set by the database's clock


def test_a_lost_runner_is_requeued_then_failed(engine: Engine) -> None:
    job_id = make_job(engine)
    with Session(engine) as s:
        jobs.claim(s, job_id, "dead-1", 30)
        s.commit()
    expire(engine, job_id)
    with Session(engine) as s:
        assert jobs.reap(s, max_attempts=2) == [job_id]
        s.commit()
        # the dead runner cannot record anything any more
        assert not jobs.finish(s, job_id, "dead-1", "succeeded")
        assert jobs.claim(s, job_id, "dead-2", 30) is not None
        s.commit()
    expire(engine, job_id)
    with Session(engine) as s:
        assert jobs.reap(s, max_attempts=2) == []
        s.commit()
        job = jobs.for_runner(s, job_id)
        assert job.status == "failed"
        assert "dead-2" in (job.error or "")
        assert "attempt 2 of 2" in (job.error or "")
        assert [e["status"] for e in job.history] == [
            "running",
            "queued",
            "running",
            "failed",
        ]


def test_a_lost_runner_of_a_cancelled_job_ends_cancelled(engine: Engine) -> None:
    job_id = make_job(engine)
    with Session(engine) as s:
        jobs.claim(s, job_id, "dead", 30)
        job_service.cancel(s, job_id, tenancy=EMBEDDED.tenancy, actor=EMBEDDED.actor())
        s.commit()
    expire(engine, job_id)
    with Session(engine) as s:
        assert jobs.reap(s, max_attempts=5) == []
        s.commit()
        assert jobs.for_runner(s, job_id).status == "cancelled"


def test_cancel_before_start_and_deleted_dataset(engine: Engine) -> None:
    from sqlalchemy.orm import sessionmaker

    from app.config import Settings
    from app.jobs.tasks import run_job

    factory = sessionmaker(engine, expire_on_commit=False)
    settings = Settings(_env_file=None, database_url="sqlite://", job_lease_seconds=3)  # type: ignore[call-arg]
    cancelled = make_job(engine)
    with factory.begin() as s:
        cancel = job_service.cancel(s, cancelled, tenancy=EMBEDDED.tenancy, actor=EMBEDDED.actor())
        assert cancel.status == "cancelled"
    assert run_job(cancelled, factory=factory, settings=settings) == "skipped"
    orphan = make_job(engine)
    with factory.begin() as s:
        s.execute(update(Job).where(Job.id == orphan).values(dataset_id=None))
    assert run_job(orphan, factory=factory, settings=settings) == "failed"
    with factory() as s:
        assert jobs.for_runner(s, orphan).error == "its dataset was deleted"
