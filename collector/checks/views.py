"""The period the checks and the report count in, and the shared views over it (collector/checks/views.sql).

`use_period` writes the one-row table `period` and (re)creates the views of views.sql, so a check, the
report's `observed` block, the person counts and the estimates all read "cross-border flows of the period"
from one definition (`period_flows`) instead of each repeating the predicate with its own parameters.
"""

from __future__ import annotations

import logging
import re
import weakref
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

log = logging.getLogger(__name__)

__all__ = ["VIEWS_FILE", "VIEWS_SQL", "load_views", "statements", "use_period"]

VIEWS_FILE = "views.sql"
VIEWS_SQL = Path(__file__).resolve().parent / VIEWS_FILE
_STATEMENT_END = re.compile(r";[ \t]*$", re.MULTILINE)
_DAY = 86400.0


def statements(sql: str) -> list[str]:
    """The statements of a views or check file: each ends with a semicolon at the end of a line (the last
    may omit it; no statement holds one inside); comment-only pieces are dropped."""
    parts = (p.strip() for p in _STATEMENT_END.split(sql))
    return [p for p in parts if any(line.strip() and not line.lstrip().startswith("--")
                                    for line in p.splitlines())]


def load_views(con: duckdb.DuckDBPyConnection, views: Path = VIEWS_SQL) -> list[str]:
    """Create or replace every view of `views`; returns the statements skipped because an input table
    is not loaded (a store without a filing has no scenario_flows). Any other error raises."""
    skipped = []
    for stmt in statements(views.read_text(encoding="utf-8")):
        try:
            con.execute(stmt)
        except duckdb.CatalogException as e:
            first = stmt.split("AS", 1)[0].strip().splitlines()[-1]
            log.debug("view not created (%s): %s", first, str(e).splitlines()[0])
            skipped.append(first)
    return skipped


# What `use_period` last set on a connection: (period row, views file) — the views read the one-row `period`
# table by name, so once they are all created a new period only rewrites that row. A report sets the period
# seven times (persons, checks, observed counts, estimates, coverage…); on Spark each statement costs ~0.3 s.
_SET: weakref.WeakKeyDictionary[Any, tuple[tuple[datetime, datetime, datetime], Path]] = \
    weakref.WeakKeyDictionary()


def use_period(
    con: duckdb.DuckDBPyConnection,
    period: tuple[datetime, datetime],
    as_of: datetime | None = None,
    views: Path = VIEWS_SQL,
) -> None:
    """Count in `period` (aware datetimes, `to` exclusive) as of `as_of` (default: the period end)."""
    start, end = period
    as_of = as_of or end
    last = _SET.get(con)
    if last is not None and last == ((start, end, as_of), views):
        return
    con.execute(
        "CREATE OR REPLACE TABLE period AS SELECT $period_from::TIMESTAMPTZ AS period_from, "
        "$period_to::TIMESTAMPTZ AS period_to, $as_of::TIMESTAMPTZ AS as_of, "
        "$days::DOUBLE AS days_in_period, $elapsed::DOUBLE AS elapsed_days",
        {"period_from": start, "period_to": end, "as_of": as_of,
         "days": (end - start).total_seconds() / _DAY, "elapsed": (as_of - start).total_seconds() / _DAY},
    )
    # A view over a table not loaded yet was skipped: create them all again next time.
    if (last is None or last[1] != views) and load_views(con, views):
        _SET.pop(con, None)
        return
    _SET[con] = ((start, end, as_of), views)
