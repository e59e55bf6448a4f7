"""A DuckDB-connection-shaped adapter over a SparkSession: the collector's one SQL source runs on Spark.

persons.py, views.sql, evidence.sql, every check and the report's queries call `con.execute(sql, params)`,
`fetchall()`, `fetchone()`, `description`, `cursor()`, `register()`; `SparkConnection` answers the same
calls by parsing the DuckDB SQL with sqlglot and running its Spark translation, so no query has a second,
hand-kept Spark copy. What the statements mean on Spark:

- `SELECT …` (and WITH, UNION): `spark.sql(translated, args=params)`, `$name` becoming `:name`;
- `CREATE [OR REPLACE] [TEMP] TABLE x AS SELECT …`: the SELECT's DataFrame, materialised with
  `localCheckpoint` (an iterative computation such as person linking would otherwise grow its lineage
  every round), registered as the temp view x;
- `CREATE [OR REPLACE] [TEMP] VIEW x AS …`: a temp view (a Spark view over temp views must be temp);
- `DROP TABLE|VIEW [IF EXISTS] x`, `ALTER TABLE a RENAME TO b`: on the session's temp views.

Anything else raises `SparkTranslationError`: nothing silently falls back to DuckDB. Two rewrites keep the
meaning DuckDB gives: `/` divides in floating point (Spark's decimal division rounds to 6 places), and
results come back through Arrow with timestamps aware in UTC, like DuckDB's TIMESTAMPTZ. A cursor shares
the session; the temp views it created are dropped when it closes, as a DuckDB cursor's are.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa
import sqlglot
from sqlglot import exp

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

__all__ = ["SparkConnection", "SparkResult", "SparkTranslationError", "translate"]


class SparkTranslationError(duckdb.Error):
    """A statement the adapter does not run on Spark (it never falls back to DuckDB)."""


def _double_division(node: exp.Expr) -> exp.Expr:
    # DuckDB's `/` always divides in DOUBLE; Spark keeps DECIMAL (1.0 / 3 = 0.333333) unless told.
    if isinstance(node, exp.Div) and not getattr(node, "_egress_cast", False):
        left = exp.Cast(this=node.this.copy(), to=exp.DataType.build("DOUBLE"))
        div = exp.Div(this=left, expression=node.expression.copy())
        div._egress_cast = True  # type: ignore[attr-defined]
        return div
    return node


def translate(node: exp.Expr) -> str:
    """One parsed DuckDB expression as Spark SQL text."""
    return node.transform(_double_division).sql(dialect="spark", unsupported_level=sqlglot.ErrorLevel.RAISE)


def _name(table: exp.Expr | None) -> str:
    if table is None:
        raise SparkTranslationError("a statement without a table name")
    t = table.this if isinstance(table, exp.Schema) else table
    if not isinstance(t, exp.Table):
        raise SparkTranslationError(f"not a table name: {table.sql('duckdb')}")
    if t.args.get("db"):
        raise SparkTranslationError(f"qualified names are not supported on Spark: {t.sql('duckdb')}")
    return t.name.lower()


class SparkResult:
    """The rows of one statement, fetched through Arrow (DuckDB's result calls: fetchall/fetchone)."""

    def __init__(self, table: pa.Table | None) -> None:
        self._rows: list[tuple[Any, ...]] = []
        self.description: list[tuple[Any, ...]] | None = None
        if table is not None:
            self.description = [(f.name, str(f.type), None, None, None, None, None) for f in table.schema]
            columns = [c.to_pylist() for c in table.columns]
            self._rows = list(zip(*columns, strict=True)) if columns else []
        self._next = 0

    def fetchall(self) -> list[tuple[Any, ...]]:
        rows, self._next = self._rows[self._next:], len(self._rows)
        return rows

    def fetchone(self) -> tuple[Any, ...] | None:
        if self._next >= len(self._rows):
            return None
        self._next += 1
        return self._rows[self._next - 1]


def _as_duckdb_error(e: Exception) -> duckdb.Error:
    """A missing table is DuckDB's CatalogException (views.load_views skips on it); the rest duckdb.Error,
    with Spark's first line."""
    first = str(e).splitlines()[0] if str(e) else type(e).__name__
    if "TABLE_OR_VIEW_NOT_FOUND" in first:
        return duckdb.CatalogException(f"Catalog Error: {first}")
    return duckdb.Error(f"{type(e).__name__}: {first}")


def _arrow(df: DataFrame) -> pa.Table:
    table = df.toArrow()
    # Spark's TIMESTAMP is an instant shown in the session zone (UTC): make it aware like TIMESTAMPTZ.
    fields = [pa.field(f.name, pa.timestamp("us", tz="UTC"))
              if pa.types.is_timestamp(f.type) and f.type.tz is None else f for f in table.schema]
    return table.cast(pa.schema(fields)) if fields != list(table.schema) else table


class SparkConnection:
    """`execute`/`cursor`/`register`/`close` of a DuckDB connection, over one SparkSession."""

    def __init__(self, spark: SparkSession, *, _parent: SparkConnection | None = None) -> None:
        self.spark = spark
        # Materialised tables (name -> DataFrame) are the session's, shared with every cursor.
        self._tables: dict[str, DataFrame] = _parent._tables if _parent else {}
        self._own_views: set[str] = set()
        self._is_cursor = _parent is not None
        self._last = SparkResult(None)
        self.statements_run: list[str] = _parent.statements_run if _parent else []

    # --- the DuckDB connection's calls ---------------------------------------------------------------

    def execute(self, sql: str, params: Mapping[str, Any] | Sequence[Any] | None = None) -> SparkResult:
        if params is not None and not isinstance(params, Mapping):
            raise SparkTranslationError("positional parameters are not supported on Spark: use $name")
        args = dict(params or {})
        try:
            trees = sqlglot.parse(sql, read="duckdb")
        except sqlglot.errors.ParseError as e:
            raise SparkTranslationError(f"sqlglot cannot parse: {str(e).splitlines()[0]}") from None
        result = SparkResult(None)
        for tree in trees:
            if tree is not None:
                try:
                    result = self._run(tree, args)
                except duckdb.Error:
                    raise
                except Exception as e:   # Spark's AnalysisException & co. as DuckDB's error classes
                    raise _as_duckdb_error(e) from None
        self._last = result
        return result

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self._last.fetchall()

    def fetchone(self) -> tuple[Any, ...] | None:
        return self._last.fetchone()

    @property
    def description(self) -> list[tuple[Any, ...]] | None:
        return self._last.description

    def cursor(self) -> SparkConnection:
        return SparkConnection(self.spark, _parent=self)

    def register(self, name: str, table: pa.Table) -> SparkConnection:
        self._put(name.lower(), self.spark.createDataFrame(table))
        return self

    def register_dataframe(self, name: str, df: DataFrame) -> SparkConnection:
        """A Spark DataFrame as a table (the record views' Parquet sources)."""
        self._put(name.lower(), df)
        return self

    def unregister(self, name: str) -> SparkConnection:
        self._drop(name.lower(), if_exists=True)
        return self

    def close(self) -> None:
        for name in sorted(self._own_views):
            self._drop(name, if_exists=True)
        self._own_views.clear()
        if not self._is_cursor:
            for name in list(self._tables):
                self._drop(name, if_exists=True)

    def __enter__(self) -> SparkConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- statements ----------------------------------------------------------------------------------

    def _run(self, tree: exp.Expr, args: dict[str, Any]) -> SparkResult:
        self.statements_run.append(translate(tree))   # what Spark was asked (tests read it)
        used = {p.name for p in tree.find_all(exp.Placeholder, exp.Parameter) if p.name}
        if isinstance(tree, exp.Create):
            return self._create(tree, {k: v for k, v in args.items() if k in used})
        if isinstance(tree, exp.Drop):
            kind = str(tree.args.get("kind") or "").upper()
            if kind not in ("TABLE", "VIEW"):
                raise SparkTranslationError(f"DROP {kind} is not supported on Spark")
            for table in tree.args.get("tables") or [tree.this]:
                self._drop(_name(table), if_exists=bool(tree.args.get("exists")))
            return SparkResult(None)
        if isinstance(tree, exp.Alter):
            return self._alter(tree)
        if isinstance(tree, exp.Query):
            text = translate(tree)
            df = self.spark.sql(text, args={k: v for k, v in args.items() if k in used} or None)
            return SparkResult(_arrow(df))
        raise SparkTranslationError(f"statement not supported on Spark: {tree.sql('duckdb')[:80]}")

    def _create(self, tree: exp.Create, args: dict[str, Any]) -> SparkResult:
        kind = str(tree.args.get("kind") or "").upper()
        name = _name(tree.this)
        query = tree.expression
        if not isinstance(query, exp.Query) or kind not in ("TABLE", "VIEW"):
            raise SparkTranslationError(f"only CREATE TABLE|VIEW … AS SELECT runs on Spark: {name}")
        exists = name in self._tables or self.spark.catalog.tableExists(name)
        if exists and not tree.args.get("replace"):
            if tree.args.get("exists"):   # IF NOT EXISTS
                return SparkResult(None)
            raise duckdb.CatalogException(f"Catalog Error: Table with name {name} already exists!")
        text = translate(query)
        if kind == "VIEW":
            if args:
                raise SparkTranslationError(f"view {name}: parameters cannot be bound into a Spark view")
            self._drop(name, if_exists=True)
            self.spark.sql(f"CREATE OR REPLACE TEMPORARY VIEW `{name}` AS {text}")
            if self._is_cursor:
                self._own_views.add(name)
        else:
            df = self.spark.sql(text, args=args or None).localCheckpoint(eager=True)
            self._put(name, df)
        return SparkResult(None)

    def _alter(self, tree: exp.Alter) -> SparkResult:
        actions = tree.args.get("actions") or []
        rename = actions[0] if len(actions) == 1 else None
        if rename is None or type(rename).__name__ not in ("AlterRename", "RenameTable"):
            raise SparkTranslationError(f"only ALTER TABLE … RENAME TO runs on Spark: {tree.sql('duckdb')}")
        old, new = _name(tree.this), _name(rename.this)
        df = self._tables.pop(old, None)
        if df is None:
            raise duckdb.CatalogException(f"Catalog Error: Table with name {old} does not exist!")
        self.spark.catalog.dropTempView(old)
        self._put(new, df)
        return SparkResult(None)

    def _put(self, name: str, df: DataFrame) -> None:
        self._drop(name, if_exists=True)
        df.createOrReplaceTempView(name)
        self._tables[name] = df

    def _drop(self, name: str, *, if_exists: bool) -> None:
        df = self._tables.pop(name, None)
        dropped = self.spark.catalog.dropTempView(name)
        if df is not None:
            df.unpersist()
        if not dropped and df is None and not if_exists:
            raise duckdb.CatalogException(f"Catalog Error: Table with name {name} does not exist!")
