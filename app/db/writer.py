"""Group commit for prediction records: the rows of concurrent requests share one transaction.

Each request still waits until its own row is committed before it answers, so no answer is ever
sent for a call whose record could still be lost; what is shared is the transaction (one commit,
one thread hop, one multi-row INSERT) instead of a session, a flush and a commit per request.
While one transaction is being written, the rows that arrive meanwhile queue up and form the next
one, so an idle service writes every row at once (no added wait) and a busy one writes many per
commit. A failed transaction fails every request whose row was in it; the next one starts afresh.
"""

from __future__ import annotations

import asyncio
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from app.audit import api_key_id_var, idempotency_key_var, tenant_var
from app.db.base import utcnow
from app.db.repository import predictions as repository


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
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                group = self._pending[: self._max_rows]
                del self._pending[: self._max_rows]
                rows = [row for row, _ in group]
                try:
                    await loop.run_in_executor(self._thread, self._write, rows)
                except Exception as exc:
                    for _, done in group:
                        if not done.done():
                            done.set_exception(exc)
                    continue
                self.transactions += 1
                for _, done in group:
                    if not done.done():
                        done.set_result(None)
        finally:
            self._flusher = None

    def _write(self, rows: list[dict[str, Any]]) -> None:
        with self._factory.begin() as session:
            repository.add_predictions(session, rows)

    async def close(self) -> None:
        """Let the rows already queued be written, then stop the writer thread."""
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
        self._thread.shutdown(wait=True)
