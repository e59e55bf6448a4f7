"""Helpers of the storage tests (test_dataset.py, test_compaction.py): batches stored through the real
ingest and warehouse, and what the file index and the disk hold."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from agent.records import Envelope, to_table
from collector.ingest import parse_batch
from collector.warehouse import StoredBatch, Warehouse

from .builders import example_data

E = "nb-shipping-demo"
AGENT = "test-agent"


def body(record_type: str, rows: Sequence[object], agent_batch: str = "spool-b") -> bytes:
    buf = io.BytesIO()
    pq.write_table(to_table(record_type, rows, Envelope(AGENT, E, agent_batch)), buf)
    return buf.getvalue()


def store(wh: Warehouse, record_type: str, rows: Sequence[object], batch_id: str) -> StoredBatch:
    """One upload as the agent makes it, through parse_batch and store_batch (the agent's own batch id in
    the rows differs from X-Batch-Id, as a hand-made upload's may)."""
    return wh.store_batch(parse_batch(body(record_type, rows), batch_id, record_type, E, AGENT), "t")


def index(wh: Warehouse) -> list[tuple[str, str, date, bool, int]]:
    """(record_type, file name, day, flow_day, rows) of every indexed file."""
    with wh.cursor() as cur:
        rows = cur.execute("SELECT record_type, path, day, flow_day, rows FROM files ORDER BY 1, 3, 2"
                           ).fetchall()
    return [(r[0], Path(r[1]).name, r[2], r[3], r[4]) for r in rows]


def on_disk(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in (root / "records").rglob("*") if p.is_file()}


def indexed(wh: Warehouse) -> set[str]:
    with wh.cursor() as cur:
        return {r[0] for r in cur.execute("SELECT path FROM files").fetchall()}


def read_rows(files: dict[str, list[Path]], record_type: str, column: str) -> list:
    """Every value of `column` over the listed files of one record type, sorted."""
    paths = files.get(record_type, [])
    if not paths:
        return []
    return sorted(pa.concat_tables([pq.read_table(p, columns=[column]) for p in paths])
                  .column(column).to_pylist())


def put_filing(wh: Warehouse) -> str:
    doc = json.loads(json.dumps(example_data(), default=str))
    wh.put_document("filing", doc["filing_id"], doc, doc["processor"]["id"], doc["ftz_area"], "test")
    return str(doc["filing_id"])
