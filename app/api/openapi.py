"""The OpenAPI document, completed: every error answer with its body schema (problem+json's
`Problem`, or `{"error"}` under /v2), the statuses each operation may answer, and the API-key
security scheme on the operations that read a key.

FastAPI documents what a route declares; the answers that middleware and dependencies give to
every route (a NUL in the URL or a bad parameter: 422; a body over the limit: 413; the database
away: 503; a timeout: 504; a key missing, invalid, short of a scope or over its rate: 401, 403,
429) are added here, from the route's own dependencies, so the document and the service agree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from fastapi import FastAPI, routing
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from app.errors import PROBLEM_JSON
from app.schemas.problem import Problem, V2Error
from app.security import authenticate

SCHEMES = {
    "ApiKey": {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "An API key (genexfer keys create); also accepted as a Bearer token.",
    },
    "Bearer": {"type": "http", "scheme": "bearer", "description": "The API key as a token."},
}
KEYED: list[dict[str, list[str]]] = [{"ApiKey": []}, {"Bearer": []}]
WORDS = {
    400: "Invalid request (the Open Inference Protocol's status for every bad input)",
    401: "Missing or invalid API key",
    403: "The API key lacks the scope (or the resource belongs to another tenant's owner)",
    404: "Not found (also another tenant's)",
    413: "The body is larger than the service accepts",
    422: "Invalid request: the parameter, body field or values at fault are named",
    429: "Too many requests: the key's rate or the tenant's job quota (Retry-After)",
    503: "Unavailable, e.g. the database is away or the request was shed (Retry-After)",
    504: "The request took longer than GENEXFER_REQUEST_TIMEOUT_S",
}
RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "schema": {"type": "integer", "minimum": 1},
    }
}


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for dep in dependant.dependencies:
        if dep.call is not None:
            yield dep.call
        yield from _calls(dep)


def _access(route: Any) -> str:
    """scoped (require(...)), keyed (reads a key if sent), or open."""
    calls = list(_calls(route.dependant))
    if any(getattr(c, "__qualname__", "").startswith("require.") for c in calls):
        return "scoped"
    return "keyed" if authenticate in calls else "open"


def _statuses(route: Any, method: str, access: str, v2: bool) -> set[int]:
    # any route: bad parameters or a NUL in the URL (400 under /v2, as KServe clients expect);
    # the database away; a timeout
    found = {400 if v2 else 422, 503, 504}
    if method in ("POST", "PUT", "PATCH"):
        found.add(413)
    if "{" in route.path_format:
        found.add(404)
    if access != "open":
        found.add(401)
    if access == "scoped":
        found |= {403, 429}
    return found


def _error_body(path: str) -> dict[str, Any]:
    if path == "/v2" or path.startswith("/v2/"):
        return {"application/json": {"schema": {"$ref": "#/components/schemas/V2Error"}}}
    return {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}


def complete(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document with its error answers and security filled in."""
    spec = get_openapi(
        title=app.title,
        version=app.version,
        summary=app.summary,
        description=app.description,
        routes=app.routes,
    )
    components = spec.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for model in (Problem, V2Error):
        schemas[model.__name__] = model.model_json_schema(
            ref_template="#/components/schemas/{model}"
        )
    components["securitySchemes"] = SCHEMES
    # each route as included (a router's prefix and dependencies applied to it)
    routes = {
        (route.path_format, method): route
        for route in routing.iter_route_contexts(app.routes)
        if isinstance(route.original_route, APIRoute) and route.include_in_schema
        for method in route.methods or ()
    }
    for path, operations in spec.get("paths", {}).items():
        for method, operation in operations.items():
            route = routes.get((path, method.upper()))
            if route is None:
                continue
            access = _access(route)
            if access == "scoped":
                operation["security"] = KEYED
            elif access == "keyed":
                operation["security"] = [{}, *KEYED]  # optional: anonymous sees less
            v2 = path == "/v2" or path.startswith("/v2/")
            answers = operation.setdefault("responses", {})
            if v2:
                answers.pop("422", None)  # FastAPI's default; /v2 answers bad input with 400
            for status in _statuses(route, method.upper(), access, v2):
                answers.setdefault(str(status), {"description": WORDS[status]})
            for status, answer in answers.items():
                if status.isdigit() and int(status) >= 400:
                    if int(status) in (429, 503):
                        answer.setdefault("headers", {}).update(RETRY_AFTER)
                    if not _own_schema(answer):
                        answer["content"] = _error_body(path)
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)  # FastAPI's 422 body: this service answers problem+json
    return spec


def _own_schema(answer: dict[str, Any]) -> bool:
    """Whether a route documents its own body for this status (e.g. /readyz's 503)."""
    for media in answer.get("content", {}).values():
        ref = media.get("schema", {}).get("$ref", "")
        if media.get("schema") and not ref.endswith("/HTTPValidationError"):
            return True
    return False


def install(app: FastAPI) -> None:
    """Serve the completed document at /openapi.json (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
