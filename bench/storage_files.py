"""Files and spot-check time before and after compaction (issue 13 item 3).

    python bench/storage_files.py --days 300 --batches 100 [--rows 10] [--dir DIR]

Stores `days` × `batches` small flows batches and as many pi_values batches (`rows` flows each, one
identifier per flow, half of them to an undeclared host) for one enterprise through the warehouse's own
`store_batch` (the upload's decoding is skipped: it is not what is measured), then prints the number of
files the spot check reads and its wall time, runs one compaction pass (timed) and measures again.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import tempfile
import time
import zlib
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from agent.records import Envelope, to_table
from collector.compaction import compact
from collector.ingest import Batch
from collector.persons import CST
from collector.spotcheck import run_spot_check
from collector.warehouse import Warehouse
from tests.collector.builders import UNDECLARED_HOST, example_data, flow, pi

log = logging.getLogger("bench.storage_files")

E, AGENT = "nb-shipping-demo", "bench-agent"
DAY0 = datetime(2026, 1, 1, 2, tzinfo=UTC)


def _batch(record_type: str, rows: list[object], batch_id: str) -> Batch:
    table = to_table(record_type, rows, Envelope(AGENT, E, batch_id))
    keys = pc.binary_join_element_wise("flow:", table.column("flow_id"), "").combine_chunks()
    digest = hashlib.sha256(f"{record_type}/{batch_id}".encode()).hexdigest()
    return Batch(batch_id, record_type, AGENT, E, table, digest, keys)


def fill(wh: Warehouse, days: int, batches: int, rows: int) -> None:
    for d in range(days):
        for b in range(batches):
            ts = DAY0 + timedelta(days=d, seconds=b)
            ids = [f"f{d}-{b}-{i}" for i in range(rows)]
            flows = [flow(i, ts=ts, server_name=UNDECLARED_HOST if k % 2 else "booking.gfb-freight.example")
                     for k, i in enumerate(ids)]
            wh.store_batch(_batch("flows", flows, f"fl-{d}-{b}"), "bench")
            wh.store_batch(_batch("pi_values", [pi(i, 1, "mobile_cn", zlib.crc32(i.encode()), identifier=True)
                                                for i in ids], f"pv-{d}-{b}"), "bench")


def spot_check(wh: Warehouse, filing_id: str) -> tuple[float, str]:
    start = time.perf_counter()
    done = run_spot_check(wh, filing_id, start=date(2026, 1, 1), end=date(2026, 12, 31),
                          now=datetime(2027, 1, 2, tzinfo=CST))
    observed = done.report.observed.model_dump(mode="json")
    return time.perf_counter() - start, json.dumps(observed, sort_keys=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=300)
    ap.add_argument("--batches", type=int, default=100)
    ap.add_argument("--rows", type=int, default=10)
    ap.add_argument("--dir", type=Path, default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    root = args.dir or Path(tempfile.mkdtemp(prefix="storage-bench-"))
    wh = Warehouse(root)
    try:
        doc = json.loads(json.dumps(example_data(), default=str))
        wh.put_document("filing", doc["filing_id"], doc, E, doc["ftz_area"], "bench")
        start = time.perf_counter()
        fill(wh, args.days, args.batches, args.rows)
        stored = 2 * args.days * args.batches
        print(f"stored {stored} batches in {time.perf_counter() - start:.1f} s ({root})")
        for label in ("before", "after"):
            if label == "after":
                start = time.perf_counter()
                result = compact(wh, min_files=2, target_bytes=64 << 20)
                print(f"compaction: {result.files_replaced} files -> {result.files_written} in "
                      f"{time.perf_counter() - start:.1f} s")
            files = sum(len(v) for v in wh.record_files(E).values())
            seconds, observed = spot_check(wh, doc["filing_id"])
            print(f"{label} compaction: {files} files, spot check {seconds:.2f} s, observed "
                  f"{hashlib.sha256(observed.encode()).hexdigest()[:12]}")
    finally:
        wh.close()


if __name__ == "__main__":
    pa.set_cpu_count(2)
    main()
