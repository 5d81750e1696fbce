"""Job housekeeping, the same in the API and in every worker: reap lost runners, re-dispatch.

Each pass re-queues (or fails) running jobs whose lease expired and hands the re-queued ones to
the executor again; the API's housekeeper also hands over, once, every job left queued when it
started (a restart must not strand them). One error policy for both: a pass that fails (the
database is away, the broker refuses) is logged and the next pass, half a lease later, retries.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.db.repository import jobs

log = logging.getLogger(__name__)


class Housekeeper:
    """Runs housekeeping passes in a thread of its own until stopped."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        settings: Settings,
        submit: Callable[[uuid.UUID], None],
        *,
        resume_queued: bool,
    ) -> None:
        self.factory, self.settings, self.submit = factory, settings, submit
        self.pending_resume = resume_queued
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="job-housekeeping", daemon=True)

    def run_once(self) -> bool:
        """One pass; False (logged) when it could not complete, to be retried next pass."""
        try:
            with self.factory.begin() as session:
                requeued = jobs.reap(session, self.settings.job_max_attempts)
                queued = jobs.queued_ids(session) if self.pending_resume else []
            for job_id in requeued:
                log.warning("job %s lost its runner; re-queued", job_id)
            for job_id in dict.fromkeys([*queued, *requeued]):
                self.submit(job_id)
        except Exception as exc:
            log.warning("job housekeeping failed, retried in %.0f s: %s", self.interval, exc)
            return False
        self.pending_resume = False
        return True

    @property
    def interval(self) -> float:
        return self.settings.job_lease_seconds / 2

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        """Stop after the pass under way (if any)."""
        self.stopped.set()
        if self.thread.is_alive():
            self.thread.join()

    def _loop(self) -> None:
        while True:
            self.run_once()
            if self.stopped.wait(self.interval):
                return
