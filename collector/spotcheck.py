"""A spot check inside the collector service (Measures Art. 13): one stored filing version, the stored
records of its enterprise and the current negative lists -> a stored §7 report.

The same inspection as the enterprise self-check (collector/inspection.py), against the warehouse instead
of a spool: an in-memory DuckDB gets views over the enterprise's Parquet files of the period's days (the
warehouse's file index), the filing and the lists as tables, then persons, every check, the report. The
report names the filing version and each list's version and digest it used, so the verdict can be
reproduced later.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from pydantic import ValidationError

from collector.bounds import date_problem
from collector.errors import RequestProblem
from collector.inspection import run_inspection
from collector.models import Filing, Report, Status, describe_validation_error
from collector.negative_lists import NegativeList, NegativeListError, parse_negative_list
from collector.person_counts import index_persons
from collector.persons import CST, calendar_year
from collector.reports import render_json
from collector.warehouse import Version, Warehouse

log = logging.getLogger(__name__)

__all__ = ["CheckRequestError", "SpotCheck", "period_for", "run_spot_check"]


class CheckRequestError(RequestProblem):
    """A check that cannot run as asked: an unknown filing (404), a period that ends before it starts or
    lies outside the dates the checks compute with, a stored filing that no longer validates (422)."""


@dataclass(frozen=True, slots=True)
class SpotCheck:
    report_id: str
    report: Report


def period_for(start: date | None, end: date | None, now: datetime) -> tuple[datetime, datetime]:
    """Dates are CST calendar days, `end` inclusive; by default the calendar year (CST) of `now`.
    A day outside collector/bounds.py's range is a 422 naming `from` or `to` (9999-12-31 + 1 day
    overflowed into a 500)."""
    for field, day in (("from", start), ("to", end)):
        if (problem := date_problem(day)) is not None:
            raise CheckRequestError(422, field, f"{field}: {problem}")
    if start is None and end is None:
        return calendar_year(now.astimezone(CST).year)
    year_from, year_to = calendar_year((start or end or now.date()).year)
    lo = datetime.combine(start, time(), CST) if start else year_from
    hi = datetime.combine(end + timedelta(days=1), time(), CST) if end else year_to
    if hi <= lo:
        raise CheckRequestError(422, "to", "to: must not be before from")
    return lo, hi


def _filing(version: Version) -> Filing:
    """The stored filing; one stored before a bound was added (a scale of 2**63) is a 422 naming the field
    and asking for a corrected upload, not a 500 on every run."""
    try:
        return Filing.model_validate(version.body)
    except ValidationError as e:
        raise CheckRequestError(422, "filing_id", f"filing_id: stored filing {version.doc_id} "
                                f"v{version.version} no longer validates ({describe_validation_error(e)}); "
                                "upload a corrected version") from None


def _negative_lists(warehouse: Warehouse, area: str | None
                    ) -> tuple[list[NegativeList], list[dict[str, Any]]]:
    """The lists a check of a filing in `area` applies: those its area's regulators keep. A list stored
    before lists had an owner (ftz_area NULL) applies everywhere until a regulator stores a new version,
    which makes it that area's. Another area's list never changes this area's verdicts."""
    lists, refs = [], []
    for v in warehouse.latest_documents("negative_list", area=area or ""):
        try:
            lists.append(parse_negative_list(v.body, f"negative list {v.doc_id} v{v.version}"))
        except NegativeListError as e:   # stored before a bound was added: loud, never silently skipped
            raise CheckRequestError(422, "negative_lists", f"negative_lists: stored {e}; upload a corrected "
                                    "version") from None
        refs.append({"list_id": v.doc_id, "version": str(v.version), "sha256": v.sha256})
    return lists, refs


def run_spot_check(warehouse: Warehouse, filing_id: str, *, start: date | None = None,
                   end: date | None = None, trigger: str = "api", now: datetime | None = None,
                   engine: str = "duckdb", spark_master: str | None = None) -> SpotCheck:
    """Check the latest version of `filing_id`; raises CheckRequestError for an unknown filing. `engine`
    "spark" runs the same checks on Apache Spark (`spark_master`) over the same files."""
    version = warehouse.get_document("filing", filing_id)
    if version is None:
        raise CheckRequestError(404, "filing_id", f"filing_id: no filing {filing_id!r} has been uploaded")
    filing = _filing(version)
    now = (now or datetime.now(CST)).astimezone(CST)
    period = period_for(start, end, now)
    lists, refs = _negative_lists(warehouse, version.ftz_area)
    # Under a lease (compaction may swap files meanwhile), only the files that can hold the period's rows.
    # The person index lives in the warehouse's DuckDB: Spark links the period itself.
    with warehouse.reading(filing.processor.id, period) as files:
        index = index_persons(warehouse, filing.processor.id, period) if engine == "duckdb" else None
        done = run_inspection(files, filing, negative_lists=lists, period=period, now=now,
                              report_id=uuid.uuid4().hex, filing_version=version.version, list_refs=refs,
                              max_records_per_key=warehouse.max_records_per_key, link_persons=index,
                              engine=engine, spark_master=spark_master)
    report, persons = done.report, done.persons
    assert report is not None
    report_id = warehouse.store_report(report, render_json(report), str(filing.ftz_area), trigger)
    log.info("spot check %s (%s) of %s v%d: %s, %d finding(s), %d persons linked", report_id, trigger,
             filing_id, version.version, report.verdict, len(report.findings), persons)
    return SpotCheck(report_id, report)


def active_filings(warehouse: Warehouse, today: date) -> list[str]:
    """Filings whose latest version is active and valid today: what the schedule checks."""
    out = []
    for v in warehouse.latest_documents("filing"):
        try:
            f = _filing(v)
        except CheckRequestError as e:   # one stale filing must not stop the schedule for every other
            log.warning("not scheduled: %s", e)
            continue
        if f.status == Status.active and f.valid_from <= today <= f.valid_until:
            out.append(f.filing_id)
    return out
