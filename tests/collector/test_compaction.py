"""Compaction (collector/compaction.py) over the real warehouse: many small batches become few files, the
spot check's report is the same before and after, a reader that listed files before a swap reads them
whole, a batch removed after compaction takes exactly its rows (and its quota) away, replays stay
deduplicated, a crash in the middle of a swap is repaired at open, and the service runs it in the
background and stops it at shutdown."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time as clock
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from collector.audit import AuditEntry
from collector.compaction import compact
from collector.config import CollectorConfig, Storage
from collector.persons import CST
from collector.service import create_app
from collector.spotcheck import run_spot_check
from collector.warehouse import Warehouse

from .builders import UNDECLARED_HOST, detection, flow, pi
from .storage_helpers import E, index, indexed, on_disk, read_rows, store

DAY0 = datetime(2026, 3, 1, 2, tzinfo=UTC)
NOW = datetime(2027, 1, 5, 12, tzinfo=CST)


def _fill(wh: Warehouse, days: int = 3, batches: int = 4) -> int:
    """`batches` small uploads per record type and day, on flows to a declared and an undeclared host;
    returns the number of flows."""
    n = 0
    for d in range(days):
        for b in range(batches):
            ids = [f"f{d}-{b}-{i}" for i in range(3)]
            ts = DAY0 + timedelta(days=d, minutes=b)
            store(wh, "flows", [flow(ids[0], ts=ts), flow(ids[1], ts=ts, server_name=UNDECLARED_HOST),
                                flow(ids[2], ts=ts)], f"fl-{d}-{b}")
            store(wh, "detections", [detection(i, "mobile_cn") for i in ids], f"de-{d}-{b}")
            store(wh, "pi_values", [pi(i, k, "mobile_cn", 1000 * d + 10 * b + k, identifier=True)
                                    for k, i in enumerate(ids)], f"pv-{d}-{b}")
            n += len(ids)
    return n


def _report(wh: Warehouse, filing_id: str) -> dict:
    done = run_spot_check(wh, filing_id, start=date(2026, 1, 1), end=date(2026, 12, 31), now=NOW)
    return done.report.model_dump(mode="json", exclude={"report_id", "generated_at"})


def test_compaction_merges_small_files_and_the_spot_check_reports_the_same(tmp_path: Path) -> None:
    from .storage_helpers import put_filing

    wh = Warehouse(tmp_path)
    try:
        filing_id = put_filing(wh)
        flows = _fill(wh)
        before, files_before, used = _report(wh, filing_id), len(indexed(wh)), wh.over_quota(E, 1)
        assert files_before == 3 * 3 * 4
        assert before["verdict"] == "inconsistent"
        result = compact(wh, min_files=2, target_bytes=1 << 20)
        assert (result.files_replaced, result.files_written) == (36, 9)
        assert [(t, rows) for t, _, _, _, rows in index(wh)] == [(t, 12) for t in
                                                                 ("detections", "flows", "pi_values")
                                                                 for _ in range(3)]
        assert on_disk(tmp_path) == indexed(wh)          # the old files are gone: no reader held them
        assert _report(wh, filing_id) == before
        assert len(read_rows(wh.record_files(E), "flows", "flow_id")) == flows
        assert wh.over_quota(E, 1) < used                # fewer, larger files: less to count
        assert compact(wh, min_files=2, target_bytes=1 << 20).files_replaced == 0   # nothing left to do
    finally:
        wh.close()


def test_a_reader_that_listed_files_before_a_swap_reads_a_whole_set(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path)
    try:
        flows = _fill(wh, days=2, batches=6)
        with wh.reading(E) as listed:
            compact(wh, min_files=2, target_bytes=1 << 20)
            # Swapped meanwhile: the listed (old) files are still there, whole.
            assert len(read_rows(listed, "flows", "flow_id")) == flows
            assert not set(map(str, listed["flows"])) & {str(tmp_path / p) for p in indexed(wh)}
        assert on_disk(tmp_path) == indexed(wh)          # retired files went with the last lease
        # Readers listing while compaction runs in another thread see the old set or the new, never half.
        _fill_more = [store(wh, "flows", [flow(f"g{i}", ts=DAY0)], f"g-{i}") for i in range(12)]
        flows += len(_fill_more)
        worker = threading.Thread(target=compact, args=(wh,), kwargs={"min_files": 2, "target_bytes": 4096})
        worker.start()
        reads = 0
        while worker.is_alive() or reads < 1:
            with wh.reading(E) as files:
                assert len(read_rows(files, "flows", "flow_id")) == flows
            reads += 1
        worker.join()
        assert on_disk(tmp_path) == indexed(wh)
    finally:
        wh.close()


def test_removing_a_batch_after_compaction_takes_exactly_its_rows_and_replays_stay_duplicates(
        tmp_path: Path) -> None:
    wh = Warehouse(tmp_path)
    try:
        _fill(wh, days=1, batches=5)
        compact(wh, min_files=2, target_bytes=1 << 20)
        used = wh.over_quota(E, 1)
        audit = AuditEntry("t", "regulator", "ningbo", E, "batch", "fl-0-2", "delete")
        assert wh.delete_batch(E, "fl-0-2", audit) is not None
        ids = read_rows(wh.record_files(E), "flows", "flow_id")
        assert len(ids) == 12 and not [i for i in ids if i.startswith("f0-2-")]
        assert wh.over_quota(E, 1) < used and on_disk(tmp_path) == indexed(wh)
        (merged,) = wh.record_files(E)["flows"]
        assert "fl-0-2" not in set(pq.read_table(merged).column("batch_id").to_pylist())
        # Another batch's flows replayed after compaction: nothing new; the removed batch's: stored again.
        replay = store(wh, "flows", [flow("f0-1-0", ts=DAY0)], "replay")
        assert (replay.created, replay.stored_rows) == (True, 0)
        again = store(wh, "flows", [flow(f"f0-2-{i}", ts=DAY0) for i in range(3)], "fl-0-2")
        assert again.stored_rows == 3 and wh.counts()["flows"] == 15
    finally:
        wh.close()


_CRASH = """
import os, sys
from collector import compaction, dataset
from collector.warehouse import Warehouse
wh = Warehouse(sys.argv[1])
if sys.argv[2] == "before-swap":
    Warehouse.swap_files = lambda *a, **k: os._exit(3)          # new files written, index not switched
else:
    dataset.FileLeases.retire = lambda *a, **k: os._exit(3)     # switched, old files not yet deleted
compaction.compact(wh, min_files=2, target_bytes=1 << 20)
"""


@pytest.mark.parametrize("when", ["before-swap", "after-swap"])
def test_a_crash_in_the_middle_of_compaction_is_repaired_at_open(tmp_path: Path, when: str) -> None:
    wh = Warehouse(tmp_path)
    flows = _fill(wh, days=1, batches=4)
    files = indexed(wh)
    wh.close()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run([sys.executable, "-c", _CRASH, str(tmp_path), when], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr
    assert on_disk(tmp_path) > files        # the crash left files the index does not list
    stray = tmp_path / f"records/flows/enterprise_id={E}/date=2026-03-01/.c-0.parquet.tmp"
    stray.write_bytes(b"half")
    wh = Warehouse(tmp_path)
    try:
        assert on_disk(tmp_path) == indexed(wh)
        assert (indexed(wh) == files) == (when == "before-swap")
        assert len(read_rows(wh.record_files(E), "flows", "flow_id")) == flows
        assert len(read_rows(wh.record_files(E), "pi_values", "record_key")) == flows
    finally:
        wh.close()


def test_the_service_compacts_in_the_background_and_stops_at_shutdown(tmp_path: Path) -> None:
    config = CollectorConfig(data_dir=str(tmp_path / "data"), schedule={"spot_checks": None},
                             storage=Storage(compact_min_files=2, compact_interval_s=0.05))
    app = create_app(config)
    wh: Warehouse = app.state.warehouse
    flows = _fill(wh, days=1, batches=3)
    with TestClient(app):
        deadline = clock.monotonic() + 60
        while app.state.compactor.passes < 1 and clock.monotonic() < deadline:
            with wh.reading(E) as files:         # readers go on meanwhile, and see every row
                assert len(read_rows(files, "flows", "flow_id")) == flows
        assert app.state.compactor.passes >= 1
        assert len(indexed(wh)) == 3
    assert app.state.compactor._thread is None    # joined at shutdown
