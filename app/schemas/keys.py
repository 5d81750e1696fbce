"""Bodies of /v1/keys (admin) and /v1/audit (admin)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.caller import Scope
from app.db.tables import DEFAULT_TENANT, TENANT_PATTERN
from app.schemas.text import Text


class KeyRead(BaseModel):
    id: uuid.UUID
    prefix: str = Field(description="The public part of the key (`gx_<prefix>_...`).")
    name: str
    tenant: str
    scopes: list[str]
    state: str = Field(description="active, revoked or expired.")
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None = Field(description="Updated at most once a minute.")
    revoked_at: datetime | None = Field(
        description="When it stops or stopped working (a rotated key: after its grace period)."
    )
    rotated_from: uuid.UUID | None


class KeyList(BaseModel):
    keys: list[KeyRead]


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Text = Field(min_length=1, max_length=128, description="Who or what uses the key.")
    tenant: str = Field(default=DEFAULT_TENANT, pattern=TENANT_PATTERN)
    scopes: list[Scope] = Field(default=["predict"], min_length=1)
    expires_in_days: float | None = Field(
        default=None, gt=0, le=3650, description="None: the key does not expire."
    )


class KeyRotate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    expires_in_days: float | None = Field(default=None, gt=0, le=3650)
    grace_seconds: float = Field(
        default=0, ge=0, le=30 * 86400, description="How long the old key keeps working."
    )


class KeyCreated(KeyRead):
    key: str = Field(description="The key itself: shown once, only its sha256 is stored.")


class AuditRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    created_at: datetime
    action: str
    actor: str
    tenant: str | None = Field(description="The actor's tenant.")
    api_key_id: uuid.UUID | None
    resource_type: str
    resource_id: str
    resource_tenant: str | None
    request_id: str | None
    detail: dict[str, Any]


class AuditList(BaseModel):
    events: list[AuditRead]
