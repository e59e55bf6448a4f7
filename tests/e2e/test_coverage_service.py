"""Agents in the field upgrade one by one (DESIGN §3): the real collector service takes a flows batch of
records schema 2 (no coverage columns) and one of schema 3 from the same enterprise, over HTTP, and its
report's `observed.coverage` counts both, the old rows' columns derived from what they carry."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from agent.records import Envelope, to_table
from tests.collector.builders import flow
from tests.collector_server import CollectorServer, demo_filing, start_collector

FILING_ID = "ZJFTZ-HZ-2026-0107"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CollectorServer]:
    srv = start_collector(tmp_path_factory.mktemp("coverage"))
    try:
        yield srv
    finally:
        srv.stop()


def _batch(rows: list, batch_id: str, version: int) -> bytes:
    table = to_table("flows", rows, Envelope("gw-hz-01", "hz-demo", batch_id))
    if version == 2:
        table = table.drop_columns(["visibility", "alpn", "uninspected_reason"])
        i = table.schema.get_field_index("schema_version")
        table = table.set_column(i, table.schema.field(i), pa.array([2] * table.num_rows, pa.int32()))
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def test_batches_of_schema_2_and_3_count_together_in_the_coverage(server: CollectorServer,
                                                                  tmp_path: Path) -> None:
    put = server.call("regulator", "PUT", f"/v1/filings/{FILING_ID}",
                      content=yaml.safe_dump(demo_filing(), allow_unicode=True).encode())
    assert put.status_code in (200, 201), put.text
    old = [flow("v2-plain", bytes_out=1000), flow("v2-tls", encrypted=True, inspected=False, bytes_out=3000)]
    new = [flow("v3-h2", encrypted=True, visibility="decrypted", alpn="h2", bytes_out=2000),
           flow("v3-quic", encrypted=True, inspected=False, reason="decrypt_failed", bytes_out=4000)]
    for rows, batch_id, version in ((old, "cov-v2", 2), (new, "cov-v3", 3)):
        r = server.call("agent", "POST", "/v1/batches", content=_batch(rows, batch_id, version),
                        headers={"X-Record-Type": "flows", "X-Batch-Id": batch_id})
        assert r.status_code == 201, r.text
    run = server.call("regulator", "POST", "/v1/checks/run",
                      json={"filing_id": FILING_ID, "from": "2026-01-01", "to": "2026-12-31"})
    assert run.status_code == 201, run.text
    report = server.call("regulator", "GET", f"/v1/reports/{run.json()['report_id']}").json()
    c = report["observed"]["coverage"]
    assert c["bytes_out"] == 10_000 and c["inspected_bytes_out"] == 3000
    assert c["inspected_share"] == pytest.approx(0.3) and c["small_share"] is True
    assert {k: v for k, v in c["by_visibility"].items() if v} == {"plaintext": 1000, "encrypted": 7000,
                                                                 "decrypted": 2000}
    assert [(r["reason"], r["bytes_out"]) for r in c["uninspected_by_reason"]] == [
        ("decrypt_failed", 4000), ("no_secrets", 3000)]
    page = server.call("regulator", "GET", f"/v1/reports/{run.json()['report_id']}.html")
    assert page.status_code == 200 and 'class="warning"' in page.text
