"""Who asked, under which Idempotency-Key: stamped on every prediction row as it is inserted.

The predict endpoints stay unaware of auth and idempotency: the middleware and the auth dependency
set these context variables, and a mapper event copies them onto new Prediction rows.
"""

from __future__ import annotations

import contextvars
import uuid
from typing import Any

from sqlalchemy import event

from app.db.tables import Prediction

api_key_id_var: contextvars.ContextVar[uuid.UUID | None] = contextvars.ContextVar(
    "api_key_id", default=None
)
idempotency_key_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "idempotency_key", default=None
)


@event.listens_for(Prediction, "before_insert")
def _stamp(_mapper: Any, _connection: Any, row: Prediction) -> None:
    if row.api_key_id is None:
        row.api_key_id = api_key_id_var.get()
    if row.idempotency_key is None:
        row.idempotency_key = idempotency_key_var.get()
