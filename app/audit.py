"""Who asked, under which Idempotency-Key: stamped on every prediction row.

The predict endpoints stay unaware of auth and idempotency: the middleware and the auth dependency
set these context variables, and the prediction writer (`app.db.writer`) copies them onto each row
in the request's own context.
"""

from __future__ import annotations

import contextvars
import uuid

api_key_id_var: contextvars.ContextVar[uuid.UUID | None] = contextvars.ContextVar(
    "api_key_id", default=None
)
idempotency_key_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "idempotency_key", default=None
)
