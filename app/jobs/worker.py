"""`genexfer worker`: a Celery worker process that runs fine-tuning jobs (needs the train extra).

It also runs job housekeeping (`app.jobs.housekeeping`): it hands queued jobs to the broker,
records jobs whose lost runner had published their version and re-queues the others, so a
deployment with workers but a stopped API still dispatches and recovers jobs.
"""

from __future__ import annotations

import logging
import socket
import uuid

from celery import Celery

from app.config import Settings
from app.db.session import make_engine, make_sessionmaker
from app.jobs.celery_app import TASK_NAME, make_celery
from app.jobs.housekeeping import Housekeeper

log = logging.getLogger(__name__)


def build_worker_app(settings: Settings) -> Celery:
    """The Celery app with the job task bound to this process's database."""
    factory = make_sessionmaker(make_engine(settings.database_url))
    app = make_celery(settings.broker_url, settings.job_queue)

    @app.task(name=TASK_NAME, acks_late=True, reject_on_worker_lost=True)  # type: ignore[untyped-decorator]
    def run(job_id: str) -> str:
        from app.jobs.tasks import run_job

        return run_job(uuid.UUID(job_id), factory=factory, settings=settings)

    def submit(job_id: uuid.UUID) -> None:
        app.send_task(TASK_NAME, args=[str(job_id)])

    # workers dispatch and reap as the API does (on PostgreSQL each job is handed over once
    # between them); re-taking every queued job at start-up is only for an in-process executor
    Housekeeper(factory, settings, submit, resume_queued=False).start()
    return app


def run_worker(settings: Settings, concurrency: int, loglevel: str) -> int:
    """Run the worker until it is stopped (SIGTERM: finish the current job first)."""
    app = build_worker_app(settings)
    # threads pool: the job and its heartbeat live in this process, so killing it kills both
    app.worker_main(
        ["worker", f"--concurrency={concurrency}", "--pool=threads", f"--loglevel={loglevel}"]
    )
    return 0


def ping(settings: Settings, timeout: float = 5.0) -> bool:
    """Whether this host's worker answers over the broker (the container's health check)."""
    app = make_celery(settings.broker_url, settings.job_queue)
    try:
        replies = app.control.ping(destination=[f"celery@{socket.gethostname()}"], timeout=timeout)
    finally:
        app.close()
    return bool(replies)
