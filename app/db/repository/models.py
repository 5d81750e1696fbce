"""Who owns each model name and where its aliases point. They flush, never commit.

A name belongs to the tenant whose job first claimed it (`claim_name`, at the job's submission);
a name with no row is the operator's (demo models, models trained offline) and visible to every
tenant. Aliases (`production`, ...) are rows too, so moving one is a recorded, transactional
change that every API replica reads at its next model scan (`routes`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.db.tables import ModelAlias, ModelName


@dataclass(frozen=True)
class Route:
    """What the registry needs to route a model name: its owner and its aliases."""

    owner: str | None = None
    aliases: dict[str, int] = field(default_factory=dict)


def owner(session: Session, name: str) -> str | None:
    """The tenant that owns `name`, or None (the operator's, or not yet claimed)."""
    return session.scalar(select(ModelName.tenant).where(ModelName.name == name))


def claim_name(
    session: Session, name: str, *, tenant: str, api_key_id: uuid.UUID | None
) -> tuple[str, bool]:
    """Claim `name` for `tenant` unless someone owns it already; returns the owner and whether
    this call claimed it.

    The primary key settles two tenants claiming one name at once: the second insert fails in
    its savepoint and the first claimant is returned.
    """
    current = owner(session, name)
    if current is not None:
        return current, False
    try:
        with session.begin_nested():
            session.add(ModelName(name=name, tenant=tenant, api_key_id=api_key_id))
    except IntegrityError:
        winner = owner(session, name)
        assert winner is not None  # whoever won the race committed its row
        return winner, False
    return tenant, True


def aliases(session: Session, name: str) -> dict[str, int]:
    """The model's aliases: alias → version."""
    stmt = select(ModelAlias.alias, ModelAlias.version).where(ModelAlias.name == name)
    return {alias: version for alias, version in session.execute(stmt).all()}  # noqa: C416


def set_alias(
    session: Session, name: str, alias: str, version: int, *, api_key_id: uuid.UUID | None
) -> int | None:
    """Point `alias` at `version`; returns the version it pointed at before (None: new)."""
    row = session.get(ModelAlias, (name, alias), with_for_update=True)
    before = row.version if row is not None else None
    if row is None:
        session.add(ModelAlias(name=name, alias=alias, version=version, api_key_id=api_key_id))
    else:
        row.version, row.api_key_id, row.updated_at = version, api_key_id, utcnow()
    session.flush()
    return before


def delete_alias(session: Session, name: str, alias: str) -> int | None:
    """Remove `alias`; returns the version it pointed at (None: there was no such alias)."""
    before = aliases(session, name).get(alias)
    session.execute(delete(ModelAlias).where(ModelAlias.name == name, ModelAlias.alias == alias))
    session.flush()
    return before


def routes(session: Session) -> dict[str, Route]:
    """Every owned or aliased name's route (names with neither route by default)."""
    found: dict[str, Route] = {}
    for name, tenant in session.execute(select(ModelName.name, ModelName.tenant)):
        found[name] = Route(owner=tenant)
    rows: Sequence[ModelAlias] = session.scalars(select(ModelAlias)).all()
    for row in rows:
        route = found.setdefault(row.name, Route())
        route.aliases[row.alias] = row.version
    return found
