"""The persons-over-time SVG: geometry of the step lines and declared lines, zero guards, escaping, and
no external reference. Plot area: x 80..680 (600 px over the period's days), y 220 (0 persons) up to 20;
the y axis runs to 1.1 × max(declared, observed)."""

from __future__ import annotations

import copy
import re
from datetime import UTC, date, datetime, timedelta

import pytest

from collector.charts import persons_svg, scenario_charts
from collector.models import Filing, Observed, Period, PersonsPoint, Report
from collector.persons import calendar_year
from collector.reports import render_html

from .builders import example_data

START = date(2026, 1, 1)
NAMESPACE = "http://www.w3.org/2000/svg"


def pts(*rows: tuple[int, int, int], scenario: str = "booking") -> list[PersonsPoint]:
    """(day index, non-sensitive, sensitive) -> points of one scenario."""
    return [PersonsPoint(scenario_id=scenario, date=START + timedelta(i), persons_nonsensitive=n,
                         persons_sensitive=s) for i, n, s in rows]


def polyline(svg: str, key: str) -> str | None:
    m = re.search(rf'<polyline class="series series-{key}" points="([^"]*)"', svg)
    return m.group(1) if m else None


def declared_y(svg: str, key: str) -> str | None:
    m = re.search(rf'<line class="declared declared-{key}" x1="80" y1="([^"]*)" x2="680" y2="\1"', svg)
    return m.group(1) if m else None


# 10-day period: one day is 60 px wide.
CASES = [
    pytest.param(
        pts((2, 5, 0), (5, 50, 2)), (100, 0), None,
        "80,220 200,220 200,210.9 380,210.9 380,129.1 440,129.1", "80,220 380,220 380,216.4 440,216.4",
        ("38.2", "220"), id="steps_rise_at_the_start_of_each_day_and_hold_to_the_end_of_the_last"),
    pytest.param(
        pts((0, 20, 0)), (10, 0), None,
        "80,220 80,38.2 140,38.2", "80,220 140,220",
        ("129.1", "220"), id="observed_above_declared_sets_the_y_axis"),
    pytest.param(
        pts((2, 3, 3), (3, 3, 3)), (0, 0), START + timedelta(4),
        "80,220 200,220 200,38.2 380,38.2", "80,220 200,220 200,38.2 380,38.2",
        ("220", "220"), id="a_day_without_new_persons_is_no_corner_and_the_line_runs_to_until"),
    pytest.param(
        pts((8, 1, 0)), (0, 1), START + timedelta(40),
        "80,220 560,220 560,38.2 680,38.2", "80,220 680,220",
        ("220", "38.2"), id="until_after_the_period_is_clamped_to_its_end"),
    pytest.param(
        pts((1, 0, 0)), (0, 0), None,
        "80,220 200,220", "80,220 200,220",
        ("220", "220"), id="zero_observed_and_zero_declared_do_not_divide_by_zero"),
]


@pytest.mark.parametrize(("points", "declared", "until", "nonsensitive", "sensitive", "declared_ys"), CASES)
def test_step_lines_and_declared_lines(points, declared, until, nonsensitive, sensitive, declared_ys) -> None:
    svg = persons_svg(points, title="t", start=START, days=10, declared=declared, until=until)
    assert polyline(svg, "nonsensitive") == nonsensitive
    assert polyline(svg, "sensitive") == sensitive
    assert (declared_y(svg, "nonsensitive"), declared_y(svg, "sensitive")) == declared_ys


def test_when_there_are_no_points_then_only_axes_and_declared_lines() -> None:
    svg = persons_svg([], title="t", start=START, days=0, declared=(0, 0))
    assert "<polyline" not in svg and "nan" not in svg.lower() and "inf" not in svg.lower()
    assert declared_y(svg, "nonsensitive") == "220"


def test_when_the_filing_is_unknown_then_no_declared_line() -> None:
    svg = persons_svg(pts((0, 4, 0)), title="t", start=START, days=10)
    assert "declared-" not in svg and polyline(svg, "nonsensitive") == "80,220 80,38.2 140,38.2"


def test_every_series_and_declared_line_has_a_title_and_bilingual_labels() -> None:
    svg = persons_svg(pts((3, 1200, 7)), title="t", start=START, days=10, declared=(1000, 0))
    titles = re.findall(r"<(polyline|line) class=\"(?:series|declared) [^>]*><title>([^<]+)</title>", svg)
    assert len(titles) == 4
    assert "一般个人信息 non-sensitive 累计人数 persons: 1,200 (2026-01-04)" in svg
    assert "备案规模 declared · 一般个人信息 non-sensitive: 1,000" in svg
    assert "日期 date" in svg and "累计人数 persons" in svg
    assert "<title>t</title>" in svg and 'role="img"' in svg


def test_a_calendar_year_has_month_ticks_in_chinese_and_english() -> None:
    svg = persons_svg(pts((40, 1, 0)), title="t", start=START, days=365)
    ticks = re.findall(r'>(\d+月)<tspan x="[^"]*" dy="13" fill="#656d76">(\w+)</tspan>', svg)
    assert ticks[0] == ("1月", "Jan") and ticks[-1] == ("12月", "Dec") and len(ticks) == 12
    assert polyline(svg, "nonsensitive").startswith("80,220 145.8,220 145.8,38.2")   # 10 Feb: day 40 of 365


def test_text_is_escaped() -> None:
    svg = persons_svg(pts((0, 1, 0)), title='<script>alert("x")</script> & 订舱', start=START, days=10)
    assert "<script" not in svg
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; 订舱" in svg


def test_no_url_but_the_svg_namespace() -> None:
    svg = persons_svg(pts((0, 1, 2)), title="t", start=START, days=10, declared=(5, 5))
    assert re.findall(r"https?://[^\s\"']*", svg) == [NAMESPACE]
    assert "<script" not in svg and "<image" not in svg and "@import" not in svg and "href" not in svg


def _report(points: list[PersonsPoint]) -> Report:
    return Report(filing_id="ZJFTZ-NB-2026-0031", enterprise_id="nb-shipping-demo",
                  period=Period(from_=calendar_year(2026)[0], to=calendar_year(2026)[1]),
                  generated_at=datetime(2026, 6, 1, 4, tzinfo=UTC), verdict="consistent",
                  observed=Observed(persons_over_time=points))


def _filing_with_name(scenario_id: str, name: str) -> Filing:
    data = copy.deepcopy(example_data())
    next(s for s in data["scenarios"] if s["scenario_id"] == scenario_id)["name"] = name
    return Filing.model_validate(data)


def test_one_chart_per_scenario_with_points_and_the_filed_scale() -> None:
    report = _report(pts((59, 3, 0)) + pts((60, 1, 1), scenario="crew-management"))
    charts = scenario_charts(report, _filing_with_name("booking", "国际订舱与提单"))
    assert [(c.scenario_id, c.name) for c in charts] == [("booking", "国际订舱与提单"),
                                                         ("crew-management", "船员跨境人力资源管理")]
    # booking is filed at 30,000 non-sensitive: that sets the y axis, so the declared line is near the top
    assert declared_y(charts[0].svg, "nonsensitive") == "38.2"
    assert declared_y(charts[1].svg, "sensitive") == "38.2"       # crew-management: 800 / 800
    # the line holds its value to the end of the day the report was generated: 1 June (CST) is day 151
    assert polyline(charts[0].svg, "nonsensitive").endswith(" 329.9,220")


def test_without_points_there_is_no_chart_and_the_page_says_so() -> None:
    report = _report([])
    assert scenario_charts(report, None) == []
    html = render_html(report)
    assert "出境人数趋势" in html and "Persons over time" in html and "<svg" not in html


def test_a_scenario_name_from_the_filing_is_escaped_in_the_page() -> None:
    evil = '<script>alert("x")</script>订舱'
    filing = _filing_with_name("booking", evil)
    html = render_html(_report(pts((59, 3, 0))), filing)
    assert "<script" not in html.lower()
    assert html.count('<svg xmlns="http://www.w3.org/2000/svg" class="persons-chart"') == 1
    assert "&lt;script&gt;" in html
