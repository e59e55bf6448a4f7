"""The Spark side of collector/store.py: the same tables and views, for the checks on Apache Spark.

Records: one view per record type over the exact Parquet files the warehouse lists (`spark.read.parquet`
with mergeSchema, like DuckDB's union_by_name), with the columns added after schema v1 filled by the SAME
select list store.py builds (`record_select`, translated by the adapter). The small tables (filing,
recipients, scenarios, catalog, negative-list entries, field types) are made by store.py's own code in an
in-memory DuckDB and shipped to Spark as Arrow; `flow_recipients` takes the flows' distinct destinations
from Spark, matches them in Python (`destination_matches`, as store.py does) and joins in Spark with
store.py's SQL; `scenario_flows` is store.py's view.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from agent.records import RECORD_TYPES
from collector.models import Filing
from collector.negative_lists import NegativeList
from collector.spark_sql import SparkConnection
from collector.store import (
    DESTINATIONS_SQL,
    FLOW_RECIPIENTS_SQL,
    SCENARIO_FLOWS_SQL,
    SMALL_TABLES,
    RecordsError,
    Store,
    destination_matches,
    field_types_table,
    record_select,
)

log = logging.getLogger(__name__)

__all__ = ["load_spark_store"]


def load_spark_store(con: SparkConnection, files: Mapping[str, Sequence[Path]], filing: Filing,
                     negative_lists: Sequence[NegativeList] = ()) -> None:
    """Every table and view store.py gives DuckDB, on the adapter's Spark session."""
    for record_type, (_, schema) in RECORD_TYPES.items():
        paths = [str(p) for p in files.get(record_type, ())]
        if paths:
            _parquet_view(con, record_type, paths)
        else:   # an enterprise with no records of a type yet is checked, not refused
            con.register(record_type, schema.empty_table())
    with Store() as small:
        small.load_filing(filing)
        small.load_negative_lists(negative_lists)
        small.replace_table("field_types", field_types_table())
        for name in SMALL_TABLES:
            con.register(name, small.con.sql(f"SELECT * FROM {name}").to_arrow_table())
    pairs = con.execute(DESTINATIONS_SQL).fetchall()
    con.register("_dest_matches", destination_matches(filing, pairs))
    try:
        con.execute("DROP TABLE IF EXISTS flow_recipients")
        con.execute(FLOW_RECIPIENTS_SQL)
    finally:
        con.unregister("_dest_matches")
    con.execute(SCENARIO_FLOWS_SQL)
    log.info("Spark store: %s files, %d destinations", {t: len(f) for t, f in files.items()}, len(pairs))


def _parquet_view(con: SparkConnection, record_type: str, paths: list[str]) -> None:
    try:
        df = con.spark.read.option("mergeSchema", "true").parquet(*paths)
    except Exception as e:  # AnalysisException and the JVM's IO errors: one line naming the folder
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise RecordsError(f"{Path(paths[0]).parent}: unreadable Parquet: {first}") from None
    raw = f"_raw_{record_type}"
    con.register_dataframe(raw, df)
    select = record_select(record_type, df.columns, Path(paths[0]).parent)
    con.execute(f"CREATE OR REPLACE VIEW {record_type} AS {select} FROM {raw}")
