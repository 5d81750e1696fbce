"""Who asked, in which tenant, under which Idempotency-Key: stamped on every prediction row.

The predict endpoints stay unaware of auth and idempotency: the middleware and the auth dependency
set these context variables, and the prediction writer (`app.db.writer`) copies them onto each row
in the request's own context. (The audit log of changes is `app.db.repository.audit`.)
"""

from __future__ import annotations

import contextvars
import uuid

from app.db.tables import DEFAULT_TENANT

api_key_id_var: contextvars.ContextVar[uuid.UUID | None] = contextvars.ContextVar(
    "api_key_id", default=None
)
# auth off: everything belongs to the one default tenant; auth on: the key's (app.security)
tenant_var: contextvars.ContextVar[str] = contextvars.ContextVar("tenant", default=DEFAULT_TENANT)
idempotency_key_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "idempotency_key", default=None
)
