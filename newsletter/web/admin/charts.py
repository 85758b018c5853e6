"""Charts as geometry for server-rendered SVG (``templates/web/admin/_charts.html.j2`` draws them).

Pure functions: numbers in, rectangles and polylines out, no I/O and no script, so a page with charts is
still a script-free page under the console's CSP. Every chart also carries its numbers as text (the
``title`` of each bar, and a table beside it on the page) for screen readers and for copying.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

WIDTH = 600
HEIGHT = 150
PAD = 4


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str
    value: str
    alert: bool = False


@dataclass(frozen=True)
class Rule:
    """A horizontal line at a value that matters (the 0.3% complaint line)."""

    y: float
    label: str


@dataclass(frozen=True)
class Chart:
    title: str
    bars: tuple[Bar, ...] = ()
    points: str = ""
    """A polyline's ``points`` attribute (for a line chart)."""
    rules: tuple[Rule, ...] = ()
    first: str = ""
    last: str = ""
    top: str = ""
    """The largest value shown, in words."""
    width: int = WIDTH
    height: int = HEIGHT
    rows: tuple[tuple[str, str], ...] = field(default=())
    """The same numbers as text: every non-zero bar; a line's first and last points and every change."""

    @property
    def empty(self) -> bool:
        return not self.bars and not self.points


def _number(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) else f"{value:,.2f}"


def days(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def bar_chart(title: str, series: Sequence[tuple[str, float]], *, alert_at: float | None = None,
              rule: tuple[float, str] | None = None, percent: bool = False) -> Chart:
    """One bar per (label, value); bars at or above ``alert_at`` are marked; ``rule`` draws a line."""
    if not series:
        return Chart(title)
    values = [v for _, v in series]
    top = (max([*values, rule[0] if rule else 0.0]) or 1.0) * 1.1
    slot = (WIDTH - 2 * PAD) / len(series)
    width = max(slot * 0.8, 1.0)
    shown = (lambda v: f"{v * 100:.2f}%") if percent else _number

    def y_of(value: float) -> float:
        return HEIGHT - PAD - (HEIGHT - 2 * PAD) * value / top

    bars = tuple(Bar(x=round(PAD + i * slot + (slot - width) / 2, 2), y=round(y_of(v), 2), width=round(width, 2),
                     height=round(HEIGHT - PAD - y_of(v), 2), label=label, value=shown(v),
                     alert=alert_at is not None and v >= alert_at)
                 for i, (label, v) in enumerate(series))
    rules = (Rule(y=round(y_of(rule[0]), 2), label=rule[1]),) if rule else ()
    return Chart(title, bars=bars, rules=rules, first=series[0][0], last=series[-1][0], top=shown(max(values)),
                 rows=tuple((label, shown(v)) for label, v in series if v))


def line_chart(title: str, series: Sequence[tuple[str, float]]) -> Chart:
    """A line through (label, value) points, evenly spaced."""
    if not series:
        return Chart(title)
    values = [v for _, v in series]
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    step = (WIDTH - 2 * PAD) / max(len(series) - 1, 1)
    points = " ".join(f"{PAD + i * step:.1f},{HEIGHT - PAD - (HEIGHT - 2 * PAD) * (v - low) / span:.1f}"
                      for i, v in enumerate(values))
    return Chart(title, points=points, first=f"{series[0][0]}: {_number(values[0])}",
                 last=f"{series[-1][0]}: {_number(values[-1])}", top=_number(high),
                 rows=tuple((label, _number(v)) for i, (label, v) in enumerate(series)
                            if i in (0, len(series) - 1) or v != values[i - 1]))
