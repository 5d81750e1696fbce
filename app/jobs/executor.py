"""Where jobs run: in this process (the embedded default) or on Celery workers (at scale)."""

from __future__ import annotations

import importlib.util
import logging
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.errors import ServiceUnavailable

log = logging.getLogger(__name__)


class Executor(Protocol):
    """Runs a committed job row, somewhere."""

    def check_available(self) -> None:
        """Raise ServiceUnavailable if jobs cannot run at all."""

    def submit(self, job_id: uuid.UUID) -> None:
        """Hand the job over (the row must be committed first)."""

    def close(self) -> None:
        """Stop accepting jobs."""


class LocalExecutor:
    """A thread pool in the API process; needs the 'train' extra.

    `on_published` is called (in the job's thread) after a job has published a new version,
    so this process serves it at once instead of at its next scan of models/.
    """

    def __init__(
        self,
        factory: sessionmaker[Session],
        settings: Settings,
        on_published: Callable[[], None] | None = None,
    ) -> None:
        self.factory, self.settings = factory, settings
        self.on_published = on_published
        self.pool = ThreadPoolExecutor(settings.local_job_threads, thread_name_prefix="job")
        self.shutdown = threading.Event()

    def check_available(self) -> None:
        if importlib.util.find_spec("torch") is None:
            raise ServiceUnavailable(
                "fine-tuning needs the training extra in this process: "
                "pip install 'genexfer[train]' (or run Celery workers: GENEXFER_EXECUTOR=celery)",
                retry_after_s=3600,  # an installation to change, not a passing state
            )

    def submit(self, job_id: uuid.UUID) -> None:
        from app.jobs.tasks import run_job

        future = self.pool.submit(
            run_job, job_id, factory=self.factory, settings=self.settings, shutdown=self.shutdown
        )
        future.add_done_callback(lambda f: _log_crash(job_id, f))
        future.add_done_callback(self._published)

    def _published(self, future: Future[str]) -> None:
        if self.on_published is None or future.cancelled() or future.exception() is not None:
            return
        if future.result() == "succeeded":
            self.on_published()

    def close(self) -> None:
        # a running job stops at its next minibatch and goes back to the queue; the next start
        # of the API (or another replica) runs it again
        self.shutdown.set()
        self.pool.shutdown(wait=True, cancel_futures=True)


def _log_crash(job_id: uuid.UUID, future: Future[str]) -> None:
    # run_job records its own failures; this catches a crash before it could (e.g. DB away)
    if not future.cancelled() and future.exception() is not None:
        log.error("job %s: runner crashed: %r", job_id, future.exception())


class CeleryExecutor:
    """Sends the job id to the Redis queue that `genexfer worker` processes consume."""

    def __init__(self, settings: Settings) -> None:
        from app.jobs.celery_app import make_celery

        self.app = make_celery(settings.broker_url, settings.job_queue)

    def check_available(self) -> None:
        return None  # the message waits in Redis until a worker takes it

    def submit(self, job_id: uuid.UUID) -> None:
        from app.jobs.celery_app import TASK_NAME

        self.app.send_task(TASK_NAME, args=[str(job_id)])

    def close(self) -> None:
        self.app.close()


def make_executor(
    settings: Settings,
    factory: sessionmaker[Session],
    on_published: Callable[[], None] | None = None,
) -> Executor:
    """The executor the settings ask for (`on_published`: see LocalExecutor)."""
    if settings.executor == "celery":
        return CeleryExecutor(settings)
    return LocalExecutor(factory, settings, on_published)
