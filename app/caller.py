"""Who is calling: a key's tenant and scopes, and what that caller may see and change.

Made by `app.security.authenticate` once per request and handed to the services, which pass its
`tenancy` to every query (`app.db.repository`) and its `actor` to the audit log.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal

from app.db.repository.audit import Actor
from app.db.repository.tenancy import Tenancy
from app.db.tables import DEFAULT_TENANT
from app.errors import Unauthorized

Scope = Literal["predict", "train", "admin"]
SCOPES: tuple[Scope, ...] = ("predict", "train", "admin")


@dataclass(frozen=True)
class Caller:
    """A key's tenant and scopes (tenant None: no key was sent while auth is on)."""

    tenant: str | None
    scopes: frozenset[str]
    key_id: uuid.UUID | None = None
    label: str = "anonymous"

    @property
    def admin(self) -> bool:
        return "admin" in self.scopes

    @property
    def tenancy(self) -> Tenancy:
        """Whose rows this caller's queries see: its tenant's, or everyone's for an admin."""
        if self.tenant is None:
            raise Unauthorized("send an API key: 'Authorization: Bearer <key>' or 'X-API-Key'")
        return Tenancy(self.tenant, all_tenants=self.admin)

    def sees(self, owner: str | None) -> bool:
        """Whether a model whose name `owner` owns is visible (None: the operator's, public)."""
        return owner is None or self.admin or owner == self.tenant

    def actor(self, request_id: str | None = None) -> Actor:
        """This caller as the audit log names it."""
        return Actor(self.label, self.tenant, self.key_id, request_id)


# auth off: one default tenant, and the one lab using the service may do everything
EMBEDDED = Caller(DEFAULT_TENANT, frozenset(SCOPES), label="auth off (embedded)")
ANONYMOUS = Caller(None, frozenset())
