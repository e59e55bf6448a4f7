"""A warehouse written before tenancy (schema 1) opens under the new collector: batches and row identities
are re-scoped by enterprise, nothing is lost, and the next open finds nothing to do."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from agent.records import Envelope, to_table
from collector.ingest import parse_batch
from collector.migrations import SCHEMA_VERSION
from collector.warehouse import Warehouse

from .builders import flow

# The schema-1 tables exactly as the collector of 0.1.0 created them (a historical format, kept verbatim).
V1_SCHEMA = """
CREATE TABLE batches (
    batch_id VARCHAR PRIMARY KEY, record_type VARCHAR, agent_id VARCHAR, enterprise_id VARCHAR,
    rows BIGINT, stored_rows BIGINT, sha256 VARCHAR, path VARCHAR, received_at TIMESTAMPTZ, token VARCHAR);
CREATE TABLE row_keys (
    record_type VARCHAR, agent_id VARCHAR, row_key VARCHAR, batch_id VARCHAR,
    PRIMARY KEY (record_type, agent_id, row_key));
CREATE TABLE documents (
    kind VARCHAR, doc_id VARCHAR, version INTEGER, enterprise_id VARCHAR, ftz_area VARCHAR,
    sha256 VARCHAR, body VARCHAR, stored_at TIMESTAMPTZ, stored_by VARCHAR,
    PRIMARY KEY (kind, doc_id, version));
CREATE TABLE reports (
    report_id VARCHAR PRIMARY KEY, filing_id VARCHAR, filing_version INTEGER, enterprise_id VARCHAR,
    ftz_area VARCHAR, generated_at TIMESTAMPTZ, period_from TIMESTAMPTZ, period_to TIMESTAMPTZ,
    verdict VARCHAR, findings INTEGER, complete BOOLEAN, trigger VARCHAR, body VARCHAR);
"""


def _parquet(ids: tuple[str, ...], agent: str, enterprise: str) -> bytes:
    buf = io.BytesIO()
    pq.write_table(to_table("flows", [flow(i) for i in ids], Envelope(agent, enterprise, "b")), buf)
    return buf.getvalue()


def _v1_warehouse(root: Path) -> None:
    """Two enterprises, one batch each, stored by a schema-1 collector (file + batch row + row keys)."""
    con = duckdb.connect(str(root / "collector.duckdb"))
    con.execute(V1_SCHEMA)
    for enterprise, batch_id, flow_id in (("hz-demo", "old-1", "f1"), ("nb-other", "old-2", "f9")):
        rel = f"records/flows/enterprise_id={enterprise}/date=2026-03-01/{batch_id}.parquet"
        (root / rel).parent.mkdir(parents=True)
        (root / rel).write_bytes(_parquet((flow_id,), "gw-1", enterprise))
        con.execute("INSERT INTO batches VALUES (?, 'flows', 'gw-1', ?, 1, 1, 'x', ?, ?, 't')",
                    [batch_id, enterprise, rel, datetime(2026, 3, 1, tzinfo=UTC)])
        con.execute("INSERT INTO row_keys VALUES ('flows', 'gw-1', ?, ?)", [f"flow:{flow_id}", batch_id])
    con.execute("INSERT INTO documents VALUES ('filing', 'F1', 1, 'hz-demo', 'hangzhou', 'x', '{}', now(), "
                "'t')")
    con.close()


def test_a_schema_1_warehouse_is_rescoped_by_enterprise_and_keeps_everything(tmp_path: Path) -> None:
    _v1_warehouse(tmp_path)
    wh = Warehouse(tmp_path)
    try:
        meta = wh.con.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        assert meta == (str(SCHEMA_VERSION),)
        assert wh.counts() == {"flows": 2}
        assert [p.name for p in wh.record_files("hz-demo")["flows"]] == ["old-1.parquet"]
        assert wh.get_document("filing", "F1") is not None
        keys = wh.con.execute("SELECT enterprise_id, row_key FROM row_keys ORDER BY 1").fetchall()
        assert keys == [("hz-demo", "flow:f1"), ("nb-other", "flow:f9")]
        # A replay of a migrated flow is still a duplicate; the same flow id of another tenant is not.
        replay = wh.store_batch(parse_batch(_parquet(("f1",), "gw-1", "hz-demo"), "new-1", "flows", "hz-demo",
                                            "gw-1"), "t")
        assert (replay.created, replay.stored_rows) == (True, 0)
        other = wh.store_batch(parse_batch(_parquet(("f9",), "gw-1", "hz-demo"), "old-2", "flows", "hz-demo",
                                           "gw-1"), "t")
        assert (other.created, other.stored_rows) == (True, 1)
    finally:
        wh.close()
    # Opening again migrates nothing and keeps the files (all recorded).
    again = Warehouse(tmp_path)
    try:
        assert again.counts() == {"flows": 3}
        assert len(list((tmp_path / "records").rglob("*.parquet"))) == 3
    finally:
        again.close()


def test_a_new_warehouse_starts_at_the_current_schema(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path)
    try:
        # Row identities are scoped by enterprise and found by hash, without an index (schema 5).
        columns = [r[0] for r in wh.con.execute("DESCRIBE row_keys").fetchall()]
        assert columns[:2] == ["enterprise_id", "record_type"] and "key_hash" in columns
        indexes = wh.con.execute("SELECT count(*) FROM duckdb_indexes() WHERE table_name = 'row_keys'")
        assert indexes.fetchone() == (0,)
        assert wh.con.execute("SELECT value FROM meta").fetchone() == (str(SCHEMA_VERSION),)
    finally:
        wh.close()
