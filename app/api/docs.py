"""/docs (Swagger UI) and /redoc (ReDoc) from assets that ship in a pip package: no CDN.

The fastapi-offline package carries swagger-ui-bundle.js, swagger-ui.css and
redoc.standalone.js; they are served from /docs-assets, and FastAPI's own page builders point at
them. `install` replaces FastAPI's default pages, which load the same files from a CDN. A
Content-Security-Policy keeps the browser on this server: ReDoc's bundle would otherwise fetch
its "API docs by Redocly" logo from its vendor's CDN.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = "/docs-assets"
OAUTH2_REDIRECT = "/docs/oauth2-redirect"

router = APIRouter(include_in_schema=False)

# both pages inject styles; Swagger UI's page starts it with an inline script; ReDoc's search
# runs in a blob: worker. Nothing is fetched from anywhere but this server.
CSP = (
    "default-src 'self'; img-src 'self' data:; font-src 'self' data:; "
    "style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'; "
    "worker-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'"
)


def _local_only(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = CSP
    return page


def _root(request: Request) -> str:
    root: str = request.scope.get("root_path", "")
    return root


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    root = _root(request)
    return _local_only(
        get_swagger_ui_html(
            openapi_url=f"{root}{request.app.openapi_url}",
            title=f"{request.app.title} API (Swagger UI)",
            oauth2_redirect_url=f"{root}{OAUTH2_REDIRECT}",
            swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}/ui/static/favicon.svg",
            # no badge fetched from the public validator
            swagger_ui_parameters={"validatorUrl": None},
        )
    )


@router.get(OAUTH2_REDIRECT)
async def swagger_ui_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    root = _root(request)
    return _local_only(
        get_redoc_html(
            openapi_url=f"{root}{request.app.openapi_url}",
            title=f"{request.app.title} API (ReDoc)",
            redoc_js_url=f"{root}{ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{root}/ui/static/favicon.svg",
            with_google_fonts=False,
        )
    )


def install(app: FastAPI) -> None:
    """Serve the pages and their assets (create the app with docs_url=None, redoc_url=None)."""
    assets = files("fastapi_offline") / "static"
    app.mount(ASSETS, StaticFiles(directory=str(assets)), name="docs-assets")
    app.include_router(router)
