"""The §7 report: JSON shape, observed block, self-contained escaped HTML, atomic writes."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from rich.console import Console

from collector import selfcheck as selfcheck_module
from collector.reports import render_html, summary_table
from collector.selfcheck import run_selfcheck

from .builders import UNDECLARED_HOST, detection, flow, make_filing, pi, write_records

XSS_HOST = '<script>alert("x")</script>.example'
GENERATED = datetime(2026, 6, 1, 4, 0, tzinfo=UTC)


@pytest.fixture
def records(tmp_path: Path) -> Path:
    flows = [
        flow("b1", bytes_out=500), flow("b2", bytes_out=300),
        flow("u1", server_name=UNDECLARED_HOST, country="US", bytes_out=200),
        flow("x1", server_name=XSS_HOST, country="US", bytes_out=50),
        flow("t1", server_name="cdn.tls-only.example", country="JP", encrypted=True, inspected=False,
             bytes_out=4000),
        flow("d1", server_name="intranet.example", country="CN", cross_border=False, bytes_out=999),
    ]
    dets = [detection("b1", "mobile_cn", occurrences=3), detection("b2", "mobile_cn", occurrences=1),
            detection("u1", "resident_id_cn", sensitive=True), detection("x1", "email")]
    values = [pi("b1", 1, "mobile_cn", 1, identifier=True), pi("b1", 2, "mobile_cn", 2, identifier=True),
              pi("b1", 3, "mobile_cn", 1, identifier=True), pi("b2", 1, "mobile_cn", 3, identifier=True),
              pi("u1", 1, "resident_id_cn", 9, identifier=True, sensitive=True),
              pi("x1", 1, "email", 10, identifier=True)]
    return write_records(tmp_path / "records", flows, dets, values)


def test_json_report_has_the_section_7_shape(tmp_path: Path, records: Path) -> None:
    report = run_selfcheck(records, make_filing(), tmp_path / "out", generated_at=GENERATED)
    data = json.loads((tmp_path / "out" / "report.json").read_text(encoding="utf-8"))
    assert data == json.loads(report.model_dump_json(by_alias=True))
    assert {"report_version", "filing_id", "enterprise_id", "period", "generated_at", "verdict", "observed",
            "findings"} <= set(data)
    assert data["report_version"] == 1
    assert (data["filing_id"], data["enterprise_id"]) == ("ZJFTZ-NB-2026-0031", "nb-shipping-demo")
    assert data["period"] == {"from": "2026-01-01T00:00:00+08:00", "to": "2027-01-01T00:00:00+08:00"}
    assert data["generated_at"] == "2026-06-01T12:00:00+08:00"
    assert data["verdict"] == "inconsistent"

    observed = data["observed"]
    assert (observed["flows"], observed["bytes_out"]) == (5, 5050)       # the domestic flow is no export
    assert (observed["persons_nonsensitive"], observed["persons_sensitive"]) == (4, 1)
    dests = {d["server_name"]: d for d in observed["destinations"]}
    booking = dests["booking.gfb-freight.example"]
    assert booking["scenario_id"] == "booking" and booking["country"] == "DE" and booking["flows"] == 2
    assert booking["field_types"] == {"mobile_cn": {"distinct_values": 3, "occurrences": 4}}
    assert (booking["persons_nonsensitive"], booking["persons_sensitive"]) == (3, 0)
    assert set(booking) >= {"server_name", "ip", "country", "scenario_id", "flows", "bytes_out",
                            "encrypted_bytes_out", "persons_nonsensitive", "persons_sensitive", "field_types"}
    assert dests[UNDECLARED_HOST]["scenario_id"] is None
    assert dests["cdn.tls-only.example"]["encrypted_bytes_out"] == 4000
    assert observed["uninspected"] == [{"server_name": "cdn.tls-only.example", "country": "JP", "flows": 1,
                                        "bytes_out": 4000, "encrypted_bytes_out": 4000}]

    finding = next(f for f in data["findings"] if f["check"] == "undeclared_recipient")
    assert set(finding) >= {"check", "scenario_id", "subject", "severity", "expected", "observed", "basis",
                            "action", "evidence"}
    assert {c["check"]: c["status"] for c in data["checks"]}["scale_exceeded"] == "pass"


def test_html_is_self_contained_and_escapes_values(tmp_path: Path, records: Path) -> None:
    run_selfcheck(records, make_filing(), tmp_path / "out")
    html = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert not re.search(r"https?://", html)
    assert "<script" not in html.lower() and "<link" not in html.lower()
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;.example" in html
    assert "数据出境一致性抽验报告" in html and "Consistency report" in html
    assert "<style>" in html


def test_consistent_report(tmp_path: Path) -> None:
    records = write_records(tmp_path / "r", [flow("b1")], [detection("b1", "mobile_cn")],
                            [pi("b1", 1, "mobile_cn", 1, identifier=True)])
    report = run_selfcheck(records, make_filing(), None)
    assert report.verdict == "consistent" and report.findings == [] and report.complete
    assert "一致" in render_html(report)


def test_summary_table_lists_findings(tmp_path: Path, records: Path) -> None:
    report = run_selfcheck(records, make_filing(), None)
    console = Console(record=True, width=200)
    console.print(summary_table(report))
    text = console.export_text()
    assert "undeclared_recipient" in text and UNDECLARED_HOST in text and "inconsistent" in text


def test_a_failed_write_leaves_no_partial_files(tmp_path: Path, records: Path, monkeypatch) -> None:
    def boom(*args, **kwargs):
        raise RuntimeError("render failed")

    out = tmp_path / "out"
    monkeypatch.setattr(selfcheck_module, "render_html", boom)
    with pytest.raises(RuntimeError):
        run_selfcheck(records, make_filing(), out)
    assert list(out.iterdir()) == []
