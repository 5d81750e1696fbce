"""Group commit for prediction records: the rows of concurrent requests share one transaction.

Each request still waits until its own row is committed before it answers, so no answer is ever
sent for a call whose record could still be lost; what is shared is the transaction (one commit,
one thread hop, one multi-row INSERT) instead of a session, a flush and a commit per request.
While one transaction is being written, the rows that arrive meanwhile queue up and form the next
one, so an idle service writes every row at once (no added wait) and a busy one writes many per
commit.

A transaction that fails because of its rows (a value the database refuses) is split in halves and
each half written again, down to single rows: only the request whose row is bad fails, the others
are committed (a bad row among n costs about 2·log2(n) more transactions). A transaction that fails
because the database is away (`OperationalError`, `InterfaceError`) fails every request in it at
once; retrying would only wait longer. Log lines name the error's class and first line only: a
driver's message can quote the failing row, and rows hold sample ids and outputs.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy.exc import DataError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from app.audit import api_key_id_var, idempotency_key_var, tenant_var
from app.db.base import utcnow
from app.db.repository import predictions as repository
from app.errors import AppError, InvalidRequest, first_line

log = logging.getLogger(__name__)
Pending = list[tuple[dict[str, Any], "asyncio.Future[None]"]]


def _answer(exc: Exception) -> Exception:
    """What the request whose record failed is answered: the database away stays itself (503),
    a value it refuses is the request's fault (422), anything else is ours (500); neither
    quotes the driver's message beyond its first line."""
    if isinstance(exc, OperationalError | InterfaceError):
        return exc
    if isinstance(exc, DataError):
        return InvalidRequest(
            "the database refused a value of this call's record "
            f"({first_line(exc.orig or exc)}); nothing was recorded and no answer is given"
        )
    return AppError("this call could not be recorded; no answer is given for an unrecorded call")


class PredictionWriter:
    """Writes prediction rows in shared transactions on one thread of its own.

    Parameters
    ----------
    factory:
        The app's session factory.
    max_rows:
        Most rows in one transaction; more wait for the next one.
    """

    def __init__(self, factory: sessionmaker[Session], *, max_rows: int = 1024) -> None:
        self._factory = factory
        self._max_rows = max_rows
        self._pending: list[tuple[dict[str, Any], asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="db-writer")
        self.transactions = 0  # committed so far (the tests read it)

    async def record(
        self,
        *,
        request_id: str,
        task: str,
        model_name: str,
        model_version: int,
        sample_ids: list[str],
        outputs: list[dict[str, Any]] | None,
        gene_overlap: float,
    ) -> None:
        """Record one prediction call; returns once its row is committed (raises if it was not)."""
        # stamped here, in the request's context: the writer thread does not see its contextvars
        row = {
            "id": uuid.uuid4(),
            "created_at": utcnow(),
            "request_id": request_id,
            "task": task,
            "model_name": model_name,
            "model_version": model_version,
            "n_samples": len(sample_ids),
            "sample_ids": sample_ids,
            "outputs": outputs,
            "gene_overlap": gene_overlap,
            "api_key_id": api_key_id_var.get(),
            "tenant": tenant_var.get(),
            "idempotency_key": idempotency_key_var.get(),
        }
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((row, done))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())
        # shielded: a request cancelled (timed out) while waiting must not cancel the shared write
        await asyncio.shield(done)

    async def _flush(self) -> None:
        try:
            while self._pending:
                group = self._pending[: self._max_rows]
                del self._pending[: self._max_rows]
                await self._commit(group)
        finally:
            self._flusher = None

    async def _commit(self, group: Pending) -> None:
        """Write `group` in one transaction; if its rows are at fault, each half on its own."""
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._thread, self._write, [row for row, _ in group])
        except Exception as exc:
            if len(group) == 1 or isinstance(exc, OperationalError | InterfaceError):
                log.error("%d prediction record(s) not written: %s", len(group), first_line(exc))
                for _, done in group:
                    if not done.done():
                        done.set_exception(_answer(exc))
                return
            log.warning(
                "a transaction of %d prediction records failed (%s); writing it in halves",
                len(group),
                first_line(exc),
            )
            half = len(group) // 2
            await self._commit(group[:half])
            await self._commit(group[half:])
            return
        self.transactions += 1
        for _, done in group:
            if not done.done():
                done.set_result(None)

    def _write(self, rows: list[dict[str, Any]]) -> None:
        with self._factory.begin() as session:
            repository.add_predictions(session, rows)

    async def close(self) -> None:
        """Let the rows already queued be written, then stop the writer thread."""
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
        self._thread.shutdown(wait=True)
