"""The warehouse's flow-day index: each stored flow's day in China Standard Time (DESIGN §5, §9).

Counting and storage both go by the day a flow started in CST, not by the day its batch arrived: persons
are counted per calendar year (CST), and the Parquet dataset is partitioned by flow day. Rows of
`pi_values`, `detections` and `anomalies` carry a flow id but no time, so they learn their day here, from
the flows batch that stored the flow (same enterprise and agent: flow ids are derived from the agent id).

`flow_days(enterprise_id, agent_id, flow_hash, flow_day, batch_id)` is written in the transaction that
records the flows batch, so a flow the index knows is a stored flow; a flow whose batch has not arrived
yet has no day (its rows wait, under their arrival day, until compaction or the person index looks
again). Removing the batch removes its flows' days with it.
"""

from __future__ import annotations

import logging

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

log = logging.getLogger(__name__)

__all__ = ["FLOW_DAYS_SCHEMA", "cst_days", "lookup_flow_days", "record_flow_days"]

# Flows are found by a 128-bit hash of their id, without an index: a lookup is one hash join whose scan
# reads one fixed-width column, and an insert appends. A DuckDB primary key (an ART index over strings)
# made both ~10x slower at 10^7 flows (a join scans the strings; every insert probes the tree). The store
# inserts only flows no earlier batch stored (row_keys), so no constraint is needed for uniqueness.
FLOW_DAYS_SCHEMA = """
CREATE TABLE IF NOT EXISTS flow_days (
    enterprise_id VARCHAR, agent_id VARCHAR, flow_hash UHUGEINT, flow_day DATE, batch_id VARCHAR);
"""

# China Standard Time is UTC+8 all year (no daylight saving since 1991): a day boundary is plain
# arithmetic on the instant, with no time-zone database and no engine's session zone involved.
_CST_OFFSET_US = 8 * 3600 * 1_000_000
_DAY_US = 86400 * 1_000_000


def cst_days(ts: pa.Array | pa.ChunkedArray) -> pa.Array:
    """The CST calendar day (date32) of each instant of a timestamp column (any unit, any zone)."""
    if isinstance(ts, pa.ChunkedArray):
        ts = ts.combine_chunks()
    micros = pc.cast(pc.cast(ts, pa.timestamp("us", tz="UTC")), pa.int64())
    days = pc.floor(pc.divide(pc.cast(pc.add(micros, _CST_OFFSET_US), pa.float64()), float(_DAY_US)))
    return pc.cast(pc.cast(days, pa.int32()), pa.date32())


def record_flow_days(cur: duckdb.DuckDBPyConnection, enterprise_id: str, agent_id: str, batch_id: str,
                     flows: pa.Table) -> int:
    """Index the day of every flow of `flows` (rows of a flows batch being stored, already deduplicated);
    call inside the transaction that records the batch. Returns the number of rows written."""
    if not flows.num_rows:
        return 0
    days = pa.table({"flow_id": flows.column("flow_id"), "flow_day": cst_days(flows.column("ts_start"))})
    cur.register("_flow_days", days)
    try:
        # A flow id appears once per agent; a batch repeating one (it should not) keeps its first day.
        cur.execute("INSERT INTO flow_days SELECT ?, ?, md5_number(flow_id), min(flow_day), ? "
                    "FROM _flow_days GROUP BY flow_id", [enterprise_id, agent_id, batch_id])
    finally:
        cur.unregister("_flow_days")
    return flows.num_rows


def lookup_flow_days(cur: duckdb.DuckDBPyConnection, enterprise_id: str, agent_id: str,
                     flow_ids: pa.Array | pa.ChunkedArray) -> pa.Table:
    """`(flow_id, flow_day)` for the distinct flow ids of one agent the index knows; unknown flows are
    absent from the result."""
    distinct = pc.unique(flow_ids.combine_chunks() if isinstance(flow_ids, pa.ChunkedArray) else flow_ids)
    cur.register("_wanted", pa.table({"flow_id": distinct}))
    try:
        return cur.sql(
            "SELECT w.flow_id, d.flow_day FROM (SELECT flow_id, md5_number(flow_id) AS h FROM _wanted) w "
            "JOIN flow_days d ON d.flow_hash = w.h AND d.enterprise_id = ? AND d.agent_id = ?",
            params=[enterprise_id, agent_id]).to_arrow_table()
    finally:
        cur.unregister("_wanted")
