"""The enterprise self-check: an agent's records + the enterprise's filing -> the §7 report, on one machine.

load records, filing and any negative lists into an in-memory DuckDB -> link persons -> run every check
-> assemble the report -> write `report.json` and `report.html`. Both files are written to temporary names
in the output directory and renamed into place, so a crash never leaves a half-written report behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from collector.checks.runner import run_checks
from collector.models import Filing, Report
from collector.negative_lists import NegativeList
from collector.persons import CST, build_record_persons, calendar_year, year_of
from collector.reports import build_report, render_html, render_json
from collector.store import Store

log = logging.getLogger(__name__)

__all__ = ["report_period", "run_selfcheck", "write_reports"]


def report_period(store: Store, year: int | None = None) -> tuple[datetime, datetime]:
    """The calendar year (CST) to count in: `year`, else the year of the latest flow, else this year.

    The data decides by default, so that checking last December's capture in January counts last year.
    """
    if year is None:
        latest = store.con.execute("SELECT max(ts_start) FROM flows").fetchall()[0][0]
        year = year_of(latest) if latest is not None else datetime.now(CST).year
    return calendar_year(year)


def run_selfcheck(
    records_dir: Path,
    filing: Filing,
    out_dir: Path | None,
    *,
    year: int | None = None,
    generated_at: datetime | None = None,
    negative_lists: Sequence[NegativeList] = (),
) -> Report:
    """Check `records_dir` (an agent spool) against `filing`; write the report files when `out_dir` is set.

    The checks run as of `as_of` = min(end of the period, `generated_at` or now): a check projecting a
    year-to-date count (significant_change) needs to know how much of the year has passed.
    Raises `store.RecordsError` for an unusable records directory and `OSError` when the output
    directory cannot be written.
    """
    with Store() as store:
        store.load_records(Path(records_dir))
        store.load_filing(filing)
        store.load_negative_lists(negative_lists)
        _warn_other_enterprises(store, filing.processor.id)
        persons = build_record_persons(store.con)
        period = report_period(store, year)
        log.info("period %s .. %s, %d persons linked", period[0].isoformat(), period[1].isoformat(), persons)
        generated_at = (generated_at or datetime.now(CST)).astimezone(CST)
        as_of = min(period[1], generated_at)
        results = run_checks(store.con, {"period_from": period[0], "period_to": period[1], "as_of": as_of})
        report = build_report(store.con, filing, period, results, generated_at)
    if out_dir is not None:
        write_reports(report, filing, Path(out_dir))
    return report


def _warn_other_enterprises(store: Store, enterprise_id: str) -> None:
    # Records stamped for another enterprise usually mean the wrong filing or spool was given.
    rows = store.con.execute(
        "SELECT DISTINCT enterprise_id FROM flows WHERE enterprise_id <> $e", {"e": enterprise_id}
    ).fetchall()
    others = [r[0] for r in rows]
    if others:
        log.warning("records carry enterprise_id %s, the filing is for %s", ", ".join(sorted(others)),
                    enterprise_id)


def write_reports(report: Report, filing: Filing | None, out_dir: Path) -> dict[str, Path]:
    """Write report.json and report.html atomically (temp file + rename); returns the final paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    contents = {"report.json": render_json(report), "report.html": render_html(report, filing)}
    staged: dict[str, str] = {}
    try:
        for name, text in contents.items():
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=out_dir)
            staged[name] = tmp
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
        for name, tmp in staged.items():
            os.replace(tmp, out_dir / name)
    finally:
        for tmp in staged.values():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    return {name: out_dir / name for name in contents}
