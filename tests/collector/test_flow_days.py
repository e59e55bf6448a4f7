"""The warehouse knows each stored flow's day in China Standard Time (collector/flow_days.py): written with
the flows batch, removed with it, filled in for a warehouse of schema 2, and computed without any time-zone
database (CST is UTC+8 all year)."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import given
from hypothesis import strategies as st

from agent.records import Envelope, to_table
from collector.audit import AuditEntry
from collector.flow_days import cst_days
from collector.ingest import parse_batch
from collector.migrations import _BATCHES, _ROW_KEYS, SCHEMA_VERSION
from collector.persons import CST
from collector.warehouse import Warehouse

from .builders import flow


def _flows(ids_ts: list[tuple[str, datetime]], agent: str = "gw-1", enterprise: str = "hz-demo") -> bytes:
    buf = io.BytesIO()
    pq.write_table(to_table("flows", [flow(i, ts=ts) for i, ts in ids_ts], Envelope(agent, enterprise, "b")),
                   buf)
    return buf.getvalue()


def _days(wh: Warehouse, flow_ids: list[str], agent: str = "gw-1") -> dict[str, date]:
    got = wh.flow_days("hz-demo", agent, pa.array(flow_ids, pa.string()))
    return dict(zip(got.column("flow_id").to_pylist(), got.column("flow_day").to_pylist(), strict=True))


def test_the_cst_day_turns_at_16_00_utc() -> None:
    ts = pa.array([datetime(2026, 12, 31, 15, 59, 59, 999999, tzinfo=UTC),
                   datetime(2026, 12, 31, 16, tzinfo=UTC), datetime(1970, 1, 1, tzinfo=UTC),
                   datetime(1969, 12, 31, 15, 0, tzinfo=UTC)],
                  pa.timestamp("us", tz="UTC"))
    assert cst_days(ts).to_pylist() == [date(2026, 12, 31), date(2027, 1, 1), date(1970, 1, 1),
                                        date(1969, 12, 31)]


@given(st.datetimes(min_value=datetime(1992, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)))
def test_cst_days_agrees_with_the_time_zone_database(ts: datetime) -> None:
    assert cst_days(pa.array([ts], pa.timestamp("us", tz="UTC"))).to_pylist() == [ts.astimezone(CST).date()]


def test_a_stored_flows_batch_indexes_its_days_and_a_removed_one_takes_them_away(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path)
    try:
        late = datetime(2026, 3, 1, 17, tzinfo=UTC)        # 2 March in CST
        wh.store_batch(parse_batch(_flows([("f1", late), ("f2", datetime(2026, 3, 1, 1, tzinfo=UTC))]), "b1",
                                   "flows", "hz-demo", "gw-1"), "t")
        # A replay of f1 in another batch stores nothing new and keeps f1's day with its first batch.
        again = _flows([("f1", late), ("f3", late)])
        wh.store_batch(parse_batch(again, "b2", "flows", "hz-demo", "gw-1"), "t")
        assert _days(wh, ["f1", "f2", "f3", "unknown"]) == {
            "f1": date(2026, 3, 2), "f2": date(2026, 3, 1), "f3": date(2026, 3, 2)}
        assert _days(wh, ["f1"], agent="gw-2") == {}          # flow ids are per agent
        wh.delete_batch("hz-demo", "b1", AuditEntry("t", "regulator", "hangzhou", "hz-demo", "batch", "b1",
                                                    "delete"))
        assert _days(wh, ["f1", "f2", "f3"]) == {"f3": date(2026, 3, 2)}
    finally:
        wh.close()


def test_a_schema_2_warehouse_gets_the_days_of_its_stored_flows(tmp_path: Path) -> None:
    rel = "records/flows/enterprise_id=hz-demo/date=2026-07-02/b1.parquet"
    (tmp_path / rel).parent.mkdir(parents=True)
    (tmp_path / rel).write_bytes(_flows([("f1", datetime(2026, 6, 30, 16, tzinfo=UTC))]))
    con = duckdb.connect(str(tmp_path / "collector.duckdb"))     # as a 0.5.0 collector left it
    con.execute(_BATCHES.format(name="batches") + _ROW_KEYS.format(name="row_keys"))
    con.execute("CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
    con.execute("INSERT INTO meta VALUES ('schema', '2')")
    con.execute("INSERT INTO batches VALUES ('b1', 'flows', 'gw-1', 'hz-demo', 1, 1, 'x', ?, ?, 't', 100)",
                [rel, datetime(2026, 7, 2, tzinfo=UTC)])
    con.execute("INSERT INTO row_keys VALUES ('hz-demo', 'flows', 'gw-1', 'flow:f1', 'b1')")
    con.close()
    wh = Warehouse(tmp_path)
    try:
        schema = wh.con.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        assert schema == (str(SCHEMA_VERSION),)
        assert _days(wh, ["f1"]) == {"f1": date(2026, 7, 1)}
        # The row identity survived as a hash: a replay of f1 stores nothing.
        replay = wh.store_batch(parse_batch(_flows([("f1", datetime(2026, 6, 30, 16, tzinfo=UTC))]), "b2",
                                            "flows", "hz-demo", "gw-1"), "t")
        assert replay.stored_rows == 0
    finally:
        wh.close()
