"""One pass of the lease reaper, shared by the API's background loop and the workers."""

from __future__ import annotations

import logging
import uuid

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.services import jobs

log = logging.getLogger(__name__)


def reap_once(factory: sessionmaker[Session], settings: Settings) -> list[uuid.UUID]:
    """Re-queue or fail jobs whose lease expired; the re-queued ids need enqueueing again."""
    try:
        with factory.begin() as session:
            ids = jobs.reap(session, settings.job_max_attempts)
    except OperationalError as exc:  # the database is away; try at the next pass
        log.warning("reaper: database unavailable: %s", exc)
        return []
    for job_id in ids:
        log.warning("job %s lost its runner; re-queued", job_id)
    return ids
