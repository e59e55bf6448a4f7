"""One inspection: records + filing + negative lists -> persons -> every check -> the §7 report.

The one run sequence behind the enterprise self-check (selfcheck.py), the collector's spot checks
(spotcheck.py, on demand and scheduled) and the tests: an in-memory DuckDB store gets the records (a spool
directory, or the warehouse's files per record type), the filing and the lists; persons are linked; the
checks run over the period as of `as_of`; the report is assembled while the store is still open.
With `engine="spark"` the same statements run on Apache Spark through collector/spark_sql.py's adapter over
the same Parquet files (spark_store.py builds the same tables): one SQL source, the same findings and counts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

from collector.checks.runner import CHECKS_DIR, CheckResult, run_checks
from collector.models import Filing, Report
from collector.negative_lists import NegativeList
from collector.persons import (
    CST,
    DEFAULT_MAX_RECORDS_PER_KEY,
    Linking,
    build_record_persons,
    calendar_year,
    year_of,
)
from collector.reports import build_report
from collector.store import Store, record_files_in

log = logging.getLogger(__name__)

__all__ = ["ENGINES", "Inspection", "report_period", "run_inspection"]

Records = Path | Mapping[str, Sequence[Path]]
# Creates `record_persons` in the store's connection for the period and says what it linked: relinking
# (persons.build_record_persons, the default) or reading the collector's person index (person_index.py).
LinkPersons = Callable[[duckdb.DuckDBPyConnection, tuple[datetime, datetime]], Linking]

ENGINES = ("duckdb", "spark")


@dataclass(frozen=True, slots=True)
class Inspection:
    period: tuple[datetime, datetime]
    as_of: datetime
    persons: int                       # distinct persons linked over the period's records
    results: tuple[CheckResult, ...]   # one per check, in file-name order
    report: Report | None              # None when run with report=False
    linking: Linking | None = None     # what linking found (over-shared keys, key ids)

    def by_check(self) -> dict[str, CheckResult]:
        return {r.check: r for r in self.results}


def report_period(store: Store | Any, year: int | None = None) -> tuple[datetime, datetime]:
    """The calendar year (CST) to count in: `year`, else the year of the latest flow, else this year.

    The data decides by default, so that checking last December's capture in January counts last year.
    `store` is a Store or a connection (DuckDB's or the Spark adapter).
    """
    if year is None:
        con = store.con if isinstance(store, Store) else store
        latest = con.execute("SELECT max(ts_start) FROM flows").fetchall()[0][0]
        year = year_of(latest) if latest is not None else datetime.now(CST).year
    return calendar_year(year)


def run_inspection(
    records: Records,
    filing: Filing,
    *,
    negative_lists: Sequence[NegativeList] = (),
    period: tuple[datetime, datetime] | None = None,
    year: int | None = None,
    now: datetime | None = None,
    checks_dir: Path = CHECKS_DIR,
    report: bool = True,
    report_id: str | None = None,
    filing_version: int | None = None,
    list_refs: Iterable[object] = (),
    max_records_per_key: int = DEFAULT_MAX_RECORDS_PER_KEY,
    link_persons: LinkPersons | None = None,
    engine: str = "duckdb",
    spark_master: str | None = None,
) -> Inspection:
    """Inspect `records` against `filing` over `period` (default: report_period for `year`).

    The checks run as of `as_of` = min(end of the period, `now`): a check projecting a year-to-date count
    (significant_change) needs to know how much of the year has passed. `now` (default: the current time)
    is also the report's generated_at; report_id, filing_version and list_refs go into the report.
    Persons are linked over the period's records (`max_records_per_key`, DESIGN §5), or taken from
    `link_persons` (the collector's person index for a calendar year). `engine` "spark" runs it all on
    Apache Spark (`spark_master`, default local[2]). Raises `store.RecordsError` for an unusable records
    directory.
    """
    with _connection(engine, records, filing, negative_lists, spark_master) as con:
        _warn_other_enterprises(con, filing.processor.id)
        period = period or report_period(con, year)
        if link_persons is None:
            linking = build_record_persons(con, period, max_records_per_key=max_records_per_key)
        else:
            linking = link_persons(con, period)
        persons = linking.persons
        now = (now or datetime.now(CST)).astimezone(CST)
        as_of = min(period[1], now)
        log.info("period %s .. %s as of %s, %d persons linked", period[0].isoformat(), period[1].isoformat(),
                 as_of.isoformat(), persons)
        results = run_checks(con, {"period_from": period[0], "period_to": period[1], "as_of": as_of},
                             checks_dir)
        built = build_report(con, filing, period, results, now, report_id=report_id,
                             filing_version=filing_version, negative_lists=list_refs,
                             linking=linking) if report else None
    return Inspection(period, as_of, persons, tuple(results), built, linking)


@contextmanager
def _connection(engine: str, records: Records, filing: Filing, negative_lists: Sequence[NegativeList],
                spark_master: str | None) -> Iterator[Any]:
    """The loaded store's connection: DuckDB's, or the Spark adapter's over the same files."""
    if engine not in ENGINES:
        raise ValueError(f"engine: {engine!r} is not one of {', '.join(ENGINES)}")
    if engine == "duckdb":
        with Store() as store:
            if isinstance(records, Mapping):
                store.load_record_files(records)
            else:
                store.load_records(Path(records))
            store.load_filing(filing)
            store.load_negative_lists(negative_lists)
            yield store.con
        return
    from collector.spark_session import DEFAULT_MASTER, spark_session
    from collector.spark_sql import SparkConnection
    from collector.spark_store import load_spark_store

    files = records if isinstance(records, Mapping) else record_files_in(Path(records))
    with SparkConnection(spark_session(spark_master or DEFAULT_MASTER)) as con:
        load_spark_store(con, files, filing, negative_lists)
        yield con


def _warn_other_enterprises(con: Any, enterprise_id: str) -> None:
    # Records stamped for another enterprise usually mean the wrong filing or spool was given.
    rows = con.execute(
        "SELECT DISTINCT enterprise_id FROM flows WHERE enterprise_id <> $e", {"e": enterprise_id}
    ).fetchall()
    others = [r[0] for r in rows]
    if others:
        log.warning("records carry enterprise_id %s, the filing is for %s", ", ".join(sorted(others)),
                    enterprise_id)
