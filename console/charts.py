"""Charts drawn on the server as inline SVG: readable without JavaScript and
with nothing fetched from a CDN. Small on purpose: a line over time and
horizontal bars, with a title, axis extremes and a <title> per point."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT, PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 560, 180, 70, 12, 24, 28


def line_chart(
    title: str,
    points: Sequence[tuple[datetime, float]],
    label: Callable[[float], str],
    colour: str = "#417690",
) -> SafeString:
    """A line of POINTS (time, value) over time; LABEL formats a value."""
    head = f'<text x="{PAD_LEFT}" y="16" class="chart-title">{escape(title)}</text>'
    if not points:
        body = f'<text x="{PAD_LEFT}" y="{HEIGHT // 2}" class="chart-empty">no data yet</text>'
        return _svg(title, head + body)
    xs = [p[0].timestamp() for p in points]
    ys = [float(p[1]) for p in points]
    x0, x1 = min(xs), max(xs)
    top = max(ys) or 1.0
    inner_w = WIDTH - PAD_LEFT - PAD_RIGHT
    inner_h = HEIGHT - PAD_TOP - PAD_BOTTOM

    def at(x: float, y: float) -> tuple[float, float]:
        px = PAD_LEFT + (inner_w * (x - x0) / (x1 - x0) if x1 > x0 else inner_w / 2)
        return round(px, 1), round(PAD_TOP + inner_h * (1 - y / top), 1)

    coords = [at(x, y) for x, y in zip(xs, ys, strict=True)]
    path = " ".join(f"{x},{y}" for x, y in coords)
    dots = "".join(
        f'<circle cx="{x}" cy="{y}" r="2.5" fill="{colour}"><title>'
        f"{escape(f'{when:%Y-%m-%d %H:%M}: {label(value)}')}</title></circle>"
        for (x, y), (when, value) in zip(coords, points, strict=True)
    )
    base = HEIGHT - PAD_BOTTOM
    axes = (
        f'<line x1="{PAD_LEFT}" y1="{PAD_TOP}" x2="{PAD_LEFT}" y2="{base}" class="chart-axis"/>'
        f'<line x1="{PAD_LEFT}" y1="{base}" x2="{WIDTH - PAD_RIGHT}" y2="{base}" '
        'class="chart-axis"/>'
        f'<text x="{PAD_LEFT - 4}" y="{PAD_TOP + 4}" text-anchor="end">{escape(label(top))}</text>'
        f'<text x="{PAD_LEFT - 4}" y="{base}" text-anchor="end">0</text>'
        f'<text x="{PAD_LEFT}" y="{HEIGHT - 8}">{points[0][0]:%Y-%m-%d}</text>'
        f'<text x="{WIDTH - PAD_RIGHT}" y="{HEIGHT - 8}" text-anchor="end">'
        f"{points[-1][0]:%Y-%m-%d}</text>"
    )
    line = f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>'
    return _svg(title, head + axes + line + dots)


def bar_chart(
    title: str, bars: Sequence[tuple[str, float]], label: Callable[[float], str]
) -> SafeString:
    """Horizontal bars, one per (name, value)."""
    bar_h, gap = 18, 8
    height = PAD_TOP + max(len(bars), 1) * (bar_h + gap) + 8
    head = f'<text x="4" y="16" class="chart-title">{escape(title)}</text>'
    if not bars:
        body = f'<text x="4" y="{PAD_TOP + 14}" class="chart-empty">nothing stored yet</text>'
        return _svg(title, head + body, height)
    top = max(value for _, value in bars) or 1.0
    left, room = 140, WIDTH - 140 - 110
    parts = [head]
    for i, (name, value) in enumerate(bars):
        y = PAD_TOP + i * (bar_h + gap)
        w = max(round(room * value / top, 1), 1)
        parts.append(
            f'<text x="{left - 6}" y="{y + 13}" text-anchor="end">{escape(name)}</text>'
            f'<rect x="{left}" y="{y}" width="{w}" height="{bar_h}" fill="#79aec8">'
            f"<title>{escape(f'{name}: {label(value)}')}</title></rect>"
            f'<text x="{left + w + 6}" y="{y + 13}">{escape(label(value))}</text>'
        )
    return _svg(title, "".join(parts), height)


def _svg(title: str, body: str, height: int = HEIGHT) -> SafeString:
    # Every piece of text in BODY was escaped where it was put together.
    return mark_safe(  # noqa: S308
        f'<svg class="chart" role="img" aria-label="{escape(title)}" '
        f'viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" '
        f'xmlns="http://www.w3.org/2000/svg">{body}</svg>'
    )
