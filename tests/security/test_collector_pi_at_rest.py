"""Raw PI in key paths (issue 9 item 6), on the collector's side: an old or hostile agent that still sends
a key which is a value (`"138-1234-5678"`, `"张三"`) gets it redacted on ingest, so it reaches neither a
stored Parquet file nor report.json nor report.html (DESIGN §3: such a segment becomes `<value>`)."""

from __future__ import annotations

import dataclasses

import pyarrow.parquet as pq

from tests.collector.builders import detection, flow, pi
from tests.collector_server import CollectorServer, demo_filing
from tests.security.conftest import FILING_ID, batch_bytes, upload

RAW = ("138-1234-5678", "1101-0519-4912-3100-2X", "6222 0212 3456 7890", "张三")
HOST = "collect.ad-metrics.example"       # undeclared by the demo filing: its key paths reach a finding


def test_key_paths_holding_values_reach_no_stored_file_and_no_report(collector: CollectorServer) -> None:
    assert collector.call("regulator", "PUT", f"/v1/filings/{FILING_ID}",
                          json=demo_filing()).status_code in (200, 201)
    paths = ("$.byPhone.138-1234-5678.idNo", "$.byId['1101-0519-4912-3100-2X'].mobile",
             "$.cards['6222 0212 3456 7890'].xm", "$.张三.sjh")
    row = dataclasses.replace(detection("pi-rest-f1", "mobile_cn"), key_paths=paths)
    for record_type, rows in (("flows", [flow("pi-rest-f1", server_name=HOST, country="US")]),
                              ("detections", [row]),
                              ("pi_values", [pi("pi-rest-f1", 1, "mobile_cn", 4242, identifier=True)])):
        r = upload(collector, "agent", batch_bytes(record_type, rows), f"pi-rest-{record_type}", record_type)
        assert r.status_code == 201, r.text
    stored = [p for p in collector.data_dir.rglob("pi-rest-detections.parquet")]
    assert len(stored) == 1
    (kept,) = pq.read_table(stored[0]).column("key_paths").to_pylist()
    assert kept == ["$.byPhone.<value>.idNo", "$.byId.<value>.mobile", "$.cards.<value>.xm", "$.<value>.sjh"]

    made = collector.call("regulator", "POST", "/v1/checks/run", json={"filing_id": FILING_ID})
    assert made.status_code == 201, made.text
    report_id = made.json()["report_id"]
    as_json = collector.call("regulator", "GET", f"/v1/reports/{report_id}").text
    as_html = collector.call("regulator", "GET", f"/v1/reports/{report_id}.html").text
    assert "$.byPhone.<value>.idNo" in as_json and "$.byPhone.&lt;value&gt;.idNo" in as_html
    for raw in RAW:
        for text in (as_json, as_html):
            assert raw not in text
