"""Charts as inline SVG, rendered on the server: no script, no library, printable.

Pure functions from numbers to markup, so they are tested without a browser. Two shapes:

* ``drift_chart`` — the drift coefficient of each window of a monitor, with the threshold as a
  dashed line; windows at or above it are drawn as alerts, windows without a coefficient
  (too few rows) as hollow markers on the axis.
* ``line_chart`` — a metric of a run by step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape

from markupsafe import Markup

WIDTH = 720
HEIGHT = 260
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 44, 16, 16, 40


@dataclass(frozen=True)
class DriftPoint:
    """One monitor run: its window and coefficient (``None`` when none could be computed)."""

    start: datetime
    end: datetime
    coefficient: float | None
    note: str = ""
    drifted: bool | None = None
    """The run's decision (it published an event); ``None``: judge by the threshold line."""

    def alarmed(self, threshold: float) -> bool:
        if self.drifted is not None:
            return self.drifted
        return self.coefficient is not None and self.coefficient >= threshold


@dataclass(frozen=True)
class _Frame:
    x0: float
    x1: float
    y0: float
    y1: float

    def x(self, value: float) -> float:
        span = self.x1 - self.x0 or 1.0
        return PAD_LEFT + (value - self.x0) / span * (WIDTH - PAD_LEFT - PAD_RIGHT)

    def y(self, value: float) -> float:
        span = self.y1 - self.y0 or 1.0
        return HEIGHT - PAD_BOTTOM - (value - self.y0) / span * (HEIGHT - PAD_TOP - PAD_BOTTOM)


def _num(value: float) -> str:
    return f"{value:.1f}"


def _axes(frame: _Frame, y_ticks: Sequence[float], y_format: str) -> list[str]:
    parts = []
    for tick in y_ticks:
        y = _num(frame.y(tick))
        parts.append(f'<line class="grid" x1="{PAD_LEFT}" x2="{WIDTH - PAD_RIGHT}" y1="{y}" y2="{y}"/>')
        parts.append(f'<text class="tick" x="{PAD_LEFT - 6}" y="{y}" text-anchor="end" '
                     f'dominant-baseline="middle">{format(tick, y_format)}</text>')
    base = _num(HEIGHT - PAD_BOTTOM)
    parts.append(f'<line class="axis" x1="{PAD_LEFT}" x2="{WIDTH - PAD_RIGHT}" y1="{base}" y2="{base}"/>')
    return parts


def _x_labels(frame: _Frame, labels: Sequence[tuple[float, str]]) -> list[str]:
    if not labels:
        return []
    # At most ~8 labels, evenly picked, so dates never overlap.
    step = max(1, -(-len(labels) // 8))
    parts = []
    for value, text in labels[::step]:
        parts.append(f'<text class="tick" x="{_num(frame.x(value))}" y="{HEIGHT - PAD_BOTTOM + 18}" '
                     f'text-anchor="middle">{escape(text)}</text>')
    return parts


def _svg(css_class: str, label: str, parts: list[str]) -> Markup:
    body = "".join(parts)
    return Markup(
        f'<svg class="chart {css_class}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(label)}" preserveAspectRatio="xMidYMid meet">{body}</svg>'
    )


def _day(moment: datetime) -> str:
    midnight = moment.hour == 0 and moment.minute == 0
    return moment.strftime("%b %d") if midnight else moment.strftime("%b %d %H:%M")


def drift_chart(points: Sequence[DriftPoint], threshold: float) -> Markup:
    """The coefficient per window (0–1) with the threshold line; empty input, an empty frame."""
    ordered = sorted(points, key=lambda p: p.start)
    if ordered:
        x0 = ordered[0].start.timestamp()
        x1 = ordered[-1].start.timestamp()
        if x1 == x0:
            x0, x1 = x0 - 1, x1 + 1
    else:
        x0, x1 = 0.0, 1.0
    frame = _Frame(x0, x1, 0.0, 1.0)
    parts = _axes(frame, (0.0, 0.25, 0.5, 0.75, 1.0), ".2f")
    ty = _num(frame.y(min(max(threshold, 0.0), 1.0)))
    parts.append(f'<line class="threshold" x1="{PAD_LEFT}" x2="{WIDTH - PAD_RIGHT}" y1="{ty}" y2="{ty}"/>')
    parts.append(f'<text class="threshold-label" x="{WIDTH - PAD_RIGHT}" y="{float(ty) - 5:.1f}" '
                 f'text-anchor="end">threshold {threshold:g}</text>')
    measured = [p for p in ordered if p.coefficient is not None]
    if len(measured) > 1:
        path = " ".join(
            f"{_num(frame.x(p.start.timestamp()))},{_num(frame.y(p.coefficient or 0.0))}" for p in measured
        )
        parts.append(f'<polyline class="series" points="{path}"/>')
    for p in ordered:
        x = _num(frame.x(p.start.timestamp()))
        window = f"{p.start:%Y-%m-%d %H:%M} – {p.end:%Y-%m-%d %H:%M}"
        if p.coefficient is None:
            tip = f"{window}: no coefficient{': ' + p.note if p.note else ''}"
            parts.append(f'<circle class="point empty" cx="{x}" cy="{_num(frame.y(0.0))}" r="4">'
                         f"<title>{escape(tip)}</title></circle>")
            continue
        drifted = p.alarmed(threshold)
        tip = f"{window}: coefficient {p.coefficient:.3f}{' (drift)' if drifted else ''}"
        css = "point drifted" if drifted else "point"
        parts.append(f'<circle class="{css}" cx="{x}" cy="{_num(frame.y(p.coefficient))}" r="5" '
                     f'data-coefficient="{p.coefficient:.6f}"><title>{escape(tip)}</title></circle>')
    parts += _x_labels(frame, [(p.start.timestamp(), _day(p.start)) for p in ordered])
    drifted_count = sum(1 for p in measured if p.alarmed(threshold))
    label = (
        f"Drift coefficient of {len(ordered)} windows; "
        f"{drifted_count} at or above the threshold {threshold:g}"
    )
    return _svg("drift-chart", label, parts)


def line_chart(points: Sequence[tuple[float, float]], label: str) -> Markup:
    """Values by step (x ascending); the y range is the data's, padded a little."""
    ordered = sorted(points)
    if not ordered:
        return _svg("line-chart", label, [])
    xs = [p[0] for p in ordered]
    ys = [p[1] for p in ordered]
    low, high = min(ys), max(ys)
    pad = (high - low) * 0.1 or abs(high) * 0.1 or 1.0
    frame = _Frame(min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1, low - pad, high + pad)
    ticks = [frame.y0 + (frame.y1 - frame.y0) * i / 4 for i in range(5)]
    parts = _axes(frame, ticks, ".3g")
    if len(ordered) > 1:
        path = " ".join(f"{_num(frame.x(x))},{_num(frame.y(y))}" for x, y in ordered)
        parts.append(f'<polyline class="series" points="{path}"/>')
    for x, y in ordered:
        parts.append(f'<circle class="point" cx="{_num(frame.x(x))}" cy="{_num(frame.y(y))}" r="3">'
                     f"<title>step {x:g}: {y:.6g}</title></circle>")
    parts += _x_labels(frame, [(x, f"{x:g}") for x in xs])
    return _svg("line-chart", label, parts)
