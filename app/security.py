"""API keys: random tokens stored as sha256 hashes, with scopes, checked by FastAPI dependencies.

A key reads `gx_<prefix>_<secret>`: the prefix finds the row, the sha256 of the whole key is
compared in constant time. Keys carry 256 bits of randomness, so a plain (unsalted) hash suffices.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from collections.abc import Awaitable, Callable
from typing import Literal

from fastapi import Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.audit import api_key_id_var
from app.db import repository
from app.db.repository import keys
from app.db.tables import ApiKey
from app.errors import Forbidden, Unauthorized

Scope = Literal["predict", "train", "admin"]
SCOPES: tuple[Scope, ...] = ("predict", "train", "admin")


def hash_key(key: str) -> str:
    """The stored form of a key."""
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(session: Session, *, name: str, scopes: list[str]) -> tuple[ApiKey, str]:
    """Store a new key; returns the row and the only copy of the plain key."""
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise ValueError(f"scopes must be a non-empty subset of {SCOPES}, got {scopes}")
    prefix = secrets.token_hex(6)
    key = f"gx_{prefix}_{secrets.token_urlsafe(32)}"
    row = ApiKey(name=name, prefix=prefix, key_sha256=hash_key(key), scopes=sorted(set(scopes)))
    return repository.add(session, row), key


def verify_key(session: Session, key: str) -> ApiKey | None:
    """The live key row matching `key`, or None."""
    parts = key.split("_")
    if len(parts) < 3 or parts[0] != "gx":
        return None
    row = keys.by_prefix(session, parts[1])
    if row is None or row.revoked_at is not None:
        return None
    return row if hmac.compare_digest(row.key_sha256, hash_key(key)) else None


def presented_key(request: Request) -> str | None:
    """The key from `Authorization: Bearer …` or `X-API-Key`."""
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.headers.get("x-api-key")


def require(scope: Scope) -> Callable[[Request], Awaitable[None]]:
    """A dependency that admits a key with `scope` (admin admits everything)."""

    # async, so the key id it sets is in the context the endpoint (and its threads) inherit
    async def check(request: Request) -> None:
        if not request.app.state.settings.auth_enabled:
            return
        key = presented_key(request)
        if not key:
            raise Unauthorized("send an API key: 'Authorization: Bearer <key>' or 'X-API-Key'")
        row = await run_in_threadpool(_lookup, request, key)
        if row is None:
            raise Unauthorized("the API key is not valid (unknown, mistyped or revoked)")
        if scope not in row[1] and "admin" not in row[1]:
            raise Forbidden(f"this key has scopes {row[1]}; the request needs {scope!r}")
        request.state.api_key_id = row[0]
        api_key_id_var.set(row[0])

    return check


def _lookup(request: Request, key: str) -> tuple[uuid.UUID, list[str]] | None:
    with request.app.state.sessionmaker() as session:
        row = verify_key(session, key)
        return None if row is None else (row.id, list(row.scopes))


def current_key_id(request: Request) -> uuid.UUID | None:
    """The id of the key that authenticated this request (None when auth is off)."""
    key_id: uuid.UUID | None = getattr(request.state, "api_key_id", None)
    return key_id
