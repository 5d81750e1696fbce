"""API keys and the caller they make: a tenant, scopes, and what that caller may see.

A key reads `gx_<prefix>_<secret>`: the prefix finds the row, the sha256 of the whole key is
compared in constant time. Keys carry 256 bits of randomness, so a plain (unsalted) hash suffices.
Every key belongs to a tenant; the `Caller` it makes carries the `Tenancy` that every query for
the request filters by (`app.db.repository`). Keys are checked against the database on every
request, so a revoked or expired key is refused from the next call on; their last use is written
at most once a minute (`LAST_USED_EVERY`). With auth off everything belongs to the one default
tenant and every caller may do everything (`EMBEDDED`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from fastapi import Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.audit import api_key_id_var, tenant_var
from app.caller import ANONYMOUS, EMBEDDED, SCOPES, Caller, Scope
from app.db import repository
from app.db.base import utcnow
from app.db.repository import audit, keys
from app.db.repository.audit import Actor
from app.db.tables import DEFAULT_TENANT, TENANT_PATTERN, ApiKey
from app.errors import Forbidden, TooManyRequests, Unauthorized
from app.ratelimit import RateLimiter

LAST_USED_EVERY = timedelta(minutes=1)
CLI = Actor(label="genexfer keys (CLI)")
_TENANT = re.compile(TENANT_PATTERN)


def hash_key(key: str) -> str:
    """The stored form of a key."""
    return hashlib.sha256(key.encode()).hexdigest()


def check_tenant(name: str) -> str:
    """`name` if it is a valid tenant name, else ValueError."""
    if not _TENANT.fullmatch(name):
        raise ValueError(
            f"tenant {name!r} must be 1-64 characters of a-z, 0-9, '.', '_', '-', "
            "starting with a letter or digit"
        )
    return name


def parse_duration(text: str) -> timedelta:
    """'90d', '12h', '30m', '2w' or '45s' as a timedelta (ValueError otherwise)."""
    match = re.fullmatch(r"\s*(\d+)\s*([smhdw])\s*", text)
    if match is None or int(match[1]) == 0:
        raise ValueError(f"a duration reads like 90d, 12h, 30m, 2w or 45s, got {text!r}")
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[match[2]]
    return timedelta(**{unit: int(match[1])})


def key_label(row: ApiKey) -> str:
    """How logs and the audit log name a key: its public prefix and its name."""
    return f"key {row.prefix} ({row.name})"


def create_key(
    session: Session,
    *,
    name: str,
    scopes: list[str],
    tenant: str = DEFAULT_TENANT,
    expires_at: datetime | None = None,
    actor: Actor = CLI,
    rotated_from: uuid.UUID | None = None,
) -> tuple[ApiKey, str]:
    """Store a new key (and its audit row); returns the row and the only copy of the plain key."""
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise ValueError(f"scopes must be a non-empty subset of {SCOPES}, got {scopes}")
    if not name.strip() or len(name) > 128:
        raise ValueError("a key's name must be 1-128 characters")
    check_tenant(tenant)
    prefix = secrets.token_hex(6)
    key = f"gx_{prefix}_{secrets.token_urlsafe(32)}"
    row = ApiKey(
        name=name,
        prefix=prefix,
        key_sha256=hash_key(key),
        scopes=sorted(set(scopes)),
        tenant=tenant,
        expires_at=expires_at,
        rotated_from=rotated_from,
    )
    repository.add(session, row)
    _audit(session, actor, "key.create", row, scopes=row.scopes, expires_at=expires_at)
    return row, key


def revoke_key(session: Session, row: ApiKey, *, actor: Actor, at: datetime | None = None) -> None:
    """Refuse the key from `at` (default now) on; revoking it again changes nothing."""
    at = at or utcnow()
    if row.revoked_at is not None and row.revoked_at <= at:
        return
    keys.revoke(session, row, at)
    _audit(session, actor, "key.revoke", row, revoked_at=at)


def rotate_key(
    session: Session,
    row: ApiKey,
    *,
    actor: Actor,
    expires_at: datetime | None,
    grace: timedelta = timedelta(0),
) -> tuple[ApiKey, str]:
    """A new key with the old one's name, tenant and scopes; the old one stops after `grace`."""
    if key_state(row) != "active":
        raise ValueError(f"key {row.prefix} is {key_state(row)}; only an active key is rotated")
    new, key = create_key(
        session,
        name=row.name,
        scopes=list(row.scopes),
        tenant=row.tenant,
        expires_at=expires_at,
        actor=actor,
        rotated_from=row.id,
    )
    keys.revoke(session, row, utcnow() + grace)
    _audit(session, actor, "key.rotate", row, replaced_by=new.prefix, old_key_until=row.revoked_at)
    return new, key


def _audit(session: Session, actor: Actor, action: str, row: ApiKey, **detail: object) -> None:
    audit.record(
        session,
        actor,
        action,
        resource_type="key",
        resource_id=row.prefix,
        resource_tenant=row.tenant,
        name=row.name,
        **{k: v.isoformat() if isinstance(v, datetime) else v for k, v in detail.items()},
    )


def key_state(row: ApiKey, now: datetime | None = None) -> str:
    """active, revoked or expired (a rotated key is active until its grace period ends)."""
    now = now or utcnow()
    if row.revoked_at is not None and row.revoked_at <= now:
        return "revoked"
    if row.expires_at is not None and row.expires_at <= now:
        return "expired"
    return "active"


def verify_key(session: Session, key: str) -> ApiKey | None:
    """The live (not revoked, not expired) key row matching `key`, or None."""
    parts = key.split("_")
    if len(parts) < 3 or parts[0] != "gx":
        return None
    row = keys.by_prefix(session, parts[1])
    if row is None or key_state(row) != "active":
        return None
    return row if hmac.compare_digest(row.key_sha256, hash_key(key)) else None


def presented_key(request: Request) -> str | None:
    """The key from `Authorization: Bearer …` or `X-API-Key`."""
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.headers.get("x-api-key")


async def authenticate(request: Request) -> Caller:
    """The request's caller (once per request): EMBEDDED with auth off, ANONYMOUS without a
    key, the key's caller for a valid key; Unauthorized for a key that is not valid."""
    known: Caller | None = getattr(request.state, "caller", None)
    if known is not None:
        return known
    caller = EMBEDDED
    if request.app.state.settings.auth_enabled:
        key = presented_key(request)
        caller = ANONYMOUS if not key else await run_in_threadpool(_lookup, request, key)
    # set here, in an async dependency: the endpoint (and its threads) inherit this context
    request.state.caller = caller
    api_key_id_var.set(caller.key_id)
    tenant_var.set(caller.tenant or DEFAULT_TENANT)
    return caller


def require(scope: Scope) -> Callable[[Request], Awaitable[None]]:
    """A dependency that admits a key with `scope` (admin admits everything)."""

    async def check(request: Request) -> None:
        caller = await authenticate(request)
        if caller.tenant is None:
            raise Unauthorized("send an API key: 'Authorization: Bearer <key>' or 'X-API-Key'")
        if scope not in caller.scopes and not caller.admin:
            raise Forbidden(
                f"this key has scopes {sorted(caller.scopes)}; the request needs {scope!r}"
            )
        await _within_rate(request, caller)

    return check


async def _within_rate(request: Request, caller: Caller) -> None:
    """Take a token from the key's bucket (once per request); TooManyRequests if it is empty."""
    limiter: RateLimiter | None = getattr(request.app.state, "limiter", None)
    if limiter is None or getattr(request.state, "rate_taken", False):
        return
    request.state.rate_taken = True
    wait = await limiter.take(str(caller.key_id or "embedded"))
    if wait > 0:
        settings = request.app.state.settings
        request.app.state.metrics.rate_limited.inc()
        raise TooManyRequests(
            f"this API key is over its rate of {settings.rate_limit_per_s:g} requests per second "
            f"(bursts of {settings.rate_limit_burst}); retry in {wait:.2f} s",
            retry_after_s=wait,
        )


def _lookup(request: Request, key: str) -> Caller:
    with request.app.state.sessionmaker() as session:
        row = verify_key(session, key)
        if row is None:
            raise Unauthorized("the API key is not valid (unknown, mistyped, revoked or expired)")
        now = utcnow()
        if row.last_used_at is None or row.last_used_at < now - LAST_USED_EVERY:
            keys.touch(session, row.id, now, LAST_USED_EVERY)
            session.commit()
        return Caller(row.tenant, frozenset(row.scopes), row.id, key_label(row))
