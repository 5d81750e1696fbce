"""GET /v1/models and /v1/models/{name}: what is served and how to call it."""

from __future__ import annotations

from itertools import groupby

from fastapi import APIRouter

from app.api.deps import RegistryDep
from app.errors import documented
from app.inference.registry import LoadedModel
from app.schemas.models import ModelList, ModelRead, ModelVersionDetail, ModelVersionRead

router = APIRouter(prefix="/v1/models", tags=["models"])

NOT_FOUND = documented(e404="No such model or version")


def _version(m: LoadedModel) -> ModelVersionRead:
    c = m.card
    return ModelVersionRead(
        name=c.name,
        version=c.version,
        kind=c.kind,
        description=c.description,
        created_at=c.created_at,
        input_scale=c.input_scale,
        n_genes=c.n_genes,
        labels=c.labels,
        outputs=c.outputs,
        metrics=c.metrics,
        parent=c.parent,
        providers=m.backend.providers,
    )


def _model(versions: list[LoadedModel]) -> ModelRead:
    return ModelRead(
        name=versions[0].card.name,
        latest_version=max(m.card.version for m in versions),
        versions=[_version(m) for m in versions],
    )


@router.get("", response_model=ModelList, summary="Every served model and its versions")
def list_models(registry: RegistryDep) -> ModelList:
    grouped = groupby(registry.models(), key=lambda m: m.card.name)
    return ModelList(models=[_model(list(versions)) for _, versions in grouped])


@router.get(
    "/{name}",
    response_model=ModelVersionDetail,
    summary="A model's latest version: kind, labels, metrics and its input gene panel",
    responses=NOT_FOUND,
)
def get_model(name: str, registry: RegistryDep, version: int | None = None) -> ModelVersionDetail:
    m = registry.get(name, version)
    return ModelVersionDetail(
        **_version(m).model_dump(),
        genes=m.card.panel.ids,
        gene_aliases=m.card.panel.aliases,
    )
