"""Job housekeeping, the same in the API and in every worker: dispatch, reap lost runners.

Each pass:

1. records as succeeded the jobs whose runner was lost after it had published the job's version
   (found by the job id in the version's card: `app.jobs.publication`), so no version is left
   without its job's record and none is trained twice;
2. re-queues (or fails) the other running jobs whose lease expired (`jobs.reap`);
3. hands every queued job not yet dispatched (new, or re-queued) to the executor and stamps it
   (`app.db.repository.dispatch`), and again those dispatched more than
   `job_redispatch_seconds` ago (their message may be lost); the API's in-process executor also
   re-takes, once at start-up, every job still queued (its messages died with the last process).

A submission wakes the housekeeper, so a new job is dispatched at once. One error policy: a pass
that fails (the database is away, the broker refuses) is logged and the next pass, half a lease
later, retries; a job the broker refused stays in the outbox meanwhile, so it is delayed, never
stranded, and never run twice (only one runner can claim it).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.db.repository import dispatch, jobs
from app.jobs import publication

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
        self._wake = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="job-housekeeping", daemon=True)

    def run_once(self) -> bool:
        """One pass; False (logged) when it could not complete, to be retried next pass."""
        try:
            self._reap()
            self._dispatch()
        except Exception as exc:
            log.warning("job housekeeping failed, retried in %.0f s: %s", self.interval, exc)
            return False
        self.pending_resume = False
        return True

    def _reap(self) -> None:
        with self.factory.begin() as session:
            for job in jobs.expired(session):
                publication.adopt_if_published(session, job, self.settings.models_dir)
            requeued = jobs.reap(session, self.settings.job_max_attempts)
        for job_id in requeued:
            log.warning("job %s lost its runner; re-queued", job_id)

    def _dispatch(self) -> None:
        stale, every = timedelta(seconds=self.settings.job_redispatch_seconds), self.pending_resume
        with self.factory() as session:
            pending = dispatch.to_dispatch(session, stale_after=stale, every_queued=every)
        for job_id in pending:
            # one transaction per job: its row is locked while it is handed over, so another
            # API replica or worker does not hand it over too, and stamped once handed over
            with self.factory.begin() as session:
                if dispatch.lock_for_dispatch(
                    session, job_id, stale_after=stale, every_queued=every
                ):
                    self.submit(job_id)  # raises if the broker is away: the job stays pending
                    dispatch.mark_dispatched(session, job_id)

    @property
    def interval(self) -> float:
        return self.settings.job_lease_seconds / 2

    def wake(self) -> None:
        """Run a pass now (a job was just submitted)."""
        self._wake.set()

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        """Stop after the pass under way (if any)."""
        self.stopped.set()
        self._wake.set()
        if self.thread.is_alive():
            self.thread.join()

    def _loop(self) -> None:
        while not self.stopped.is_set():
            self.run_once()
            # a wake during the pass is kept for the next one, which then starts at once
            if self._wake.wait(self.interval):
                self._wake.clear()
