"""Server-rendered SVG: the samples' PCA scatter, a job's loss curve, probability bars.

Colours are SVG presentation attributes, never style attributes, so the pages' Content Security
Policy needs no 'unsafe-inline'. Every figure is role="img" with a title and a description; each
point and bar carries a <title> (a tooltip, and read out by screen readers).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

# Tableau 10, its grey swapped for a dark teal (grey read as the empty track of a bar)
PALETTE = (
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
    "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#2b5d61",
)  # fmt: skip
OTHER = "#7f7f7f"


def colours(groups: Sequence[str]) -> dict[str, str]:
    """One colour per group, in order; past ten groups the palette repeats."""
    return {g: PALETTE[i % len(PALETTE)] for i, g in enumerate(groups)}


def ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About `n` round tick values covering [lo, hi]."""
    if not math.isfinite(lo) or not math.isfinite(hi):
        return []
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / max(n, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(lo / step) * step
    out, v = [], first
    while v <= hi + step * 1e-9:
        out.append(round(v, 12))
        v += step
    return out


def _fmt(v: float) -> str:
    return f"{v:.3g}"


@dataclass(frozen=True)
class _Frame:
    """Plot area inside an SVG of width × height, mapping data ranges to pixels."""

    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int
    x0: float
    x1: float
    y0: float
    y1: float

    def px(self, x: float) -> float:
        span = (self.x1 - self.x0) or 1.0
        return self.left + (x - self.x0) / span * (self.width - self.left - self.right)

    def py(self, y: float) -> float:
        span = (self.y1 - self.y0) or 1.0
        return (
            self.height
            - self.bottom
            - (y - self.y0) / span * (self.height - self.top - self.bottom)
        )

    def axes(self, x_title: str, y_title: str) -> list[str]:
        """Frame, grid lines, tick labels and axis titles."""
        out = [
            f'<rect class="plot-area" x="{self.left}" y="{self.top}" '
            f'width="{self.width - self.left - self.right}" '
            f'height="{self.height - self.top - self.bottom}" fill="#fff" stroke="#c8ccd2"/>'
        ]
        for t in ticks(self.x0, self.x1):
            x = self.px(t)
            out.append(
                f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{self.top}" '
                f'y2="{self.height - self.bottom}" stroke="#eceef1"/>'
                f'<text x="{x:.1f}" y="{self.height - self.bottom + 16}" '
                f'text-anchor="middle" class="tick">{_fmt(t)}</text>'
            )
        for t in ticks(self.y0, self.y1):
            y = self.py(t)
            out.append(
                f'<line x1="{self.left}" x2="{self.width - self.right}" y1="{y:.1f}" '
                f'y2="{y:.1f}" stroke="#eceef1"/>'
                f'<text x="{self.left - 6}" y="{y + 4:.1f}" text-anchor="end" '
                f'class="tick">{_fmt(t)}</text>'
            )
        mid_x = (self.left + self.width - self.right) / 2
        mid_y = (self.top + self.height - self.bottom) / 2
        out.append(
            f'<text x="{mid_x:.1f}" y="{self.height - 8}" text-anchor="middle" '
            f'class="axis-title">{escape(x_title)}</text>'
            f'<text x="14" y="{mid_y:.1f}" text-anchor="middle" class="axis-title" '
            f'transform="rotate(-90 14 {mid_y:.1f})">{escape(y_title)}</text>'
        )
        return out


def _padded(values: Sequence[float]) -> tuple[float, float]:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return 0.0, 1.0
    lo, hi = min(finite), max(finite)
    pad = (hi - lo) * 0.06 or 1.0
    return lo - pad, hi + pad


def _legend(items: Sequence[tuple[str, str]], x: int, y: int, line: bool = False) -> list[str]:
    out = []
    for i, (name, colour) in enumerate(items):
        top = y + i * 20
        mark = (
            f'<line x1="{x}" x2="{x + 16}" y1="{top + 6}" y2="{top + 6}" stroke="{colour}" '
            'stroke-width="3"/>'
            if line
            else f'<circle cx="{x + 6}" cy="{top + 6}" r="5" fill="{colour}"/>'
        )
        out.append(f'{mark}<text x="{x + 22}" y="{top + 10}" class="legend">{escape(name)}</text>')
    return out


def scatter(
    points: Sequence[tuple[str, float, float, str]],
    groups: Sequence[str],
    *,
    title: str,
    description: str,
    x_title: str,
    y_title: str,
    palette: dict[str, str] | None = None,
) -> Markup:
    """Points (id, x, y, group) coloured by group (`palette`, else in the order of `groups`),
    with a legend of `groups` on the right."""
    palette = palette or colours(groups)
    legend_width = 40 + 7 * max((len(g) for g in groups), default=0)
    x0, x1 = _padded([p[1] for p in points])
    y0, y1 = _padded([p[2] for p in points])
    frame = _Frame(640 + legend_width, 420, 56, legend_width + 16, 16, 48, x0, x1, y0, y1)
    body = frame.axes(x_title, y_title)
    for sid, x, y, group in points:
        body.append(
            f'<circle cx="{frame.px(x):.1f}" cy="{frame.py(y):.1f}" r="5" '
            f'fill="{palette.get(group, OTHER)}" fill-opacity="0.85" stroke="#fff" '
            f'stroke-width="0.8" class="point"><title>{escape(sid)}: {escape(group)}</title>'
            "</circle>"
        )
    items = [(g, palette.get(g, OTHER)) for g in groups]
    body += _legend(items, frame.width - legend_width, frame.top + 4)
    return _svg(frame, title, description, body, "pca-plot")


def line_chart(
    series: Sequence[tuple[str, Sequence[tuple[float, float | None]]]],
    *,
    title: str,
    description: str,
    x_title: str,
    y_title: str,
    marks: Sequence[tuple[float, str]] = (),
) -> Markup:
    """Lines of (x, y) points (None: a gap), with vertical marks (x, label) such as stage starts."""
    xs = [x for _, pts in series for x, _ in pts]
    ys = [y for _, pts in series for _, y in pts if y is not None]
    legend_width = 40 + 7 * max((len(name) for name, _ in series), default=0)
    x0, x1 = (min(xs), max(xs)) if xs else (0.0, 1.0)
    if x1 == x0:
        x1 = x0 + 1
    frame = _Frame(640 + legend_width, 320, 64, legend_width + 16, 16, 48, x0, x1, *_padded(ys))
    body = frame.axes(x_title, y_title)
    for x, label in marks:
        px = frame.px(x)
        body.append(
            f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{frame.top}" '
            f'y2="{frame.height - frame.bottom}" '
            f'stroke="#9aa0a6" stroke-dasharray="4 3"><title>{escape(label)}</title></line>'
        )
    for i, (name, pts) in enumerate(series):
        colour = PALETTE[i % len(PALETTE)]
        runs: list[list[str]] = [[]]
        for x, y in pts:
            if y is None or not math.isfinite(y):
                runs.append([])
            else:
                runs[-1].append(f"{frame.px(x):.1f},{frame.py(y):.1f}")
        for run in runs:
            if len(run) > 1:
                body.append(
                    f'<polyline points="{" ".join(run)}" fill="none" stroke="{colour}" '
                    f'stroke-width="2"><title>{escape(name)}</title></polyline>'
                )
            elif run:
                cx, cy = run[0].split(",")
                body.append(f'<circle cx="{cx}" cy="{cy}" r="3" fill="{colour}"/>')
    items = [(name, PALETTE[i % len(PALETTE)]) for i, (name, _) in enumerate(series)]
    body += _legend(items, frame.width - legend_width, frame.top + 4, line=True)
    return _svg(frame, title, description, body, "loss-curve")


def probability_bar(probabilities: Sequence[tuple[str, float]], palette: dict[str, str]) -> Markup:
    """One sample's class probabilities as a stacked bar, largest first."""
    width, height = 220, 16
    ordered = sorted(probabilities, key=lambda kv: -kv[1])
    said = ", ".join(f"{name} {p:.0%}" for name, p in ordered[:3])
    parts, x = [], 0.0
    for name, p in ordered:
        w = max(p, 0.0) * width
        if w < 0.5:
            continue
        parts.append(
            f'<rect x="{x:.2f}" y="0" width="{w:.2f}" height="{height}" '
            f'fill="{palette.get(name, OTHER)}"><title>{escape(name)}: {p:.3f}</title></rect>'
        )
        x += w
    # every text in it went through escape()
    return Markup(  # noqa: S704
        f'<svg class="prob-bar" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{escape(said)}">'
        f'<rect width="{width}" height="{height}" fill="#eceef1"/>{"".join(parts)}</svg>'
    )


def _svg(frame: _Frame, title: str, description: str, body: list[str], cls: str) -> Markup:
    # every caller's text went through escape()
    return Markup(  # noqa: S704
        f'<svg class="{cls}" viewBox="0 0 {frame.width} {frame.height}" '
        f'width="{frame.width}" height="{frame.height}" role="img" '
        f'aria-labelledby="{cls}-title {cls}-desc">'
        f'<title id="{cls}-title">{escape(title)}</title>'
        f'<desc id="{cls}-desc">{escape(description)}</desc>'
        f"{''.join(body)}</svg>"
    )
