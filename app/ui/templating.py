"""The web app's Jinja2 environment (autoescaped) with the filters and plot helpers it uses."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

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
