"""Whose rows a query may touch: the filter every query that returns or changes a row applies.

A `Tenancy` comes from the caller (`app.security.Caller.tenancy`): one tenant's rows, or every
tenant's for an admin key. Queries take it as a keyword, so no query forgets it silently: a row
of another tenant is simply not found (a 404, which does not tell that it exists).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, true
from sqlalchemy.orm import InstrumentedAttribute


@dataclass(frozen=True)
class Tenancy:
    """One tenant's rows, or (`all_tenants`, admin keys) everyone's."""

    tenant: str
    all_tenants: bool = False

    def where(self, column: InstrumentedAttribute[str]) -> ColumnElement[bool]:
        """The condition on a table's tenant column."""
        if self.all_tenants:
            return true()
        return column == self.tenant

    def owns(self, tenant: str | None) -> bool:
        """Whether a row of `tenant` is visible (for rows already loaded by another key)."""
        return self.all_tenants or tenant == self.tenant
