"""The standing adversarial suite (issue 9): every attack that once worked against the collector or the
agent stays here as a test against the real `egress-collector serve` process or the real agent CLI.

`collector` is one running service for a module (tests that change its configuration start their own with
`start_collector`); `batch_bytes` builds a valid Parquet batch of any record type as an agent would.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.collector_server import CollectorServer, start_collector

FILING_ID = "ZJFTZ-HZ-2026-0107"


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CollectorServer]:
    srv = start_collector(tmp_path_factory.mktemp("collector"), max_upload_bytes=4_000_000,
                          limits={"max_decoded_bytes": 64 * 1024 * 1024, "max_string_bytes": 65536,
                                  "decode_memory_bytes": 512 * 1024 * 1024, "decode_timeout_s": 30,
                                  "max_document_bytes": 262144})
    try:
        yield srv
    finally:
        srv.stop()


def table_bytes(table: pa.Table, **write: Any) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, **write)
    return buf.getvalue()


def batch_bytes(record_type: str, rows: list[Any], *, agent_id: str = "gw-hz-01",
                enterprise_id: str | None = "hz-demo", batch_id: str = "b") -> bytes:
    """A valid batch as the agent's spool writes it (agent/records.py)."""
    from agent.records import Envelope, to_table

    return table_bytes(to_table(record_type, rows, Envelope(agent_id, enterprise_id, batch_id)))


def upload(srv: CollectorServer, who: str, body: bytes, batch_id: str, record_type: str = "flows"
           ) -> Any:
    return srv.call(who, "POST", "/v1/batches", content=body,
                    headers={"X-Batch-Id": batch_id, "X-Record-Type": record_type})


def assert_error_shape(response: Any, status: int, field_prefix: str | None = None) -> dict[str, Any]:
    """The one JSON error shape (DESIGN §9) with `status`; returns the error object."""
    assert response.status_code == status, response.text[:2000]
    assert response.headers["content-type"].startswith("application/json"), response.headers
    err = response.json()["error"]
    assert err["status"] == status and err["message"] and "Traceback" not in err["message"]
    if field_prefix is not None:
        assert (err["field"] or "").startswith(field_prefix), err
    return dict(err)
