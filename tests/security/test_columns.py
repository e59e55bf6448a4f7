"""Columns the DESIGN fixes (second outside review of issue 9): a hostile agent stored raw PI through
`server_name`, `field_type`, `important_subcategory`, `flow_id` and anomaly details, and bypassed the
storage quota with 60 KB flow ids charged as small keys. Each column now holds only its own domain."""

from __future__ import annotations

import dataclasses

import pyarrow.parquet as pq
import pytest

from agent.records import AnomalyRecord
from tests.collector.builders import detection, flow, pi
from tests.collector_server import CollectorServer, demo_filing
from tests.security.conftest import assert_error_shape, batch_bytes, upload

RAW = ("13812345678", "110105194912310021", "张三")


@pytest.mark.parametrize(("record_type", "row", "column"), [
    ("flows", flow("col-f1", server_name="13812345678.张三.example"), "server_name"),
    ("flows", flow("110105194912310021-13812345678" + "x" * 200), "flow_id"),
    ("flows", flow("张三"), "flow_id"),
    ("detections", detection("col-f2", "张三110105194912310021"), "field_type"),
    ("detections", detection("col-f3", "important_data", important="13812345678"), "important_subcategory"),
    ("pi_values", pi("col-f4", 1, "13812345678", 7), "field_type"),
    ("anomalies", AnomalyRecord("col-f5", "http", "bad header 13812345678", "x"), "name"),
])
def test_a_value_outside_its_columns_domain_is_refused(collector: CollectorServer, record_type: str,
                                                       row: object, column: str) -> None:
    batch_id = f"col-{record_type}-{column}"
    r = upload(collector, "agent", batch_bytes(record_type, [row]), batch_id, record_type)
    err = assert_error_shape(r, 422, f"column {column}")
    for raw in RAW:
        assert raw not in err["message"]


def test_anomaly_details_keep_no_digit_runs_or_names(collector: CollectorServer) -> None:
    rows = [AnomalyRecord("col-f6", "http", "bad_content_length", "Content-Length 13812345678 from 张三"),
            AnomalyRecord("col-f6", "tls", "client_hello_too_long", "length 1048")]
    stored = upload(collector, "agent", batch_bytes("anomalies", rows), "col-anom", "anomalies")
    assert stored.status_code == 201, stored.text
    (path,) = collector.data_dir.rglob("col-anom.parquet")
    details = pq.read_table(path).column("detail").to_pylist()
    assert details == ["Content-Length <digits> from <text>", "length 1048"]


def test_a_batch_with_too_many_distinct_key_paths_is_refused(collector: CollectorServer) -> None:
    rows = [dataclasses.replace(detection(f"kp-{i}", "mobile_cn"),
                                key_paths=tuple(f"$.k{i}_{j}" for j in range(5))) for i in range(10_001)]
    r = upload(collector, "agent", batch_bytes("detections", rows), "kp-many", "detections")
    assert_error_shape(r, 413, "column key_paths")


@pytest.mark.parametrize(("method", "path", "body"), [
    ("PUT", "/v1/filings/ZJFTZ-HZ-ECHO-2", "field_type"),
    ("POST", "/v1/checks/run", {"filing_id": "x", "Q" * 100_000: 1}),
    ("DELETE", "/v1/batches/" + "E" * 6000 + "/b", None),
])
def test_no_error_echoes_a_long_upload(collector: CollectorServer, method: str, path: str,
                                       body: object) -> None:
    if body == "field_type":
        filing = demo_filing(filing_id="ZJFTZ-HZ-ECHO-2")
        filing["scenarios"][0]["data_catalog"][0]["field_type"] = "F" * 100_000
        body = filing
    r = collector.call("regulator", method, path, json=body)
    assert 400 <= r.status_code < 500, r.text[:300]
    assert len(r.content) < 1200, len(r.content)
