"""Server-side SVG charts for the HTML report: persons over time per scenario against the filed scale.

The report is opened offline (a regulator's machine, a USB stick), so a chart is a plain SVG string: no
script, no CDN, no web font, no image. x is the report period day by day (China Standard Time), y the
cumulative distinct persons; one step line per kind of PI (non-sensitive, sensitive) and a dashed line at
each declared scale. The y axis runs to 1.1 × the largest of the declared and observed values, so both
stay in view whichever is larger. Every piece of text is escaped: scenario names come from filings.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from html import escape

from markupsafe import Markup

from collector.models import Filing, PersonsPoint, Report
from collector.persons import CST

__all__ = ["Chart", "Series", "persons_svg", "scenario_charts"]

WIDTH, HEIGHT = 720, 305
LEFT, TOP = 80, 20
PLOT_W, PLOT_H = 600, 200      # plot area: x 80..680, y 20..220
BOTTOM = TOP + PLOT_H
HEADROOM = 1.1

_MONTHS_EN = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_DASH = 'stroke-dasharray="6 4"'


@dataclass(frozen=True, slots=True)
class Series:
    """One kind of PI: the PersonsPoint field it reads (`persons_<key>`), its label and colour."""

    key: str
    label: str
    color: str
    width: float  # the first series is drawn wider, underneath: where both are equal, both still show

    def count(self, p: PersonsPoint) -> int:
        return getattr(p, f"persons_{self.key}")


SERIES = (
    Series("nonsensitive", "一般个人信息 non-sensitive", "#0969da", 3.5),
    Series("sensitive", "敏感个人信息 sensitive", "#cf222e", 1.5),
)


@dataclass(frozen=True, slots=True)
class Chart:
    """What the template shows for one scenario: its id, name and the SVG (built escaped)."""

    scenario_id: str
    name: str
    svg: Markup


@dataclass(frozen=True, slots=True)
class _Frame:
    """Day index -> x and persons -> y over a period of `days` days and a y axis up to `ymax`."""

    days: int
    ymax: float

    def x(self, i: float) -> float:
        return LEFT + PLOT_W * min(max(i, 0), self.days) / self.days

    def y(self, v: float) -> float:
        return TOP + PLOT_H * (1 - v / self.ymax)


def _num(v: float) -> str:
    """A coordinate with at most one decimal and no trailing zeros: 80, 38.2."""
    return f"{v:.1f}".rstrip("0").rstrip(".")


def _nice_step(span: float, ticks: int = 5) -> int:
    """A 1-2-5 step giving about `ticks` intervals over `span`; persons are whole, so at least 1."""
    raw = span / ticks
    if raw <= 1:
        return 1
    mag = 10 ** math.floor(math.log10(raw))
    return int(next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw))


def _x_ticks(start: date, days: int) -> list[tuple[int, str, str]]:
    """(day index, Chinese label, English label): month starts for long periods, else about ten days."""
    if days > 62:
        shown, d = [], start.replace(day=1)
        while (d - start).days < days:
            if d >= start:
                shown.append(d)
            d = date(d.year + d.month // 12, d.month % 12 + 1, 1)
        return [((d - start).days, f"{d.month}月", _MONTHS_EN[d.month - 1]) for d in shown]
    shown = [start + timedelta(i) for i in range(0, days, max(1, math.ceil(days / 10)))]
    return [((d - start).days, f"{d.month}月{d.day}日", f"{_MONTHS_EN[d.month - 1]} {d.day}") for d in shown]


def _axes(f: _Frame, start: date) -> list[str]:
    out = [f'<rect x="{LEFT}" y="{TOP}" width="{PLOT_W}" height="{PLOT_H}" fill="#fff" stroke="#d0d7de"/>']
    for v in range(0, int(f.ymax) + 1, _nice_step(f.ymax)):
        yv = _num(f.y(v))
        out.append(f'<line x1="{LEFT}" y1="{yv}" x2="{LEFT + PLOT_W}" y2="{yv}" stroke="#eaeef2"/>')
        out.append(f'<text x="{LEFT - 6}" y="{_num(f.y(v) + 4)}" text-anchor="end">{v:,}</text>')
    for i, zh, en in _x_ticks(start, f.days):
        xi = _num(f.x(i))
        out.append(f'<line x1="{xi}" y1="{BOTTOM}" x2="{xi}" y2="{BOTTOM + 4}" stroke="#656d76"/>')
        out.append(f'<text x="{xi}" y="{BOTTOM + 16}" text-anchor="middle">{escape(zh)}'
                   f'<tspan x="{xi}" dy="13" fill="#656d76">{escape(en)}</tspan></text>')
    mid_x, mid_y = LEFT + PLOT_W // 2, TOP + PLOT_H // 2
    out.append(f'<text x="{mid_x}" y="{BOTTOM + 48}" text-anchor="middle">'
               "日期 date (中国标准时间 CST)</text>")
    out.append(f'<text x="18" y="{mid_y}" text-anchor="middle" transform="rotate(-90 18 {mid_y})">'
               "累计人数 persons (cumulative)</text>")
    return out


def _declared_lines(f: _Frame, declared: tuple[int, int]) -> list[str]:
    out = []
    # labels above their lines, the non-sensitive one at the right end and the sensitive one at the left:
    # equal scales (or both 0) stay legible, and the 1.1 headroom leaves room above the top line
    ends = ((LEFT + PLOT_W - 4, "end"), (LEFT + 4, "start"))
    for series, value, (lx, anchor) in zip(SERIES, declared, ends, strict=True):
        yd = _num(f.y(value))
        label = escape(f"备案规模 declared · {series.label}: {value:,}")
        out.append(f'<line class="declared declared-{series.key}" x1="{LEFT}" y1="{yd}" x2="{LEFT + PLOT_W}" '
                   f'y2="{yd}" stroke="{series.color}" stroke-width="1.5" {_DASH}>'
                   f"<title>{label}</title></line>")
        out.append(f'<text x="{lx}" y="{_num(f.y(value) - 4)}" text-anchor="{anchor}" fill="{series.color}">'
                   f"{label}</text>")
    return out


def _step_points(f: _Frame, steps: list[tuple[int, int]], end: int) -> str:
    """The `points` of a step line from 0 at the period start through (day index, value) steps to `end`."""
    coords, current = [(f.x(0), f.y(0))], 0
    for i, v in steps:
        if v != current:  # a day without new persons is no corner
            coords += [(f.x(i), f.y(current)), (f.x(i), f.y(v))]
            current = v
    coords.append((f.x(end), f.y(current)))
    text = [f"{_num(cx)},{_num(cy)}" for cx, cy in coords]
    return " ".join(t for k, t in enumerate(text) if k == 0 or t != text[k - 1])


def _series_lines(f: _Frame, points: Sequence[PersonsPoint], start: date, end: int) -> list[str]:
    out = []
    for series in SERIES:
        steps = [((p.date - start).days, series.count(p)) for p in points]
        last = points[-1]
        label = escape(f"{series.label} 累计人数 persons: {series.count(last):,} ({last.date.isoformat()})")
        out.append(f'<polyline class="series series-{series.key}" points="{_step_points(f, steps, end)}" '
                   f'fill="none" stroke="{series.color}" stroke-width="{series.width:g}">'
                   f"<title>{label}</title></polyline>")
    return out


def _legend() -> list[str]:
    out, lx, ly = [], LEFT, HEIGHT - 8
    for series in SERIES:
        out.append(f'<line x1="{lx}" y1="{ly - 4}" x2="{lx + 20}" y2="{ly - 4}" stroke="{series.color}" '
                   f'stroke-width="{series.width:g}"/>')
        out.append(f'<text x="{lx + 24}" y="{ly}">{escape(series.label)}</text>')
        lx += 190
    out.append(f'<line x1="{lx}" y1="{ly - 4}" x2="{lx + 20}" y2="{ly - 4}" stroke="#656d76" '
               f'stroke-width="1.5" {_DASH}/>')
    out.append(f'<text x="{lx + 24}" y="{ly}">备案规模 declared</text>')
    return out


def persons_svg(
    points: Sequence[PersonsPoint],
    *,
    title: str,
    start: date,
    days: int,
    declared: tuple[int, int] | None = None,
    until: date | None = None,
) -> str:
    """The chart of one scenario's points over `days` CST calendar days from `start`.

    `declared` is the filed (non-sensitive, sensitive) scale, None when the filing is not at hand. Each
    step line rises at the start of a point's day and holds its last value to the end of `until` (the day
    the report was made, clamped to the period) or at least to the end of the last point's day.
    """
    points = sorted(points, key=lambda p: p.date)
    top = max([*(declared or ()), *(max(p.persons_nonsensitive, p.persons_sensitive) for p in points), 0])
    frame = _Frame(days=max(days, 1), ymax=top * HEADROOM if top > 0 else 1.0)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="persons-chart" viewBox="0 0 {WIDTH} {HEIGHT}" '
           f'width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{escape(title)}" font-size="11">',
           f"<title>{escape(title)}</title>", *_axes(frame, start)]
    if declared is not None:
        out += _declared_lines(frame, declared)
    if points:
        end = (points[-1].date - start).days + 1
        if until is not None:
            end = max(end, (until - start).days + 1)
        out += _series_lines(frame, points, start, end)
    out += [*_legend(), "</svg>"]
    return "\n".join(out)


def _period_days(report: Report) -> tuple[date, int]:
    start = report.period.from_.astimezone(CST).date()
    # `to` is exclusive: the last day is the one holding the instant just before it
    last = (report.period.to - timedelta(microseconds=1)).astimezone(CST).date()
    return start, max((last - start).days + 1, 1)


def scenario_charts(report: Report, filing: Filing | None = None) -> list[Chart]:
    """One chart per scenario that has points, in the order of the report's points (by scenario id)."""
    by_scenario: dict[str, list[PersonsPoint]] = {}
    for p in report.observed.persons_over_time:
        by_scenario.setdefault(p.scenario_id, []).append(p)
    start, days = _period_days(report)
    until = report.generated_at.astimezone(CST).date()
    charts = []
    for sid, points in by_scenario.items():
        scenario = filing.scenario(sid) if filing is not None else None
        name = scenario.name if scenario is not None else sid
        declared = ((scenario.scale.persons_nonsensitive, scenario.scale.persons_sensitive)
                    if scenario is not None else None)
        svg = persons_svg(points, title=f"{name} ({sid}) · 出境人数趋势 Persons over time", start=start,
                          days=days, declared=declared, until=until)
        charts.append(Chart(scenario_id=sid, name=name, svg=Markup(svg)))
    return charts
