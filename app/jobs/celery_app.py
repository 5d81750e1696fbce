"""The Celery application: Redis broker, acks late, one job at a time per worker process.

Acks late + reject_on_worker_lost: a message is acknowledged only after its job finished, so a
worker that dies mid-job does not lose it; the job row's lease (app.services.jobs) guarantees the
job itself still runs at most once at a time.
"""

from __future__ import annotations

from celery import Celery

TASK_NAME = "genexfer.run_job"


def make_celery(broker_url: str, queue: str) -> Celery:
    """A Celery app on `broker_url` and `queue`, configured for long, one-at-a-time jobs."""
    app = Celery("genexfer", broker=broker_url)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",  # never pickle
        accept_content=["json"],
        result_backend=None,
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        task_default_queue=queue,
    )
    return app
