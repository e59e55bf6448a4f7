"""The checks and their shared views are written in the SQL that sqlglot translates faithfully to Spark
(engineering notes, "Spark and sqlglot"): every file translates without an unsupported construct, and none
uses one the notes found translated wrongly or not at all (ordered list aggregates, list slicing or
indexing, epoch functions, len on a list, DuckDB's format, timezone(); `array_slice`, `concat`,
`AT TIME ZONE` and sorting a list of structs are the faithful forms)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import sqlglot
from sqlglot import exp

from collector.checks.runner import CHECKS_DIR

FILES = sorted(CHECKS_DIR.glob("*.sql"))
# Function classes sqlglot maps wrongly to Spark (or that have no Spark equivalent of the same meaning).
WRONG = (exp.UnixToTime, exp.TimeToUnix, exp.Length, exp.Format)
UNTRANSLATED = {"list_slice", "timezone", "epoch_ms", "epoch"}


def _literal_text(fmt: exp.Expression | None) -> bool:
    """Whether a strftime format holds letters that are not %-directives."""
    if not isinstance(fmt, exp.Literal):
        return False
    return any(c.isalpha() for c in re.sub(r"%.", "", fmt.this))


def unfaithful(sql: str) -> list[str]:
    """What in `sql` (DuckDB) would not mean the same on Spark after sqlglot's translation."""
    problems = []
    for tree in sqlglot.parse(sql, read="duckdb"):
        assert tree is not None
        sqlglot.transpile(tree.sql(dialect="duckdb"), read="duckdb", write="spark",
                          unsupported_level=sqlglot.ErrorLevel.RAISE)
        for node in tree.walk():
            if isinstance(node, exp.Bracket):
                problems.append(f"list slicing or indexing: {node.sql('duckdb')}")
            elif isinstance(node, exp.AggFunc) and node.find(exp.Order):
                problems.append(f"ordered aggregate: {node.sql('duckdb')}")
            elif isinstance(node, WRONG):
                problems.append(f"{type(node).__name__}: {node.sql('duckdb')}")
            elif isinstance(node, exp.TimeToStr) and _literal_text(node.args.get("format")):
                # Spark's datetime patterns reject unquoted letters ('%H:%M CST' -> 'HH:mm CST' fails)
                problems.append(f"text inside a strftime format: {node.sql('duckdb')}")
            elif isinstance(node, exp.Anonymous) and str(node.this).lower() in UNTRANSLATED:
                problems.append(f"untranslated {node.this}()")
    return problems


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_every_check_file_is_in_the_sql_sqlglot_translates_faithfully(path: Path) -> None:
    assert unfaithful(path.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize("sql", [
    "SELECT list(flow_id ORDER BY ts_start)[1:5] FROM t",
    "SELECT first(band ORDER BY strength DESC) FROM t",
    "SELECT epoch(ts), epoch_ms(ts) FROM t",
    "SELECT len(l), format('{} x', n), timezone('Asia/Shanghai', ts), list_slice(l, 1, 2) FROM t",
    "SELECT strftime(ts AT TIME ZONE 'Asia/Shanghai', '%Y-%m-%d %H:%M CST') FROM t",
])
def test_the_constructs_the_notes_name_are_found(sql: str) -> None:
    assert unfaithful(sql)


def test_the_faithful_forms_pass() -> None:
    sql = ("SELECT array_slice(list_sort(list_distinct(list(x))), 1, 5), array_length(l), concat('a', n), "
           "strftime(ts AT TIME ZONE 'Asia/Shanghai', '%Y'), arg_min(b, r), "
           "list_transform(list_sort(list(struct_pack(k := r, v := b))), lambda s: s.v) FROM t GROUP BY ALL")
    assert unfaithful(sql) == []
