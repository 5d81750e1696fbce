"""Idempotency-Key on POSTs, as a pure ASGI middleware backed by the database.

The first request with a key claims it (a unique row, so concurrent duplicates cannot both run)
and stores its answer; a retry with the same key and body gets that answer replayed, the same key
with another body is a 422, and a retry while the first still runs is a 409. Keys are namespaced by
the caller's credentials, so a replay never reaches someone who could not make the request.
Records live `idempotency_ttl_hours`: each claim deletes the expired ones (an index range on
created_at) in its own transaction, so stored answers, which may hold results, are not kept for
ever.
"""

from __future__ import annotations

import logging
import re
from datetime import timedelta

from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.audit import idempotency_key_var
from app.db.repository import idempotency as repo
from app.db.tables import IdempotencyRecord
from app.errors import (
    AppError,
    IdempotencyConflict,
    InvalidRequest,
    KeyReused,
    ServiceUnavailable,
    problem_json,
)
from contract.card import sha256_of

log = logging.getLogger(__name__)
_VALID_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
# headers worth replaying; hop-by-hop and per-response ones are not
_REPLAYED = {b"content-type", b"location"}
# answers that hold a secret (a new API key) are never stored, so never replayed
_NOT_STORED = ("/v1/keys",)


class Idempotency:
    """Replays the first answer to a POST retried with the same Idempotency-Key."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope.get("headers", [])) if scope["type"] == "http" else {}
        raw_key = headers.get(b"idempotency-key")
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or raw_key is None
            or scope.get("path", "").startswith(_NOT_STORED)
        ):
            await self.app(scope, receive, send)
            return
        key = raw_key.decode("latin-1")
        path = scope.get("path", "")
        if not _VALID_KEY.match(key):
            await _problem(
                send, InvalidRequest("Idempotency-Key must be 1-255 visible ASCII"), path
            )
            return
        body, more = bytearray(), True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left
            body += message.get("body", b"")
            more = message.get("more_body", False)
        credentials = headers.get(b"authorization", b"") + b"\0" + headers.get(b"x-api-key", b"")
        scope_key = sha256_of(credentials, b"\0", key.encode())
        fingerprint = sha256_of(
            path.encode(), b"?", scope.get("query_string", b""), b"\0", bytes(body)
        )
        factory: sessionmaker[Session] = scope["app"].state.sessionmaker
        ttl = timedelta(hours=scope["app"].state.settings.idempotency_ttl_hours)
        try:
            claimed = await run_in_threadpool(_claim, factory, scope_key, fingerprint, ttl)
        except OperationalError:
            error = ServiceUnavailable("The database cannot be reached; try again shortly.")
            await _problem(send, error, path)
            return
        if claimed is not None:
            await _answer_from_record(send, claimed, fingerprint, path)
            return
        await self._run_and_store(scope, send, bytes(body), key, factory, scope_key)

    async def _run_and_store(
        self,
        scope: Scope,
        send: Send,
        body: bytes,
        key: str,
        factory: sessionmaker[Session],
        scope_key: str,
    ) -> None:
        sent = False

        async def replay_body() -> Message:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        status, chunks = 500, bytearray()
        out_headers: list[list[str]] = []
        stored = False

        async def store() -> None:
            nonlocal stored
            stored = True
            kept = [h for h in out_headers if h[0].encode().lower() in _REPLAYED]
            try:
                await run_in_threadpool(_finish, factory, scope_key, status, kept, bytes(chunks))
            except OperationalError:
                log.error("could not store the answer for Idempotency-Key %s", key)

        async def capture(message: Message) -> None:
            nonlocal status, out_headers
            if message["type"] == "http.response.start":
                status = message["status"]
                out_headers = [[k.decode(), v.decode()] for k, v in message.get("headers", [])]
            elif message["type"] == "http.response.body":
                chunks.extend(message.get("body", b""))
                if not message.get("more_body", False):
                    # stored before the client has the whole answer, so its retry finds it
                    await store()
            await send(message)

        token = idempotency_key_var.set(key)
        try:
            await self.app(scope, replay_body, capture)
        finally:
            idempotency_key_var.reset(token)
            if not stored:  # the app failed before answering in full: free the key
                status = 500
                await store()


def _claim(
    factory: sessionmaker[Session], scope_key: str, fingerprint: str, ttl: timedelta
) -> IdempotencyRecord | None:
    """None when this request claimed the key; else the existing (unexpired) record."""
    with factory() as session:
        # one transaction: an expired record of this key is gone before the insert; if the key
        # is taken (unexpired) the rollback keeps the other expired rows for the next claim
        repo.purge_expired(session, ttl)
        try:
            repo.claim(session, scope_key, fingerprint)
            session.commit()
            return None
        except IntegrityError:
            session.rollback()
        return repo.get(session, scope_key)


def _finish(
    factory: sessionmaker[Session],
    scope_key: str,
    status: int,
    headers: list[list[str]],
    body: bytes,
) -> None:
    with factory.begin() as session:
        if status >= 500:
            # nothing was done (or we cannot tell): free the key so that a retry runs again
            repo.release(session, scope_key)
        else:
            repo.store_answer(session, scope_key, status_code=status, headers=headers, body=body)


async def _answer_from_record(
    send: Send, record: IdempotencyRecord, fingerprint: str, path: str
) -> None:
    if record.request_sha256 != fingerprint:
        error = KeyReused("this Idempotency-Key was used with a different request; use a new key")
        await _problem(send, error, path)
        return
    if record.status_code is None or record.body is None:
        await _problem(send, IdempotencyConflict("retry once the first request answered"), path)
        return
    headers = [(k.encode(), v.encode()) for k, v in record.headers or []]
    headers += [(b"idempotent-replayed", b"true"), (b"content-length", b"%d" % len(record.body))]
    await send({"type": "http.response.start", "status": record.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": record.body})


async def _problem(send: Send, error: AppError, path: str) -> None:
    response = problem_json(error.to_problem(instance=path), error.status, error.headers)
    await send(
        {"type": "http.response.start", "status": error.status, "headers": response.raw_headers}
    )
    await send({"type": "http.response.body", "body": response.body})
