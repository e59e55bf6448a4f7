"""The §7 report: JSON shape, observed block, persons over time, filing and negative-list versions,
self-contained escaped HTML, atomic writes."""

from __future__ import annotations

import copy
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from rich.console import Console

from collector import selfcheck as selfcheck_module
from collector.inspection import run_inspection
from collector.models import Filing, NegativeListRef, Report
from collector.reports import render_html, render_json, summary_table
from collector.selfcheck import run_selfcheck

from .builders import CREW_IP, UNDECLARED_HOST, detection, example_data, flow, make_filing, pi, write_records

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
                                        "bytes_out": 4000, "encrypted_bytes_out": 4000,
                                        "reason": "no_secrets"}]
    coverage = observed["coverage"]
    assert {"cross_border_bytes_out", "inspected_share", "by_visibility"} <= set(coverage)
    assert set(coverage["by_visibility"]) == {"plaintext", "decrypted", "proxy", "har", "encrypted", "none"}
    assert coverage["cross_border_bytes_out"] == observed["bytes_out"]

    finding = next(f for f in data["findings"] if f["check"] == "undeclared_recipient")
    assert set(finding) >= {"check", "scenario_id", "subject", "severity", "expected", "observed", "basis",
                            "action", "evidence"}
    assert {c["check"]: c["status"] for c in data["checks"]}["scale_exceeded"] == "pass"
    assert observed["persons_over_time"] == [{"scenario_id": "booking", "date": "2026-03-01",
                                              "persons_nonsensitive": 3, "persons_sensitive": 0}]
    assert (data["report_id"], data["filing_version"], data["negative_lists"]) == (None, None, [])


def test_html_is_self_contained_and_escapes_values(tmp_path: Path, records: Path) -> None:
    run_selfcheck(records, make_filing(), tmp_path / "out")
    html = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert 'class="persons-chart"' in html
    # the one URL allowed is the SVG namespace of the inline chart (an identifier, never fetched)
    assert not re.search(r"https?://", html.replace('xmlns="http://www.w3.org/2000/svg"', ""))
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


# --- persons over time, filing and negative-list versions --------------------------------------------

def _build(records: Path, filing: Filing, negative_lists=(), **kwargs) -> Report:
    """What run_selfcheck does, with build_report's optional arguments."""
    report = run_inspection(records, filing, now=GENERATED, list_refs=negative_lists, **kwargs).report
    assert report is not None
    return report


def _small_scales() -> Filing:
    data = copy.deepcopy(example_data())
    for scenario, (n, s) in zip(data["scenarios"], ((1, 0), (0, 0)), strict=True):
        scenario["scale"].update(persons_nonsensitive=n, persons_sensitive=s)
    return Filing.model_validate(data)


@pytest.fixture
def days(tmp_path: Path) -> Path:
    """Booking traffic on three CST days: mobiles 1, 2 on 1 March; 1 again and 3 just after midnight
    CST (still 1 March in UTC); 2 again and a record linking mobile 1 to a resident ID on 5 March."""
    flows = [
        flow("p1", ts=datetime(2026, 3, 1, 2, 0, tzinfo=UTC)),
        flow("p2", ts=datetime(2026, 3, 1, 17, 0, tzinfo=UTC)),
        flow("p3", ts=datetime(2026, 3, 4, 20, 0, tzinfo=UTC)),
        flow("c1", server_name=None, dst_ip=CREW_IP, country="SG", ts=datetime(2026, 3, 1, 2, 0, tzinfo=UTC)),
        flow("u1", server_name=UNDECLARED_HOST, country="US"),
        flow("d1", country="CN", cross_border=False),
    ]
    values = [pi("p1", 1, "mobile_cn", 1, identifier=True), pi("p1", 2, "mobile_cn", 2, identifier=True),
              pi("p2", 1, "mobile_cn", 1, identifier=True), pi("p2", 2, "mobile_cn", 3, identifier=True),
              pi("p3", 1, "mobile_cn", 2, identifier=True), pi("p3", 2, "mobile_cn", 1, identifier=True),
              pi("p3", 2, "resident_id_cn", 9, identifier=True, sensitive=True),
              pi("c1", 1, "mobile_cn", 30, identifier=True), pi("u1", 1, "mobile_cn", 40, identifier=True),
              pi("d1", 1, "mobile_cn", 50, identifier=True)]
    dets = [detection("p1", "mobile_cn"), detection("p3", "resident_id_cn", sensitive=True)]
    return write_records(tmp_path / "days", flows, dets, values)


def test_persons_over_time_is_cumulative_by_cst_day_per_scenario(days: Path) -> None:
    report = _build(days, _small_scales())
    got = [(p.scenario_id, p.date.isoformat(), p.persons_nonsensitive, p.persons_sensitive)
           for p in report.observed.persons_over_time]
    assert got == [
        ("booking", "2026-03-01", 2, 0),
        ("booking", "2026-03-02", 3, 0),       # mobile 1 again is no new person
        ("booking", "2026-03-05", 3, 1),       # mobile 2 again; mobile 1's person now also sensitive
        ("crew-management", "2026-03-01", 1, 0),
    ]


def test_the_last_point_of_each_scenario_equals_the_scale_exceeded_count(days: Path) -> None:
    report = _build(days, _small_scales())
    last = {p.scenario_id: p for p in report.observed.persons_over_time}
    exceeded = [f for f in report.findings if f.check == "scale_exceeded"]
    assert {(f.scenario_id, f.subject) for f in exceeded} == {
        ("booking", "persons_nonsensitive"), ("booking", "persons_sensitive"),
        ("crew-management", "persons_nonsensitive")}
    for f in exceeded:
        assert getattr(last[f.scenario_id], f.subject) == f.observed


def test_json_and_html_name_the_report_filing_version_and_negative_lists(days: Path) -> None:
    lists = [{"list_id": "zj-ftz-2025", "version": "2025.1", "sha256": "AB" * 32},
             NegativeListRef(list_id="hz-ftz", version=None, sha256="0" * 64)]
    report = _build(days, make_filing(), report_id="rpt-0001", filing_version=3, negative_lists=lists)
    data = json.loads(render_json(report))
    assert (data["report_id"], data["filing_version"]) == ("rpt-0001", 3)
    assert data["negative_lists"] == [      # sorted by list id, hashes in lower case
        {"list_id": "hz-ftz", "version": None, "sha256": "0" * 64},
        {"list_id": "zj-ftz-2025", "version": "2025.1", "sha256": "ab" * 32},
    ]
    assert render_json(report) == render_json(Report.model_validate(data))
    html = render_html(report, make_filing())
    assert "备案版本 Filing version</dt><dd>3</dd>" in html and "rpt-0001" in html
    assert "负面清单版本 Negative lists" in html and "zj-ftz-2025</code> 2025.1" in html
    assert "sha256 abababababab…" in html
    assert html.count('class="persons-chart"') == 2 and "出境人数趋势" in html


def test_a_bad_negative_list_hash_is_refused(days: Path) -> None:
    with pytest.raises(ValueError, match="sha256"):
        _build(days, make_filing(), negative_lists=[{"list_id": "x", "version": "1", "sha256": "not-a-hash"}])


# --- sampling: exact counts, and estimates beside them when flows were sampled ----------------------------

def test_an_unsampled_report_says_its_counts_are_exact_and_has_no_estimates(tmp_path: Path,
                                                                              records: Path) -> None:
    report = run_selfcheck(records, make_filing(), tmp_path / "out", generated_at=GENERATED)
    observed = json.loads((tmp_path / "out" / "report.json").read_text(encoding="utf-8"))["observed"]
    assert observed["persons_basis"] == "exact"
    assert report.observed.sampling_rate_min is None and report.observed.persons_nonsensitive_estimate is None
    text = json.dumps(observed)
    assert "_estimate" not in text and "sampling_rate_min" not in text    # the JSON keeps its shape
    html = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert "精确计数 exact counts" in html and "估计 estimate" not in html


@pytest.fixture
def sampled(tmp_path: Path) -> Path:
    """The agent sampled flows at 0.25 (sample_weight 4): two booking flows inspected (mobiles 1, 2; then
    mobile 3 with resident ID 30 in one record), one not sampled; one undeclared flow with an email."""
    flows = [flow("b1", sample_weight=4.0, src_port=40001), flow("b2", sample_weight=4.0, src_port=40002),
             flow("b3", sample_weight=4.0, inspected=False, src_port=40003),
             flow("u1", server_name=UNDECLARED_HOST, country="US", sample_weight=4.0, src_port=40004)]
    dets = [detection("b1", "mobile_cn", occurrences=2), detection("b2", "mobile_cn"),
            detection("b2", "resident_id_cn", sensitive=True), detection("u1", "email")]
    values = [pi("b1", 1, "mobile_cn", 1, identifier=True), pi("b1", 2, "mobile_cn", 2, identifier=True),
              pi("b2", 1, "mobile_cn", 3, identifier=True),
              pi("b2", 1, "resident_id_cn", 30, identifier=True, sensitive=True),
              pi("u1", 1, "email", 9, identifier=True)]
    return write_records(tmp_path / "sampled", flows, dets, values)


def _scales(booking: tuple[int, int]) -> Filing:
    data = copy.deepcopy(example_data())
    data["scenarios"][0]["scale"].update(persons_nonsensitive=booking[0], persons_sensitive=booking[1])
    return Filing.model_validate(data)


def test_a_sampled_report_keeps_exact_lower_bounds_and_shows_estimates_beside_them(sampled: Path) -> None:
    report = _build(sampled, _scales((5, 1)))      # above the exact counts, below the estimates
    data = json.loads(render_json(report))
    observed = data["observed"]
    assert (observed["persons_basis"], observed["sampling_rate_min"]) == ("exact_lower_bound", 0.25)
    assert (observed["persons_nonsensitive"], observed["persons_sensitive"]) == (4, 1)
    n, s = observed["persons_nonsensitive_estimate"], observed["persons_sensitive_estimate"]
    assert (n["value"], s["value"]) == (16, 4)                 # one flow each: observed / 0.25
    assert n["low"] >= 4 and s["low"] >= 1 and n["high"] >= 16 and n["method"] == "chao_lin_flow_sample"

    dests = {d["server_name"]: d for d in observed["destinations"]}
    booking = dests["booking.gfb-freight.example"]
    assert (booking["persons_nonsensitive"], booking["persons_nonsensitive_estimate"]["value"]) == (3, 12)
    assert (booking["persons_sensitive"], booking["persons_sensitive_estimate"]["value"]) == (1, 4)
    assert {ft: (c["distinct_values"], c["distinct_values_estimate"]["value"])
            for ft, c in booking["field_types"].items()} == {"mobile_cn": (3, 12), "resident_id_cn": (1, 4)}
    assert dests[UNDECLARED_HOST]["persons_sensitive_estimate"] == {
        "value": 0, "low": 0, "high": 0, "method": "chao_lin_flow_sample"}
    assert render_json(Report.model_validate(data)) == render_json(report)

    # The checks count the exact lower bound: 3 <= 5 and 1 <= 1, whatever the estimates say.
    assert [f for f in report.findings if f.check == "scale_exceeded"] == []
    assert {c.check: c.status for c in report.checks}["scale_exceeded"] == "pass"

    html = render_html(report, make_filing())
    assert "Flows sampled at rates down to 25 %" in html and "精确计数 exact counts" not in html
    assert f"估计 estimate ≈ 16 (95 % CI {n['low']}–{n['high']})" in html
    assert "3 个值 values (<span class=\"est\">估计 estimate ≈ 12" in html
    console = Console(record=True, width=300)
    console.print(summary_table(report))
    text = console.export_text()
    assert "sampled at ≥ 25 %" in text and "estimated ≈ 16 / ≈ 4" in text


def test_over_shared_keys_and_several_key_ids_are_reported_without_values(tmp_path: Path,
                                                                           records: Path) -> None:
    # b1's records 1 and 3 and b2's share one mobile (a hotline) with a limit of 2; the agents of b* and of
    # the other flows use different deployment keys (their pi_values' key_id).
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [pi(f, k, "mobile_cn", 77, identifier=True) for f, k in (("b1", 4), ("b2", 2), ("b2", 3))]
    write_records(tmp_path / "more", [], pi_values=rows)
    for path in (records / "pi_values" / "b1.parquet", tmp_path / "more" / "pi_values" / "b1.parquet"):
        table = pq.read_table(path)
        flows = table.column("flow_id").to_pylist()
        key_ids = ["0a1b2c3d" if f.startswith("b") else "ffff0000" for f in flows]
        column = table.schema.get_field_index("key_id")
        pq.write_table(table.set_column(column, "key_id", pa.array(key_ids, pa.string())), path)
    (tmp_path / "more" / "pi_values" / "b1.parquet").rename(records / "pi_values" / "b2.parquet")
    done = run_inspection(records, make_filing(), now=GENERATED, max_records_per_key=2)
    assert done.report is not None
    observed = json.loads(render_json(done.report))["observed"]
    assert observed["shared_person_keys"] == [{"field_types": "mobile_cn", "records": 3}]
    assert observed["key_ids"] == ["0a1b2c3d", "ffff0000"]
    assert "77" not in json.dumps(observed["shared_person_keys"])
    html = render_html(done.report, make_filing())
    assert 'id="shared-person-keys"' in html and 'id="key-ids"' in html and "ffff0000" in html
    # The default limit links the hotline's records; one key id is not listed: both fields are left out.
    plain = run_inspection(tmp_path / "records", make_filing(), now=GENERATED)
    assert plain.report is not None and plain.linking is not None
    assert plain.linking.shared_keys == () and len(plain.linking.key_ids) == 2
    text = render_json(plain.report)
    assert '"shared_person_keys"' not in text
    assert '"key_ids"' in text   # still two deployment keys


def test_a_report_without_linking_anomalies_has_neither_field(tmp_path: Path) -> None:
    values = [pi("b1", 1, "mobile_cn", 1, identifier=True), pi("b1", 2, "mobile_cn", 1, identifier=True)]
    records = write_records(tmp_path / "r", [flow("b1")], pi_values=values)
    done = run_inspection(records, make_filing(), now=GENERATED)
    assert done.report is not None
    text = render_json(done.report)
    assert '"shared_person_keys"' not in text and '"key_ids"' not in text
    assert 'id="shared-person-keys"' not in render_html(done.report, make_filing())
