"""The warehouse's dataset is partitioned by flow day in China Standard Time (collector/dataset.py): a flow
at 23:30 CST is stored under its CST day, not the next UTC day nor the day it arrived; rows of a flow that
has not arrived yet wait under their arrival day; checks list files through the `files` index, pruned by
period; a schema-3 warehouse's files are indexed where they are."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from agent.records import AnomalyRecord, CaptureStatsRecord
from collector.audit import AuditEntry
from collector.compaction import compact
from collector.dataset_store import MAX_DAYS_PER_BATCH
from collector.ingest import BatchError
from collector.migrations import SCHEMA_VERSION
from collector.persons import CST
from collector.warehouse import Warehouse

from .builders import detection, flow, pi
from .storage_helpers import AGENT, E, index, indexed, on_disk, read_rows, store

LATE = datetime(2026, 3, 1, 15, 30, tzinfo=UTC)        # 23:30 CST on 1 March
NEXT = datetime(2026, 3, 1, 16, 30, tzinfo=UTC)        # 00:30 CST on 2 March (still 1 March in UTC)
MAR1, MAR2 = date(2026, 3, 1), date(2026, 3, 2)


def _cst_day(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(), CST)
    return start, start + timedelta(days=1)


def test_a_batch_is_split_by_the_cst_day_of_its_flows(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path)
    try:
        stored = store(wh, "flows", [flow("late", ts=LATE), flow("next", ts=NEXT)], "b-flows")
        assert stored.stored_rows == 2
        store(wh, "pi_values", [pi("late", 1, "mobile_cn", 11), pi("next", 2, "mobile_cn", 12)], "b-pi")
        assert index(wh) == [
            ("flows", "b-flows.parquet", MAR1, True, 1), ("flows", "b-flows-1.parquet", MAR2, True, 1),
            ("pi_values", "b-pi.parquet", MAR1, True, 1), ("pi_values", "b-pi-1.parquet", MAR2, True, 1)]
        late = tmp_path / f"records/flows/enterprise_id={E}/date=2026-03-01/b-flows.parquet"
        assert pq.read_table(late).column("flow_id").to_pylist() == ["late"]
        # Every row says which stored batch it came with (the agent's own id was "spool-b").
        assert pq.read_table(late).column("batch_id").to_pylist() == ["b-flows"]
        assert on_disk(tmp_path) == indexed(wh)
    finally:
        wh.close()


def test_rows_before_their_flow_wait_under_the_arrival_day_until_compaction_moves_them(tmp_path: Path
                                                                                     ) -> None:
    wh = Warehouse(tmp_path)
    today = datetime.now(UTC).date()
    try:
        store(wh, "pi_values", [pi("early", 1, "mobile_cn", 11)], "pi-before")
        store(wh, "detections", [detection("early", "mobile_cn")], "det-before")
        assert [(t, day, own) for t, _, day, own, _ in index(wh)] == [
            ("detections", today, False), ("pi_values", today, False)]
        # Pruning keeps arrival-day files whatever the period: their rows' days are not known.
        listed = wh.record_files(E, _cst_day(MAR1))
        assert sorted(listed) == ["detections", "pi_values"]
        store(wh, "flows", [flow("early", ts=LATE), flow("known", ts=LATE)], "flows-1")
        store(wh, "pi_values", [pi("known", 2, "mobile_cn", 12)], "pi-after")   # its flow is known
        assert ("pi_values", "pi-after.parquet", MAR1, True, 1) in index(wh)
        result = compact(wh, min_files=2)
        assert result.rows_moved == 2 and result.swaps_abandoned == 0
        days = {(t, day, own) for t, _, day, own, _ in index(wh)}
        assert days == {("flows", MAR1, True), ("pi_values", MAR1, True), ("detections", MAR1, True)}
        assert read_rows(wh.record_files(E, _cst_day(MAR1)), "pi_values", "record_key") == [1, 2]
        assert wh.record_files(E, _cst_day(MAR2)) == {}
        assert on_disk(tmp_path) == indexed(wh)
    finally:
        wh.close()


def test_rows_without_a_flow_are_stored_by_their_own_time(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path)
    try:
        fields: dict[str, object] = {"interval_s": 60.0, "source": "eth1", "packets_received": 1,
                                     "packets_kernel_dropped": 0, "packets_undecoded": 0, "flows_active": 0,
                                     "flows_ended": 0, "flows_evicted": 0, "spool_rows_dropped": 0}
        stats = [CaptureStatsRecord(ts=LATE, **fields), CaptureStatsRecord(ts=NEXT, **fields)]  # type: ignore[arg-type]
        store(wh, "capture_stats", stats, "stats")
        store(wh, "anomalies", [AnomalyRecord(None, "link", "truncated_capture", "at 1", ts=NEXT)], "anom")
        assert index(wh) == [("anomalies", "anom.parquet", MAR2, True, 1),
                             ("capture_stats", "stats.parquet", MAR1, True, 1),
                             ("capture_stats", "stats-1.parquet", MAR2, True, 1)]
    finally:
        wh.close()


def test_record_files_with_a_period_lists_only_the_days_that_can_hold_its_flows(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path)
    try:
        for i, ts in enumerate((LATE, NEXT, datetime(2026, 7, 1, 4, tzinfo=UTC))):
            store(wh, "flows", [flow(f"f{i}", ts=ts)], f"b{i}")
            store(wh, "detections", [detection(f"f{i}", "mobile_cn")], f"d{i}")
        assert read_rows(wh.record_files(E), "flows", "flow_id") == ["f0", "f1", "f2"]
        assert read_rows(wh.record_files(E, _cst_day(MAR1)), "flows", "flow_id") == ["f0"]
        assert read_rows(wh.record_files(E, _cst_day(MAR2)), "detections", "flow_id") == ["f1"]
        march = (datetime(2026, 3, 1, tzinfo=CST), datetime(2026, 4, 1, tzinfo=CST))
        assert read_rows(wh.record_files(E, march), "flows", "flow_id") == ["f0", "f1"]
        assert wh.record_files("someone-else", march) == {}
    finally:
        wh.close()


def test_a_schema_3_warehouse_indexes_its_files_where_they_are_as_arrival_days(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path)
    store(wh, "flows", [flow("late", ts=LATE)], "old-flows")
    store(wh, "pi_values", [pi("late", 1, "mobile_cn", 11)], "old-pi")
    used = wh.over_quota(E, 1)
    wh.close()
    # As a schema-3 collector left it: no file index, each batch's file under the day it arrived.
    con = duckdb.connect(str(tmp_path / "collector.duckdb"))
    con.execute("DROP TABLE files")
    con.execute("UPDATE meta SET value = '3' WHERE key = 'schema'")
    for (path,) in con.execute("SELECT path FROM batches").fetchall():
        arrived = path.replace("date=2026-03-01", "date=2026-06-01")
        (tmp_path / arrived).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).rename(tmp_path / arrived)
        con.execute("UPDATE batches SET path = ? WHERE path = ?", [arrived, path])
    con.close()
    wh = Warehouse(tmp_path)
    try:
        schema = wh.con.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        assert schema == (str(SCHEMA_VERSION),)
        assert index(wh) == [("flows", "old-flows.parquet", date(2026, 6, 1), False, 1),
                             ("pi_values", "old-pi.parquet", date(2026, 6, 1), False, 1)]
        assert wh.over_quota(E, 1) == used              # the quota counts the same bytes
        assert read_rows(wh.record_files(E, _cst_day(MAR1)), "flows", "flow_id") == ["late"]
        assert compact(wh, min_files=2).rows_moved == 2
        assert [(t, day, own) for t, _, day, own, _ in index(wh)] == [("flows", MAR1, True),
                                                                      ("pi_values", MAR1, True)]
        # The moved rows still belong to their batch: removing it removes them.
        wh.delete_batch(E, "old-pi", AuditEntry("t", "regulator", "ningbo", E, "batch", "old-pi", "delete"))
        assert [t for t, *_ in index(wh)] == ["flows"] and on_disk(tmp_path) == indexed(wh)
        assert wh.flow_days(E, AGENT, pq.read_table(wh.record_files(E)["flows"][0]).column("flow_id")
                            ).num_rows == 1
    finally:
        wh.close()


def test_a_batch_whose_rows_fall_on_too_many_days_is_refused_whole(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path)
    try:
        rows = [flow(f"d{i}", ts=LATE + timedelta(days=i)) for i in range(MAX_DAYS_PER_BATCH + 1)]
        with pytest.raises(BatchError) as err:
            store(wh, "flows", rows, "spread")
        assert (err.value.status, err.value.field) == (422, "column ts_start")
        assert index(wh) == [] and on_disk(tmp_path) == set() and wh.counts() == {}
        assert store(wh, "flows", rows[:MAX_DAYS_PER_BATCH], "spread").stored_rows == MAX_DAYS_PER_BATCH
    finally:
        wh.close()
