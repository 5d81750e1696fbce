"""The web app's Jinja2 environment (autoescaped) with the filters and plot helpers it uses, and
`render`, which answers a page or fragment with the app's security headers."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from app import __version__
from app.ui import plots

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
HTMX = "vendor/htmx-2.0.11.min.js"

templates = Jinja2Templates(directory=HERE / "templates")


def _when(value: datetime | str | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):  # ISO 8601, as job histories record it
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return value
        return _when(parsed)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _pct(value: float | None, digits: int = 0) -> str:
    return "—" if value is None else f"{value * 100:.{digits}f}%"


def _num(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}g}"


templates.env.filters.update(when=_when, pct=_pct, num=_num)
templates.env.globals.update(
    version=__version__,
    htmx=HTMX,
    plots=plots,
    colours=plots.colours,
    probability_bar=plots.probability_bar,
)

# no inline script or style anywhere in the app: plots colour with SVG attributes
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
    "script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def render(request: Request, template: str, **context: Any) -> HTMLResponse:
    """A page or fragment, with the security headers every answer of the web app carries."""
    auth = request.app.state.settings.auth_enabled
    response: HTMLResponse = templates.TemplateResponse(
        request, template, {"auth": auth, **context}, headers=HEADERS
    )
    return response
