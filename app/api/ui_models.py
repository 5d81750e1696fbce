"""/ui/parts: the model fragments of the web app, for the models the key may use.

The models, predict and history pages hold no data; their lists of models and each model's
card come from here, with the key the page's htmx requests carry, so a lab sees its own models
and the operator's, as `GET /v1/models` lists them to the same key.
"""

from __future__ import annotations

from itertools import groupby
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from app.api.deps import CallerDep, RegistryDep, SettingsDep
from app.inference.registry import LoadedModel, ModelRegistry
from app.inference.routing import Viewer
from app.services import uploads
from app.ui.templating import render
from contract.card import ModelKind

router = APIRouter(prefix="/ui", include_in_schema=False)


def served(registry: ModelRegistry, viewer: Viewer) -> list[tuple[LoadedModel, list[int]]]:
    """Each model's default version (what a request naming none gets) and all its versions."""
    out = []
    for name, group in groupby(registry.models(viewer=viewer), key=lambda m: m.card.name):
        versions = {m.card.version: m for m in group}
        default, _ = registry.default_version(name)
        shown = versions.get(default or 0) or versions[max(versions)]
        out.append((shown, sorted(versions)))
    return out


@router.get("/parts/models")
def models_part(request: Request, registry: RegistryDep, caller: CallerDep) -> HTMLResponse:
    """The model cards this caller may use (no key, auth on: the operator's only)."""
    models = []
    for m, versions in served(registry, caller):
        route = registry.route(m.card.name)
        _, rule = registry.default_version(m.card.name)
        models.append(
            {
                "card": m.card,
                "versions": versions,
                "rule": rule,
                "aliases": route.aliases,
                "owner": route.owner,
            }
        )
    errors = [e for e in registry.errors if caller.sees(registry.route(_name_of(e.path)).owner)]
    return render(request, "parts/models.html", models=models, errors=errors)


def _name_of(path: str) -> str:
    return path.rstrip("/").rsplit("/", 2)[-2]


@router.get("/parts/models/{name}")
def model_part(
    request: Request,
    name: str,
    registry: RegistryDep,
    settings: SettingsDep,
    caller: CallerDep,
    version: Annotated[int | None, Query(ge=1)] = None,
) -> HTMLResponse:
    """One model's card (its default version unless `version` pins one)."""
    model = registry.get(name, version, viewer=caller)
    card = model.card
    versions = sorted(m.card.version for m in registry.models(viewer=caller) if m.card.name == name)
    default, rule = registry.default_version(card.name)
    return render(
        request,
        "parts/model.html",
        card=card,
        versions=versions,
        aliases=registry.route(card.name).aliases,
        default_version=default,
        default_rule=rule,
        providers=model.backend.providers,
        min_overlap=settings.min_gene_overlap,
    )


@router.get("/parts/model-options")
def model_options_part(
    request: Request,
    registry: RegistryDep,
    caller: CallerDep,
    selected: Annotated[str | None, Query(max_length=100)] = None,
) -> HTMLResponse:
    """The predict form's choice of model versions."""
    choices = [m for m in registry.models(viewer=caller) if m.card.kind in uploads.TASKS]
    # newest first within a name; classifiers first: the page's main use
    choices.sort(
        key=lambda m: (m.card.kind is not ModelKind.classifier, m.card.name, -m.card.version)
    )
    chosen = selected or (f"{choices[0].card.name}:{choices[0].card.version}" if choices else "")
    return render(request, "parts/model_options.html", choices=choices, selected=chosen)


@router.get("/parts/model-names")
def model_names_part(request: Request, registry: RegistryDep, caller: CallerDep) -> HTMLResponse:
    """The history form's choice of models."""
    names = sorted({m.card.name for m in registry.models(viewer=caller)})
    return render(request, "parts/model_names.html", names=names)
