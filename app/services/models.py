"""Model names and aliases: who may publish under a name, and moving an alias (recorded).

A job may publish under a name its tenant owns, or under a new name, which its tenant then owns
(claimed at submission, so two labs cannot race for it). A name another tenant owns is a 403,
and so is a name of the operator's (a demo model, one trained offline) unless the key is an
admin's; then, so that the new version takes no traffic until someone promotes it, the version
serving unpinned requests now is pinned as `production` first.
"""

from __future__ import annotations

import re

from sqlalchemy.orm import Session

from app.db.repository import audit
from app.db.repository import models as repo
from app.db.repository.audit import Actor
from app.errors import InvalidRequest, NotFound, NotOwner
from app.inference.registry import ModelRegistry
from app.inference.routing import LATEST, PRODUCTION

ALIAS = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


def reserve_for_job(
    session: Session, *, name: str, actor: Actor, admin: bool, registry: ModelRegistry
) -> None:
    """Let a job of `actor` publish under `name`, claiming the name if it is new; else
    Forbidden."""
    assert actor.tenant is not None  # jobs are submitted with a key (or auth off)
    owner = repo.owner(session, name)
    if owner is None and registry.on_disk(name):
        if not admin:
            raise NotOwner(
                f"the model name {name!r} is the operator's (a model published outside the "
                "service); only an admin key may publish a version of it: choose another "
                "output_name"
            )
        _pin_current(session, name, actor, registry)
        return
    if owner is None:
        owner, claimed = repo.claim_name(
            session, name, tenant=actor.tenant, api_key_id=actor.api_key_id
        )
        if claimed:
            _audit(session, actor, "model.claim", name, owner)
    if owner != actor.tenant and not admin:
        raise NotOwner(
            f"the model name {name!r} belongs to another tenant; choose another output_name"
        )


def _pin_current(session: Session, name: str, actor: Actor, registry: ModelRegistry) -> None:
    """Point `production` at the version unpinned requests get now, if nothing does yet."""
    if PRODUCTION in repo.aliases(session, name):
        return
    version, rule = registry.default_version(name)
    if version is None:
        return
    repo.set_alias(session, name, PRODUCTION, version, api_key_id=actor.api_key_id)
    _audit(
        session,
        actor,
        "model.alias.set",
        name,
        None,
        alias=PRODUCTION,
        version=version,
        previous=None,
        reason=f"pinned before a job publishes a new version (it was the {rule})",
    )


def _visible_owner(
    session: Session, name: str, actor: Actor, admin: bool, registry: ModelRegistry
) -> str | None:
    """The owner of a model the actor may change, else NotFound (none, or another tenant's) or
    NotOwner (the operator's, for a non-admin)."""
    owner = repo.owner(session, name)
    hidden = owner is not None and owner != actor.tenant and not admin
    if hidden or not registry.on_disk(name):
        raise NotFound(f"no model named {name!r}; GET /v1/models lists them")
    if owner is None and not admin:
        raise NotOwner(f"{name!r} is the operator's model; only an admin key may move its aliases")
    return owner


def set_alias(
    session: Session,
    *,
    name: str,
    alias: str,
    version: int,
    actor: Actor,
    admin: bool,
    registry: ModelRegistry,
) -> int | None:
    """Point `alias` of `name` at `version` (recorded); returns the version it pointed at."""
    check_alias(alias)
    owner = _visible_owner(session, name, actor, admin, registry)
    versions = registry.on_disk(name)
    if version not in versions:
        raise NotFound(f"model {name!r} has no version {version}; it has {versions}")
    error = registry.load_error(name, version)
    if error is not None:
        raise InvalidRequest(f"{name} version {version} does not load: {error}")
    before = repo.set_alias(session, name, alias, version, api_key_id=actor.api_key_id)
    _audit(
        session,
        actor,
        "model.alias.set",
        name,
        owner,
        alias=alias,
        version=version,
        previous=before,
    )
    return before


def delete_alias(
    session: Session,
    *,
    name: str,
    alias: str,
    actor: Actor,
    admin: bool,
    registry: ModelRegistry,
) -> None:
    """Remove an alias (recorded); NotFound if there is none."""
    check_alias(alias)
    owner = _visible_owner(session, name, actor, admin, registry)
    before = repo.delete_alias(session, name, alias)
    if before is None:
        raise NotFound(f"model {name!r} has no alias {alias!r}")
    _audit(session, actor, "model.alias.delete", name, owner, alias=alias, previous=before)


def check_alias(alias: str) -> str:
    """`alias` if it may name an alias, else InvalidRequest."""
    if not ALIAS.fullmatch(alias) or alias == LATEST:
        raise InvalidRequest(
            f"an alias is 1-32 characters of a-z, 0-9, '_', '-', starting with a letter, and "
            f"not {LATEST!r} (which always means the newest version); got {alias!r}"
        )
    return alias


def _audit(
    session: Session, actor: Actor, action: str, name: str, owner: str | None, **detail: object
) -> None:
    audit.record(
        session,
        actor,
        action,
        resource_type="model",
        resource_id=name,
        resource_tenant=owner,
        **detail,
    )
