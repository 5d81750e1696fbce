"""/v1/models: what is served (to this caller) and how to call it; moving a model's aliases.

Listing and reading need no key, as before: without one they show the operator's models only
(with auth on); with a key, also the models its tenant owns (an admin's key: every model).
"""

from __future__ import annotations

from itertools import groupby

from fastapi import APIRouter, Depends, Response, status
from starlette.concurrency import run_in_threadpool

from app.api.deps import CallerDep, RegistryDep, RequestIdDep, SessionDep, SettingsDep
from app.errors import documented
from app.inference.registry import LoadedModel, ModelRegistry
from app.schemas.models import (
    AliasRead,
    AliasSet,
    ModelList,
    ModelRead,
    ModelVersionDetail,
    ModelVersionRead,
)
from app.security import require
from app.services import models

router = APIRouter(prefix="/v1/models", tags=["models"])

NOT_FOUND = documented(e404="No such model or version")
ALIAS_ERRORS = documented(
    e401="No API key",
    e403="The key lacks the train scope, or the model is the operator's (admin keys only)",
    e404="No such model (or another tenant's), version or alias",
    e422="Not an alias name, or the version does not load",
)


def _version(m: LoadedModel, registry: ModelRegistry) -> ModelVersionRead:
    c = m.card
    aliases = registry.route(c.name).aliases
    return ModelVersionRead(
        name=c.name,
        version=c.version,
        kind=c.kind,
        description=c.description,
        created_at=c.created_at,
        input_scale=c.input_scale,
        n_genes=c.n_genes,
        labels=c.labels,
        tasks=c.tasks,
        outputs=c.outputs,
        metrics=c.metrics,
        parent=c.parent,
        providers=m.backend.providers,
        aliases=sorted(a for a, v in aliases.items() if v == c.version),
        explain=c.explain if m.explainer is not None else None,
        selection=c.selection,
    )


def _model(versions: list[LoadedModel], registry: ModelRegistry) -> ModelRead:
    name = versions[0].card.name
    route = registry.route(name)
    default, rule = registry.default_version(name)
    return ModelRead(
        name=name,
        latest_version=max(m.card.version for m in versions),
        default_version=default,
        default_rule=rule,
        owner=route.owner,
        aliases=dict(sorted(route.aliases.items())),
        versions=[_version(m, registry) for m in versions],
    )


@router.get("", response_model=ModelList, summary="Every model this caller may use")
def list_models(registry: RegistryDep, caller: CallerDep) -> ModelList:
    grouped = groupby(registry.models(viewer=caller), key=lambda m: m.card.name)
    return ModelList(models=[_model(list(versions), registry) for _, versions in grouped])


@router.get(
    "/{name}",
    response_model=ModelVersionDetail,
    summary="A model's default (or pinned) version: kind, labels, metrics and gene panel",
    responses=NOT_FOUND,
)
def get_model(
    name: str, registry: RegistryDep, caller: CallerDep, version: int | None = None
) -> ModelVersionDetail:
    m = registry.get(name, version, viewer=caller)
    return ModelVersionDetail(
        **_version(m, registry).model_dump(),
        genes=m.card.panel.ids,
        gene_aliases=m.card.panel.aliases,
        modalities=m.card.modalities,
    )


@router.post(
    "/{name}/aliases/{alias}",
    response_model=AliasRead,
    summary="Point an alias (e.g. production) at a version; recorded in the audit log",
    responses=ALIAS_ERRORS,
    dependencies=[Depends(require("train"))],
)
@router.put(
    "/{name}/aliases/{alias}",
    response_model=AliasRead,
    include_in_schema=False,
    dependencies=[Depends(require("train"))],
)
async def set_alias(
    name: str,
    alias: str,
    body: AliasSet,
    session: SessionDep,
    caller: CallerDep,
    registry: RegistryDep,
    settings: SettingsDep,
    request_id: RequestIdDep,
) -> AliasRead:

    def change() -> int | None:
        previous = models.set_alias(
            session,
            name=name,
            alias=alias,
            version=body.version,
            actor=caller.actor(request_id),
            admin=caller.admin,
            registry=registry,
        )
        session.commit()  # before the registry reads the routes again
        return previous

    previous = await run_in_threadpool(change)
    # this replica routes by the new alias at once; the others at their next scan
    await registry.rescan(settings.drain_timeout_s)
    return AliasRead(name=name, alias=alias, version=body.version, previous=previous)


@router.delete(
    "/{name}/aliases/{alias}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove an alias; recorded in the audit log",
    responses=ALIAS_ERRORS,
    dependencies=[Depends(require("train"))],
)
async def delete_alias(
    name: str,
    alias: str,
    session: SessionDep,
    caller: CallerDep,
    registry: RegistryDep,
    settings: SettingsDep,
    request_id: RequestIdDep,
) -> Response:

    def change() -> None:
        models.delete_alias(
            session,
            name=name,
            alias=alias,
            actor=caller.actor(request_id),
            admin=caller.admin,
            registry=registry,
        )
        session.commit()

    await run_in_threadpool(change)
    await registry.rescan(settings.drain_timeout_s)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
