"""Assembling the mismatch report (DESIGN §7) and rendering it: JSON, self-contained HTML, terminal table.

`observed` describes what left the country in the period: cross-border flows starting in it. Persons
come from `record_persons` (persons.py); `distinct_values` counts distinct `value_key`s of a field type
per destination. Uninspected egress (encrypted or not sampled) is listed so a reader sees what the
checks could not look into, and `coverage` (coverage.py) says how much of the cross-border bytes out the
checks saw and why not the rest. `persons_over_time` holds the scale_exceeded check's per-scenario counts
day by day (cumulative, CST calendar days); charts.py draws one chart per scenario from it.

When the agent sampled flows (an inspected flow with sample_weight > 1), every count of persons and of
distinct values stays the exact lower bound and gets an estimate with a 95 % interval beside it
(estimates.py); `persons_basis` says which case a report is: "exact" or "exact_lower_bound".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path

import duckdb
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from rich.table import Table

from collector.charts import scenario_charts
from collector.checks.runner import CheckResult
from collector.checks.views import use_period
from collector.coverage import REASON_NAMES, VISIBILITY_NAMES, coverage
from collector.estimates import sampled_estimates
from collector.models import (
    Coverage,
    Destination,
    FieldTypeCount,
    Filing,
    NegativeListRef,
    Observed,
    Period,
    PersonsPoint,
    ReasonBytes,
    Report,
    Uninspected,
    field_type_catalog,
)
from collector.persons import CST, Linking, count_persons
from collector.report_models import SharedPersonKey

__all__ = ["build_report", "coverage_line", "observe", "persons_over_time", "render_html", "render_json",
           "summary_table"]

TEMPLATES = Path(__file__).resolve().parent / "templates"

# Every query reads the period's cross-border flows from the shared view period_flows (checks/views.sql).
_DESTINATIONS_SQL = """
SELECT f.destination AS dest,
       any_value(f.server_name) AS server_name,
       list_sort(list_distinct(list(f.dst_ip))) AS ips,
       mode(f.dst_country) AS country,
       count(*) AS flows,
       sum(f.bytes_out) AS bytes_out,
       coalesce(sum(f.bytes_out) FILTER (WHERE f.encrypted), 0) AS encrypted_bytes_out
FROM period_flows f
GROUP BY dest
ORDER BY bytes_out DESC, dest
"""

_DEST_SCENARIOS_SQL = """
SELECT DISTINCT f.destination AS dest, fr.scenario_id
FROM period_flows f JOIN flow_recipients fr ON fr.flow_id = f.flow_id
WHERE fr.scenario_id IS NOT NULL
ORDER BY dest, fr.scenario_id
"""

_FIELD_TYPES_SQL = """
WITH scoped AS (SELECT f.flow_id, f.destination AS dest FROM period_flows f),
occ AS (
    SELECT s.dest, d.field_type, sum(d.occurrences) AS occurrences
    FROM detections d JOIN scoped s ON s.flow_id = d.flow_id GROUP BY ALL
),
vals AS (
    SELECT s.dest, p.field_type, count(DISTINCT p.value_key) AS distinct_values
    FROM pi_values p JOIN scoped s ON s.flow_id = p.flow_id GROUP BY ALL
)
SELECT coalesce(o.dest, v.dest), coalesce(o.field_type, v.field_type),
       coalesce(v.distinct_values, 0), coalesce(o.occurrences, 0)
FROM occ o FULL JOIN vals v ON o.dest = v.dest AND o.field_type = v.field_type
ORDER BY 1, 2
"""

# One entry per destination and reason (DESIGN §7 `uninspected[].reason`; null: nothing to inspect, or an
# old agent's row that does not tell).
_UNINSPECTED_SQL = """
SELECT any_value(f.server_name), mode(f.dst_country), count(*), sum(f.bytes_out),
       coalesce(sum(f.bytes_out) FILTER (WHERE f.encrypted), 0), f.uninspected_reason
FROM period_flows f
WHERE NOT f.inspected AND f.bytes_out > 0
GROUP BY f.destination, f.uninspected_reason
ORDER BY 4 DESC, 1, 6 NULLS LAST
"""

_TOTALS_SQL = """
SELECT count(*), coalesce(sum(f.bytes_out), 0), coalesce(sum(f.bytes_out) FILTER (WHERE f.encrypted), 0)
FROM period_flows f
"""


# Cumulative distinct persons per scenario and CST day, counted as checks/scale_exceeded.sql counts them
# (record_persons over views.sql's period_scenario_flows). A count of distinct persons is not a running sum of
# daily counts (one person may come back on later days), so: each person's first day per scenario and
# kind, how many persons are first seen on each day, then a running sum over the scenario's days.
_PERSONS_OVER_TIME_SQL = """
WITH scoped AS (
    SELECT s.scenario_id, rp.person_id, rp.nonsensitive, rp.sensitive,
           CAST(s.ts_start AT TIME ZONE $tz AS DATE) AS day
    FROM period_scenario_flows s
    JOIN record_persons rp ON rp.flow_id = s.flow_id
),
firsts AS (
    SELECT scenario_id, person_id,
           min(day) FILTER (WHERE nonsensitive) AS first_nonsensitive,
           min(day) FILTER (WHERE sensitive) AS first_sensitive
    FROM scoped
    GROUP BY scenario_id, person_id
),
first_days AS (
    SELECT scenario_id, first_nonsensitive AS day, 1 AS nonsensitive, 0 AS sensitive
    FROM firsts WHERE first_nonsensitive IS NOT NULL
    UNION ALL
    SELECT scenario_id, first_sensitive, 0, 1 FROM firsts WHERE first_sensitive IS NOT NULL
    UNION ALL
    SELECT DISTINCT scenario_id, day, 0, 0 FROM scoped   -- a point on every day with persons
),
daily AS (
    SELECT scenario_id, day, sum(nonsensitive) AS new_nonsensitive, sum(sensitive) AS new_sensitive
    FROM first_days
    GROUP BY scenario_id, day
)
SELECT scenario_id, day,
       sum(new_nonsensitive) OVER running AS persons_nonsensitive,
       sum(new_sensitive) OVER running AS persons_sensitive
FROM daily
WINDOW running AS (PARTITION BY scenario_id ORDER BY day ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
ORDER BY scenario_id, day
"""


def persons_over_time(
    con: duckdb.DuckDBPyConnection, period: tuple[datetime, datetime]
) -> list[PersonsPoint]:
    """One point per (scenario, CST day with persons): cumulative distinct persons since the period start."""
    use_period(con, period)
    rows = con.execute(_PERSONS_OVER_TIME_SQL, {"tz": str(CST)}).fetchall()
    return [PersonsPoint(scenario_id=sid, date=day, persons_nonsensitive=int(n), persons_sensitive=int(s))
            for sid, day, n, s in rows]


def observe(con: duckdb.DuckDBPyConnection, period: tuple[datetime, datetime],
            linking: Linking | None = None) -> Observed:
    """The `observed` block of the report from the store's views and `record_persons`; `linking` (what
    persons.build_record_persons returned) adds its over-shared keys and several key ids."""
    use_period(con, period)
    flows, bytes_out, enc = con.execute(_TOTALS_SQL).fetchall()[0]
    total = count_persons(con, period)[None]
    per_dest = count_persons(con, period, by="destination")
    scenarios: dict[str, list[str]] = {}
    for dest, sid in con.execute(_DEST_SCENARIOS_SQL).fetchall():
        scenarios.setdefault(dest, []).append(sid)
    est = sampled_estimates(con, period)
    field_types: dict[str, dict[str, FieldTypeCount]] = {}
    for dest, ft, distinct, occ in con.execute(_FIELD_TYPES_SQL).fetchall():
        field_types.setdefault(dest, {})[ft] = FieldTypeCount(
            distinct_values=distinct, occurrences=int(occ),
            distinct_values_estimate=est.values_of(ft, dest) if est else None)
    destinations = []
    for dest, server_name, ips, country, n, b, eb in con.execute(_DESTINATIONS_SQL).fetchall():
        persons = per_dest.get(dest)
        # A destination in several scenarios reports the first; the findings name each scenario.
        sids = scenarios.get(dest, [])
        destinations.append(Destination(
            server_name=server_name, ip=ips, country=country, scenario_id=sids[0] if sids else None,
            flows=n, bytes_out=int(b), encrypted_bytes_out=int(eb),
            persons_nonsensitive=persons.persons_nonsensitive if persons else 0,
            persons_sensitive=persons.persons_sensitive if persons else 0,
            persons_nonsensitive_estimate=est.persons_of("nonsensitive", dest) if est else None,
            persons_sensitive_estimate=est.persons_of("sensitive", dest) if est else None,
            field_types=field_types.get(dest, {}),
        ))
    uninspected = [
        Uninspected(server_name=sn, country=c, flows=n, bytes_out=int(b), encrypted_bytes_out=int(eb),
                    reason=r)
        for sn, c, n, b, eb, r in con.execute(_UNINSPECTED_SQL).fetchall()
    ]
    return Observed(
        flows=flows, bytes_out=int(bytes_out), encrypted_bytes_out=int(enc),
        persons_nonsensitive=total.persons_nonsensitive, persons_sensitive=total.persons_sensitive,
        persons_basis="exact_lower_bound" if est else "exact",
        persons_nonsensitive_estimate=est.persons_of("nonsensitive") if est else None,
        persons_sensitive_estimate=est.persons_of("sensitive") if est else None,
        sampling_rate_min=est.rate_min if est else None,
        destinations=destinations, uninspected=uninspected, persons_over_time=persons_over_time(con, period),
        coverage=coverage(con, period),
        shared_person_keys=[SharedPersonKey(field_types=k.field_types, records=k.records)
                            for k in (linking.shared_keys if linking else ())],
        key_ids=list(linking.key_ids) if linking and len(linking.key_ids) > 1 else [],
    )


def build_report(
    con: duckdb.DuckDBPyConnection,
    filing: Filing,
    period: tuple[datetime, datetime],
    results: Sequence[CheckResult],
    generated_at: datetime | None = None,
    *,
    report_id: str | None = None,
    filing_version: int | None = None,
    negative_lists: Iterable[object] = (),
    linking: Linking | None = None,
) -> Report:
    """The §7 report. `filing_version` and `negative_lists` (NegativeListRef, or anything with list_id,
    version and sha256 attributes or keys) record what the checks ran against; lists are sorted by id."""
    findings = [f for r in results for f in r.findings]
    refs = [NegativeListRef.model_validate(n, from_attributes=True) for n in negative_lists]
    return Report(
        report_id=report_id,
        filing_id=filing.filing_id,
        filing_version=filing_version,
        negative_lists=sorted(refs, key=lambda r: (r.list_id, r.version or "", r.sha256)),
        enterprise_id=filing.processor.id,
        period=Period(from_=period[0].astimezone(CST), to=period[1].astimezone(CST)),
        generated_at=(generated_at or datetime.now(CST)).astimezone(CST),
        verdict="inconsistent" if findings else "consistent",
        observed=observe(con, period, linking),
        findings=findings,
        checks=[r.status_model() for r in results],
    )


def render_json(report: Report) -> str:
    """The §7 JSON (UTF-8, Chinese kept as is)."""
    return report.model_dump_json(by_alias=True, indent=2) + "\n"


def _env() -> Environment:
    # autoescape on for everything: values come from traffic (server names, key paths) and filings.
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = lambda v: f"{v:,}" if isinstance(v, int) else v
    env.filters["listing"] = _listing
    env.filters["pct"] = _pct
    env.filters["share"] = _share
    return env


def _pct(rate: float | None) -> str:
    """A sampling rate as a percentage with up to three significant digits: 25 %, 12.5 %, 0.1 %."""
    return "—" if rate is None else f"{rate * 100:.3g} %"


def _listing(v: object) -> object:
    if isinstance(v, list):
        return ", ".join(map(str, v))
    return "—" if v is None else v


def render_html(report: Report, filing: Filing | None = None) -> str:
    """A self-contained page: inline CSS, no script, no external URL."""
    names = {ft: info.get("name_zh") or ft for ft, info in field_type_catalog().items()}
    return _env().get_template("report.html.j2").render(
        report=report, filing=filing, field_names=names, period_from=report.period.from_,
        charts=scenario_charts(report, filing), visibility_names=VISIBILITY_NAMES, reason_names=REASON_NAMES,
    )


_SEVERITY_STYLE = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "cyan"}


def summary_table(report: Report) -> Table:
    """The terminal summary (printed by the CLI with rich)."""
    verdict = "[green]consistent 一致[/]" if report.verdict == "consistent" else "[red]inconsistent 不一致[/]"
    table = Table(title=f"{report.filing_id} · {report.enterprise_id} · {verdict}", title_justify="left")
    columns = ("check 检查项", "scenario 场景", "subject 对象", "severity", "expected 备案", "observed 实测")
    for col in columns:
        table.add_column(col, overflow="fold")
    for f in report.findings:
        table.add_row(f.check, f.scenario_id or "—", f.subject,
                      f"[{_SEVERITY_STYLE.get(f.severity, '')}]{f.severity}[/]",
                      _short(f.expected), _short(f.observed))
    for c in report.checks:
        if c.status == "error":
            table.add_row(c.check, "—", "—", "[magenta]error[/]", "—", c.error or "")
    o = report.observed
    table.caption = (f"{o.flows:,} cross-border flows, {o.bytes_out:,} bytes out, persons "
                     f"{o.persons_nonsensitive:,} non-sensitive / {o.persons_sensitive:,} sensitive")
    n_est, s_est = o.persons_nonsensitive_estimate, o.persons_sensitive_estimate
    if n_est and s_est:
        table.caption += (f" — exact over inspected flows, flows sampled at ≥ {_pct(o.sampling_rate_min)}; "
                          f"estimated ≈ {n_est.value:,} / ≈ {s_est.value:,}")
    if o.coverage is not None:
        table.caption += "\n" + coverage_line(o.coverage)
    return table


def coverage_line(c: Coverage) -> str:
    """Coverage in plain sentences (terminal): the inspected share and bytes by visibility, the warning when
    the verdict rests on a small share of the traffic, the top reasons and the largest uninspected
    destinations."""
    if c.inspected_share is None:
        return "Coverage: no cross-border bytes out in the period"
    seen = ", ".join(f"{v} {b:,}" for v, b in c.by_visibility.items() if b)
    lines = [f"Coverage: {_share(c.inspected_share)} of cross-border bytes out inspected "
             f"({c.inspected_bytes_out:,} of {c.bytes_out:,}; {seen})."]
    if c.small_share:
        lines.append(f"[bold red]Warning: the verdict rests on {_share(c.inspected_share)} of the "
                     f"cross-border traffic (under {_share(c.small_share_threshold)} inspected).[/]")
    reasons = [_reason_bytes(r) for r in c.uninspected_by_reason if r.bytes_out][:4]
    if reasons:
        lines.append("Not inspected: " + ", ".join(reasons) + ".")
    largest = [f"{_short(d.destination, 40)} ({', '.join(_reason_bytes(r) for r in d.reasons[:2])})"
               for d in c.uninspected_destinations[:3]]
    if largest:
        lines.append("Largest uninspected destinations: " + ", ".join(largest) + ".")
    return "\n".join(lines)


def _reason_bytes(r: ReasonBytes) -> str:
    return f"{r.reason or 'no content'} {r.bytes_out:,}"


def _share(v: float) -> str:
    """A share as a percentage, never rounded up to 100 % or down to 0 % unless it is exactly that."""
    pct = v * 100
    if 0 < pct < 0.1:
        return "< 0.1 %"
    if 99.9 < pct < 100:
        return "> 99.9 %"
    return f"{pct:.3g} %"


def _short(v: object, width: int = 60) -> str:
    s = ", ".join(map(str, v)) if isinstance(v, list) else ("—" if v is None else str(v))
    # rich markup in values (e.g. "[x]") must print literally
    s = s.replace("[", r"\[")
    return s if len(s) <= width else s[: width - 1] + "…"
