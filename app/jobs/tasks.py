"""Run one fine-tuning job by id: claim it, keep its lease alive, train, record the outcome.

Idempotent: a job that is not queued (done, cancelled, or held by another runner) is skipped, so
a redelivered message or a duplicate enqueue never runs a job twice; and a job whose version an
earlier attempt published (its card names the job: `app.jobs.publication`) is recorded from that
version, never trained and published again. The outcome is written even if the database is
away for a while as the job finishes (retried for up to two leases; after that the housekeeper
adopts the published version). Torch is imported only here, when a job actually runs
(app.jobs.train), never when the API imports this module.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
import uuid
from typing import Any

from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.db.repository import datasets, jobs
from app.jobs import publication
from app.jobs.errors import Interrupted, JobCancelled, JobFailure, LeaseLost
from contract.errors import DataError
from contract.vocab import INNER_CV_STAGE

log = logging.getLogger(__name__)


MAX_CURVE_POINTS = 500


class LossCurve:
    """Every epoch's losses, at most `limit` points: when full, every other point is dropped and
    later epochs are kept at twice the stride, so the whole run stays in view at a bounded size."""

    def __init__(self, limit: int = MAX_CURVE_POINTS) -> None:
        self.limit, self.stride, self.seen = limit, 1, 0
        self.points: list[dict[str, Any]] = []

    def add(self, stage: str, epoch: int, train_loss: float, val_loss: float) -> None:
        """Record one epoch (`epoch` 1-based within its stage)."""
        step, self.seen = self.seen, self.seen + 1
        if step % self.stride:
            return
        self.points.append(
            {
                "step": step + 1,
                "stage": stage,
                "epoch": epoch,
                "train_loss": _finite(train_loss),
                "val_loss": _finite(val_loss),
            }
        )
        if len(self.points) > self.limit:
            self.points, self.stride = self.points[::2], self.stride * 2


def _finite(x: float) -> float | None:
    """JSON has no NaN (PostgreSQL refuses it): a loss that is not a number is recorded as null."""
    return float(x) if math.isfinite(x) else None


def runner_name() -> str:
    """Who holds a lease: host, process and a random part (one process may run several jobs)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Heartbeat(threading.Thread):
    """Renews the lease and writes progress; raises in the training thread via `check()`."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        job_id: uuid.UUID,
        owner: str,
        lease: float,
        shutdown: threading.Event | None = None,
    ) -> None:
        super().__init__(name=f"heartbeat-{job_id}", daemon=True)
        self.factory, self.job_id, self.owner, self.lease = factory, job_id, owner, lease
        self.shutdown = shutdown or threading.Event()
        self.interval = min(lease / 3, 2.0)  # cancellation is seen within this many seconds
        self.progress: dict[str, Any] = {}
        self.curve = LossCurve()
        self.cancelled = threading.Event()
        self.lost = threading.Event()
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            self.beat()

    def beat(self) -> None:
        """One renewal; database errors are retried at the next beat (the lease has slack)."""
        try:
            with self.factory.begin() as session:
                state = jobs.renew(session, self.job_id, self.owner, self.lease, **self.progress)
        except Exception as exc:
            log.warning("job %s: lease renewal failed: %s", self.job_id, exc)
            return
        if state is None:
            self.lost.set()
        elif state:
            self.cancelled.set()

    def check(self) -> None:
        """Raise in the training thread if the job must stop."""
        if self.lost.is_set():
            raise LeaseLost(f"job {self.job_id}: lease lost")
        if self.shutdown.is_set():
            raise Interrupted(f"job {self.job_id}: the process is stopping")
        if self.cancelled.is_set():
            raise JobCancelled(f"job {self.job_id} was cancelled")

    # TrainingHook
    def batch(self) -> None:
        self.check()

    def epoch(
        self, description: str, epoch: int, max_epochs: int, train_loss: float, val_loss: float
    ) -> None:
        if not description.startswith(INNER_CV_STAGE):  # the choice's fits: no curve
            self.curve.add(description, epoch + 1, train_loss, val_loss)
        self.progress = {
            "epoch": epoch + 1,
            "progress": min((epoch + 1) / max_epochs, 0.99),
            "metrics": {
                "stage": description,
                "train_loss": _finite(train_loss),
                "val_loss": _finite(val_loss),
                "curve": list(self.curve.points),
            },
        }
        self.check()


def run_job(
    job_id: uuid.UUID,
    *,
    factory: sessionmaker[Session],
    settings: Settings,
    shutdown: threading.Event | None = None,
) -> str:
    """Run the job if it is queued; returns what happened (skipped / succeeded / failed / …).

    Setting `shutdown` stops the training at the next minibatch and re-queues the job.
    """
    owner = runner_name()
    with factory.begin() as session:
        job = jobs.claim(session, job_id, owner, settings.job_lease_seconds)
        if job is None:
            log.info("job %s is not queued; skipped", job_id)
            return "skipped"
        params, dataset_id = dict(job.params), job.dataset_id
        curve_so_far = list((job.metrics or {}).get("curve") or [])
    patience = 2 * settings.job_lease_seconds
    published = publication.find_published(settings.models_dir, params["output_name"], job_id)
    if published is not None:
        reason = f"version {published.version} was published by an earlier attempt of this job"
        log.warning("job %s: %s; recorded, not trained again", job_id, reason)
        found = (published.name, published.version, publication.card_metrics(published))
        adopted: dict[str, Any] = {
            "status": "succeeded",
            "result": found,
            "curve": curve_so_far,
            "reason": reason,
        }
        return _record(factory, job_id, owner, adopted, patience)
    heartbeat = Heartbeat(factory, job_id, owner, settings.job_lease_seconds, shutdown)
    heartbeat.start()
    outcome: dict[str, Any]
    try:
        from app.jobs import train  # torch loads here, in the runner only

        with factory() as session:
            path = datasets.stored_path(session, dataset_id) if dataset_id else None
            # a multi-omics job: each modality's dataset too
            added = {
                name: datasets.stored_path(session, uuid.UUID(str(other)))
                for name, other in (params.get("modalities") or {}).items()
            }
        if path is None or None in added.values():
            raise JobFailure("its dataset was deleted")
        result = train.run(
            job_id,
            params,
            path=path,
            modality_paths={name: str(p) for name, p in added.items()},
            models_dir=settings.models_dir,
            hook=heartbeat,
            device=settings.train_device,
        )
        outcome = {
            "status": "succeeded",
            "result": result,
            "curve": heartbeat.curve.points,
            "reason": None,
        }
    except JobCancelled:
        outcome = {"status": "cancelled", "reason": "cancelled while running"}
    except LeaseLost:
        log.warning("job %s: lease lost to another runner; stopping without recording", job_id)
        return "lease-lost"
    except Interrupted:
        with factory.begin() as session:
            jobs.release(session, job_id, owner, f"{owner} stopped (process shutdown); re-queued")
        return "interrupted"
    except Exception as exc:
        log.exception("job %s failed", job_id)
        # the lab's own data at fault: its words; anything else: what broke, by type
        bad_input = isinstance(exc, JobFailure | DataError)
        reason = str(exc) if bad_input else f"{type(exc).__name__}: {exc}"
        outcome = {"status": "failed", "reason": reason}
    finally:
        heartbeat.stopped.set()
        heartbeat.join()
    return _record(factory, job_id, owner, outcome, patience)


def _record(
    factory: sessionmaker[Session],
    job_id: uuid.UUID,
    owner: str,
    outcome: dict[str, Any],
    patience: float,
) -> str:
    """Write the outcome, retrying while the database is away (up to `patience` seconds)."""
    deadline = time.monotonic() + patience
    while True:
        try:
            return _write(factory, job_id, owner, outcome)
        except (OperationalError, InterfaceError) as exc:
            if time.monotonic() >= deadline:
                # a published version is adopted by the housekeeper once its lease expires
                log.error("job %s: outcome not recorded, the database is away: %s", job_id, exc)
                return "unrecorded"
            log.warning("job %s: the database is away; recording the outcome again", job_id)
            time.sleep(1.0)


def _write(
    factory: sessionmaker[Session], job_id: uuid.UUID, owner: str, outcome: dict[str, Any]
) -> str:
    status = outcome["status"]
    with factory.begin() as session:
        if status != "succeeded":
            jobs.finish(session, job_id, owner, status, reason=outcome["reason"])
            return str(status)
        name, version, metrics = outcome["result"]
        job = jobs.for_runner(session, job_id)
        assert job is not None  # jobs are never deleted
        if not jobs.finish(
            session,
            job_id,
            owner,
            "succeeded",
            reason=outcome["reason"],
            progress=1.0,
            metrics={**metrics, "curve": outcome["curve"]},
            result_model=name,
            result_version=version,
        ):
            return "lease-lost"  # the housekeeper took the job back (and adopts its version)
        how = outcome["reason"] or "published by this job"
        publication.record(session, job, name=name, version=version, metrics=metrics, how=how)
    return "succeeded"
