"""collector/spark_sql.py: the DuckDB-shaped adapter runs the statement forms the collector uses on Spark
with DuckDB's answers, and refuses the others (never a silent fallback to DuckDB)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from collector.spark_session import spark_available
from collector.spark_sql import SparkConnection, SparkTranslationError

TS = datetime(2026, 3, 1, 23, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def con() -> Any:
    problem = spark_available()
    if problem:
        pytest.skip(problem)
    from collector.spark_session import spark_session

    c = SparkConnection(spark_session())
    yield c
    c.close()


def both(con: SparkConnection, *statements: str, params: dict | None = None) -> tuple[list, list]:
    """The last statement's rows on DuckDB and on Spark, every statement run on each."""
    duck = duckdb.connect()
    try:
        for s in statements[:-1]:
            duck.execute(s)
            con.execute(s)
        return duck.execute(statements[-1], params).fetchall(), con.execute(statements[-1], params).fetchall()
    finally:
        duck.close()


def test_parameters_timestamps_and_division_come_back_as_duckdb_gives_them(con: SparkConnection) -> None:
    d, s = both(con, "SELECT $ts::TIMESTAMPTZ AS ts, 1.0 / 3 AS third, 7 / 2 AS half, "
                     "CAST($ts::TIMESTAMPTZ AT TIME ZONE 'Asia/Shanghai' AS DATE) AS day, "
                     "count(*) AS n, sum(x) AS total FROM (VALUES (1), (2)) v(x)", params={"ts": TS})
    assert s == d
    (ts, third, half, day, n, total), = s
    assert ts == TS and ts.tzinfo is not None and third == pytest.approx(1 / 3, rel=1e-15) and half == 3.5
    assert str(day) == "2026-03-02" and n == 2 and total == 3


def test_create_table_drop_and_rename_are_spark_temp_views(con: SparkConnection) -> None:
    con.execute("CREATE OR REPLACE TEMP TABLE _t_a AS SELECT 1 AS k, 'x' AS v; DROP TABLE IF EXISTS _t_b; "
                "ALTER TABLE _t_a RENAME TO _t_b")
    assert con.execute("SELECT k, v FROM _t_b").fetchall() == [(1, "x")]
    with pytest.raises(Exception, match=r"(?i)_t_a"):
        con.execute("SELECT * FROM _t_a")
    con.execute("CREATE OR REPLACE TABLE _t_b AS SELECT k + 1 AS k FROM _t_b")   # reads its old self
    assert con.execute("SELECT k FROM _t_b").fetchone() == (2,)
    con.execute("DROP TABLE _t_b")
    with pytest.raises(duckdb.CatalogException):
        con.execute("DROP TABLE _t_b")
    con.execute("DROP TABLE IF EXISTS _t_b")


def test_a_cursors_temp_views_end_with_it_and_it_sees_the_connections_tables(con: SparkConnection) -> None:
    con.register("_t_in", pa.table({"k": [3, 1, 2]}))
    cur = con.cursor()
    cur.execute("CREATE OR REPLACE TEMP VIEW _t_hits AS SELECT k FROM _t_in WHERE k > 1")
    result = cur.execute("SELECT list_sort(list(k)) AS ks FROM _t_hits")
    assert [d[0] for d in result.description] == ["ks"] and result.fetchall() == [([2, 3],)]
    cur.close()
    with pytest.raises(Exception, match=r"(?i)_t_hits"):
        con.execute("SELECT * FROM _t_hits")
    con.unregister("_t_in")


@pytest.mark.parametrize("sql", [
    "INSERT INTO _t_x VALUES (1)",
    "UPDATE _t_x SET k = 1",
    "DESCRIBE SELECT 1",
    "CREATE OR REPLACE VIEW _t_v AS SELECT $p AS x",
])
def test_statements_outside_the_forms_are_refused(con: SparkConnection, sql: str) -> None:
    with pytest.raises(SparkTranslationError):
        con.execute(sql, {"p": 1} if "$p" in sql else None)


def test_positional_parameters_are_refused(con: SparkConnection) -> None:
    with pytest.raises(SparkTranslationError, match=r"\$name"):
        con.execute("SELECT ?", [1])


def test_decimals_and_structs_keep_duckdb_types(con: SparkConnection) -> None:
    d, s = both(con, "SELECT CAST(2.50 AS DECIMAL(10, 2)) AS d, struct_pack(a := 1, b := 'x') AS st, "
                     "['b', 'a'] AS l")
    assert s == d and isinstance(s[0][0], Decimal)


def test_a_missing_table_is_duckdbs_catalog_error(con: SparkConnection) -> None:
    # views.load_views skips a view over a table not loaded (no filing yet) on exactly this class.
    with pytest.raises(duckdb.CatalogException):
        con.execute("CREATE OR REPLACE VIEW _t_v AS SELECT * FROM _t_not_there")
    with pytest.raises(duckdb.Error, match="_t_not_there"):
        con.execute("SELECT * FROM _t_not_there")
