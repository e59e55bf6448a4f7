"""The consistency checks: one parametrized table per check, each with consistent and inconsistent cases.

Records are built with agent.records.to_table and written as a spool in tmp dirs, then checked against
the example filing (R1 booking.gfb-freight.example + *.edi.gfb-freight.example -> scenario booking;
R2 hr.crewservices.example + 203.116.40.0/24 -> scenario crew-management).
"""

from __future__ import annotations

import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlglot
from sqlglot import exp

from collector.checks.runner import CHECKS_DIR, EVIDENCE_FILE, CheckResult, CheckSpec, discover
from collector.inspection import run_inspection
from collector.persons import calendar_year

from .builders import (
    BOOKING_HOST,
    CREW_IP,
    EDI_HOST,
    UNDECLARED_HOST,
    detection,
    flow,
    important_candidate,
    make_filing,
    pi,
    with_routes,
    write_records,
)

PERIOD = calendar_year(2026)
LAST_YEAR = datetime(2025, 6, 1, tzinfo=UTC)


def run_all(tmp_path: Path, flows, detections=(), pi_values=(), checks_dir: Path = CHECKS_DIR,
            filing=None) -> dict[str, CheckResult]:
    write_records(tmp_path / "records", flows, list(detections), list(pi_values))
    return run_inspection(tmp_path / "records", filing or make_filing(), period=PERIOD, now=PERIOD[1],
                          checks_dir=checks_dir, report=False).by_check()


def findings_of(results: dict[str, CheckResult], check: str) -> list[tuple]:
    r = results[check]
    assert r.status != "error", r.error
    return [(f.scenario_id, f.subject, f.severity) for f in r.findings]


# --- undeclared_recipient ---------------------------------------------------------------------------

UNDECLARED_RECIPIENT = [
    pytest.param([flow("a", server_name=BOOKING_HOST)], [detection("a", "mobile_cn")], [], id="exact-domain"),
    pytest.param([flow("a", server_name=EDI_HOST)], [detection("a", "mobile_cn")], [], id="wildcard-domain"),
    pytest.param([flow("a", server_name="Booking.GFB-freight.example.")], [detection("a", "email")], [],
                 id="case-and-trailing-dot"),
    pytest.param([flow("a", server_name=None, dst_ip=CREW_IP, country="SG")], [detection("a", "passport_no")],
                 [], id="cidr"),
    pytest.param([flow("a", server_name=UNDECLARED_HOST, cross_border=False, country="CN")],
                 [detection("a", "mobile_cn")], [], id="domestic-is-no-export"),
    pytest.param([flow("a", server_name=UNDECLARED_HOST)], [detection("a", "org_credit_code")], [],
                 id="non-pi-field-type"),
    pytest.param([flow("a", server_name=UNDECLARED_HOST)], [detection("a", "not_in_the_catalog")],
                 [(None, UNDECLARED_HOST, "high")], id="field-type-missing-from-catalog-counts-as-pi"),
    pytest.param([flow("a", server_name=UNDECLARED_HOST)], [], [], id="no-detections"),
    pytest.param([flow("a", server_name=UNDECLARED_HOST, ts=LAST_YEAR)], [detection("a", "email")], [],
                 id="outside-period"),
    pytest.param([flow("a", server_name=UNDECLARED_HOST), flow("b", server_name=UNDECLARED_HOST)],
                 [detection("a", "email"), detection("b", "mobile_cn")],
                 [(None, UNDECLARED_HOST, "high")], id="undeclared-host"),
    pytest.param([flow("a", server_name=None, dst_ip="192.0.2.44", country="US")], [detection("a", "email")],
                 [(None, "192.0.2.44", "high")], id="undeclared-ip-subject"),
    pytest.param([flow("a", server_name="edi.gfb-freight.example")], [detection("a", "email")],
                 [(None, "edi.gfb-freight.example", "high")], id="wildcard-does-not-cover-apex"),
    pytest.param([flow("a", server_name=f"{BOOKING_HOST}.evil.example")], [detection("a", "email")],
                 [(None, f"{BOOKING_HOST}.evil.example", "high")], id="suffix-lookalike"),
    pytest.param([flow("a", server_name=UNDECLARED_HOST)],
                 [detection("a", "resident_id_cn", sensitive=True)],
                 [(None, UNDECLARED_HOST, "critical")], id="sensitive-is-critical"),
    pytest.param([flow("a", server_name=UNDECLARED_HOST)],
                 [detection("a", "org_credit_code", important="27")],
                 [(None, UNDECLARED_HOST, "critical")], id="important-data-candidate"),
]


@pytest.mark.parametrize(("flows", "detections", "expected"), UNDECLARED_RECIPIENT)
def test_undeclared_recipient(tmp_path: Path, flows, detections, expected) -> None:
    results = run_all(tmp_path, flows, detections)
    assert findings_of(results, "undeclared_recipient") == expected


def test_undeclared_recipient_beside_declared_traffic_counts_only_flows_with_data(tmp_path: Path) -> None:
    # A declared flow in the same records does not hide the undeclared one; a flow to the same undeclared
    # host without detections is not one of the finding's flows.
    flows = [flow("a"), flow("u", server_name=UNDECLARED_HOST, bytes_out=10),
             flow("u2", server_name=UNDECLARED_HOST, bytes_out=5)]
    results = run_all(tmp_path, flows, [detection("a", "email"), detection("u", "email")])
    [f] = results["undeclared_recipient"].findings
    assert (f.subject, f.evidence["flows"], f.evidence["bytes_out"]) == (UNDECLARED_HOST, 1, 10)


def test_a_flow_carrying_several_detections_counts_once_in_the_evidence(tmp_path: Path) -> None:
    flows = [flow("u", server_name=UNDECLARED_HOST, bytes_out=10)]
    results = run_all(tmp_path, flows, [detection("u", "email"), detection("u", "mobile_cn")])
    [f] = results["undeclared_recipient"].findings
    assert (f.evidence["flows"], f.evidence["bytes_out"], f.evidence["example_flow_ids"]) == (1, 10, ["u"])
    assert (f.evidence["occurrences"], f.evidence["field_types"]) == (2, ["email", "mobile_cn"])


def test_undeclared_recipient_evidence(tmp_path: Path) -> None:
    flows = [flow(f"u{i}", server_name=UNDECLARED_HOST, country="US", bytes_out=100) for i in range(7)]
    results = run_all(tmp_path, flows, [detection(f.flow_id, "email", occurrences=2) for f in flows])
    [f] = results["undeclared_recipient"].findings
    assert f.evidence["flows"] == 7 and f.evidence["bytes_out"] == 700 and f.evidence["occurrences"] == 14
    assert f.evidence["example_flow_ids"] == ["u0", "u1", "u2", "u3", "u4"]
    assert f.evidence["countries"] == ["US"] and f.evidence["field_types"] == ["email"]
    assert f.evidence["key_paths"] == ["$.data[*].email"] and f.evidence["masked_samples"] == ["138****0000"]
    assert f.evidence["first_seen"].endswith("+08:00")
    assert "booking.gfb-freight.example" in f.expected and "203.116.40.0/24" in f.expected
    assert any("Art. 10(2)" in b for b in f.basis) and any("Art. 13" in b for b in f.basis)
    assert f.action


# --- undeclared_field_type --------------------------------------------------------------------------

UNDECLARED_FIELD_TYPE = [
    pytest.param([flow("a")], [detection("a", "mobile_cn"), detection("a", "person_name")], [],
                 id="declared-types"),
    pytest.param([flow("a", server_name=None, dst_ip=CREW_IP, country="SG")],
                 [detection("a", "passport_no", sensitive=True)], [], id="declared-in-its-own-scenario"),
    pytest.param([flow("a", server_name=UNDECLARED_HOST)],
                 [detection("a", "resident_id_cn", sensitive=True)], [], id="no-scenario-no-finding"),
    pytest.param([flow("a", cross_border=False, country="CN")], [detection("a", "resident_id_cn")], [],
                 id="domestic"),
    pytest.param([flow("a")], [detection("a", "mobile_cn"), detection("a", "resident_id_cn", sensitive=True)],
                 [("booking", "resident_id_cn", "high")], id="sensitive-undeclared-type"),
    pytest.param([flow("a", server_name=None, dst_ip=CREW_IP, country="SG")], [detection("a", "email")],
                 [("crew-management", "email", "medium")], id="nonsensitive-undeclared-type"),
    pytest.param([flow("a", server_name=EDI_HOST)], [detection("a", "passport_no", sensitive=True)],
                 [("booking", "passport_no", "high")], id="declared-elsewhere-is-not-enough"),
    pytest.param([flow("a")], [detection("a", "mobile_cn"), important_candidate("a", "27")], [],
                 id="important-data-is-not-a-catalogue-item"),
]


@pytest.mark.parametrize(("flows", "detections", "expected"), UNDECLARED_FIELD_TYPE)
def test_undeclared_field_type(tmp_path: Path, flows, detections, expected) -> None:
    results = run_all(tmp_path, flows, detections)
    assert findings_of(results, "undeclared_field_type") == expected


def test_undeclared_field_type_counts_distinct_values(tmp_path: Path) -> None:
    values = [pi("a", k, "resident_id_cn", 100 + k % 3, identifier=True, sensitive=True) for k in range(6)]
    dets = [detection("a", "resident_id_cn", sensitive=True, occurrences=6)]
    results = run_all(tmp_path, [flow("a")], dets, values)
    [f] = results["undeclared_field_type"].findings
    assert (f.evidence["occurrences"], f.evidence["distinct_values"]) == (6, 3)
    assert f.expected == ["person_name", "mobile_cn", "email", "postal_address", "org_credit_code"]


def test_undeclared_field_type_counts_the_values_of_its_own_scenario_type_and_flows(tmp_path: Path,
                                                                                    caplog) -> None:
    # resident_id_cn is undeclared in both scenarios, with other values on an undeclared destination and
    # declared mobiles beside it; email reached crew-management without values (key-only detection).
    flows = [flow("a"), flow("c", **CREW), flow("u", server_name=UNDECLARED_HOST)]
    rid = "resident_id_cn"
    values = ([pi("a", k, rid, 100 + k, identifier=True, sensitive=True) for k in range(2)]
              + [pi("a", 10 + k, "mobile_cn", 500 + k, identifier=True) for k in range(4)]
              + [pi("c", k, rid, 200 + k, identifier=True, sensitive=True) for k in range(3)]
              + [pi("u", k, rid, 300 + k, identifier=True, sensitive=True) for k in range(10)])
    dets = [detection("a", rid, sensitive=True), detection("a", "mobile_cn"),
            detection("c", rid, sensitive=True), detection("c", "email"), detection("u", rid, sensitive=True)]
    results = run_all(tmp_path, flows, dets, values)
    got = {(f.scenario_id, f.subject): f.evidence["distinct_values"]
           for f in results["undeclared_field_type"].findings}
    assert got == {("booking", rid): 2, ("crew-management", rid): 3, ("crew-management", "email"): 0}
    assert "twice" not in caplog.text


# --- scale_exceeded ---------------------------------------------------------------------------------

def _mobiles(flow_id: str, n: int, start: int = 0) -> list:
    return [pi(flow_id, k, "mobile_cn", start + k, identifier=True) for k in range(n)]


CREW = {"server_name": None, "dst_ip": CREW_IP, "country": "SG"}

SCALE_EXCEEDED = [
    pytest.param([flow("a")], _mobiles("a", 5), [], id="under-scale"),
    pytest.param([flow("a", **CREW)], _mobiles("a", 800), [], id="exactly-at-scale"),
    pytest.param([flow("a", **CREW), flow("b", **CREW)], _mobiles("a", 800) + _mobiles("b", 800),
                 [], id="same-persons-twice"),
    pytest.param([flow("a", **CREW)], _mobiles("a", 801),
                 [("crew-management", "persons_nonsensitive", 800, 801)], id="over-nonsensitive-scale"),
    pytest.param([flow("a")], [pi("a", 1, "resident_id_cn", 7, identifier=True, sensitive=True)],
                 [("booking", "persons_sensitive", 0, 1)], id="declared-zero-sensitive"),
    pytest.param([flow("a", ts=LAST_YEAR)],
                 [pi("a", 1, "resident_id_cn", 7, identifier=True, sensitive=True)],
                 [], id="previous-year-not-counted"),
    pytest.param([flow("a", server_name=UNDECLARED_HOST)],
                 [pi("a", 1, "resident_id_cn", 7, identifier=True, sensitive=True)], [], id="no-scenario"),
]


@pytest.mark.parametrize(("flows", "pi_values", "expected"), SCALE_EXCEEDED)
def test_scale_exceeded(tmp_path: Path, flows, pi_values, expected) -> None:
    results = run_all(tmp_path, flows, pi_values=pi_values)
    assert results["scale_exceeded"].status != "error", results["scale_exceeded"].error
    got = [(f.scenario_id, f.subject, f.expected, f.observed) for f in results["scale_exceeded"].findings]
    assert got == expected


# --- important_data ---------------------------------------------------------------------------------

SA_BOOKING = {"booking": "security_assessment"}

IMPORTANT_DATA = [
    pytest.param([flow("a")], [detection("a", "mobile_cn")], None, [], id="no-candidate"),
    pytest.param([flow("a")], [important_candidate("a", "27")], SA_BOOKING, [],
                 id="security-assessment-route"),
    pytest.param([flow("a", server_name=UNDECLARED_HOST)], [important_candidate("a", "6")], None, [],
                 id="no-scenario-is-undeclared-recipient-instead"),
    pytest.param([flow("a", cross_border=False, country="CN")], [important_candidate("a", "27")], None, [],
                 id="domestic"),
    pytest.param([flow("a", ts=LAST_YEAR)], [important_candidate("a", "27")], None, [], id="outside-period"),
    pytest.param([flow("a")], [important_candidate("a", "27")], None, [("booking", "27", "high")],
                 id="candidate-under-exempt-outside-list"),
    pytest.param([flow("a", **CREW)], [detection("a", "health_medical", sensitive=True, important="28")],
                 None, [("crew-management", "28", "high")], id="pi-type-implies-subcategory"),
    pytest.param([flow("a"), flow("b"), flow("c", **CREW)],
                 [important_candidate("a", "27"), detection("b", "genetic", sensitive=True, important="27"),
                  important_candidate("a", "6"), important_candidate("c", "4")], SA_BOOKING,
                 [("crew-management", "4", "high")], id="only-scenarios-without-security-assessment"),
    pytest.param([flow("a"), flow("b")],
                 [important_candidate("a", "27"), detection("b", "genetic", sensitive=True, important="27"),
                  important_candidate("a", "6")], None,
                 [("booking", "6", "high"), ("booking", "27", "high")], id="one-row-per-subcategory"),
]


@pytest.mark.parametrize(("flows", "detections", "routes", "expected"), IMPORTANT_DATA)
def test_important_data(tmp_path: Path, flows, detections, routes, expected) -> None:
    results = run_all(tmp_path, flows, detections, filing=with_routes(routes) if routes else None)
    assert findings_of(results, "important_data") == expected


def test_important_data_finding_is_marked_candidate_with_its_evidence(tmp_path: Path) -> None:
    dets = [important_candidate("a", "27"), detection("b", "genetic", sensitive=True, important="27")]
    results = run_all(tmp_path, [flow("a"), flow("b")], dets,
                      filing=with_routes({"booking": "exempt_outside_list"}, {"booking": "27"}))
    [f] = results["important_data"].findings
    assert f.evidence["candidate"] is True and f.severity == "high"
    assert f.expected == "route: exempt_outside_list; negative_list_match.subcategory: 27"
    assert "candidate" in f.observed and "27" in f.observed
    assert f.evidence["field_types"] == ["genetic", "important_data"] and f.evidence["flows"] == 2
    assert f.evidence["route"] == "exempt_outside_list"
    assert f.evidence["required_route"] == "security_assessment"
    assert f.evidence["example_flow_ids"] == ["a", "b"]
    assert f.evidence["matched_terms"] == ["vcf"] and f.evidence["masked_samples"] == ["138****0000"]
    assert any("Art. 8" in b for b in f.basis) and any("P16 Art. 7" in b for b in f.basis)


def test_example_flows_are_the_first_five_in_time_order(tmp_path: Path) -> None:
    # Six flows whose ids run against their times: the examples are the five earliest, earliest first.
    t0 = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
    ids = ["f", "e", "d", "c", "b", "a"]
    flows = [flow(i, ts=t0 + timedelta(minutes=n)) for n, i in enumerate(ids)]
    results = run_all(tmp_path, flows, [important_candidate(i, "27") for i in ids])
    [f] = results["important_data"].findings
    assert f.evidence["example_flow_ids"] == ids[:5] and f.evidence["flows"] == 6


def test_important_data_counts_a_flow_once_per_subcategory(tmp_path: Path) -> None:
    # Two detections of sub-category 27 in flow a (the agent's candidate and genetic PI), one in flow b.
    dets = [important_candidate("a", "27"), detection("a", "genetic", sensitive=True, important="27"),
            important_candidate("b", "27")]
    results = run_all(tmp_path, [flow("a"), flow("b")], dets)
    [f] = results["important_data"].findings
    assert (f.evidence["flows"], f.evidence["occurrences"]) == (2, 3)
    assert "sub-category 27: 2 flow(s)" in f.observed


# --- runner -----------------------------------------------------------------------------------------

def test_a_broken_check_is_an_error_and_the_others_still_run(tmp_path: Path) -> None:
    checks = tmp_path / "checks"
    shutil.copytree(CHECKS_DIR, checks, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    (checks / "broken.sql").write_text(
        "-- check: broken\n-- severity: low\n-- params:\nSELECT * FROM no_such_table\n", encoding="utf-8")
    (checks / "bad_header.sql").write_text("-- check: other\nSELECT 1 AS subject\n", encoding="utf-8")
    results = run_all(tmp_path, [flow("a", server_name=UNDECLARED_HOST)], [detection("a", "email")],
                      checks_dir=checks)
    assert results["broken"].status == "error" and "no_such_table" in results["broken"].error
    assert results["bad_header"].status == "error"
    assert results["undeclared_recipient"].status == "fail"
    assert results["scale_exceeded"].status == "pass"


def test_a_checks_hits_are_its_own_and_only_temp_views_come_before_its_select(tmp_path: Path) -> None:
    # Temp views live in the check's own cursor: a later check cannot read an earlier check's `hits`.
    checks = tmp_path / "checks"
    shutil.copytree(CHECKS_DIR, checks, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    (checks / "a_declares.sql").write_text(
        "-- check: a_declares\n-- severity: low\nCREATE OR REPLACE TEMP VIEW hits AS\n"
        "SELECT NULL::VARCHAR AS scenario_id, 'x' AS subject, d.* FROM typed_detections d;\n"
        "SELECT subject, flows, example_flow_ids FROM hit_evidence\n", encoding="utf-8")
    (checks / "b_borrows.sql").write_text(
        "-- check: b_borrows\n-- severity: low\nSELECT subject FROM hits\n", encoding="utf-8")
    (checks / "c_writes.sql").write_text(
        "-- check: c_writes\n-- severity: low\nCREATE TABLE flows_copy AS SELECT * FROM flows;\n"
        "SELECT 'x' AS subject\n", encoding="utf-8")
    results = run_all(tmp_path, [flow("a", server_name=UNDECLARED_HOST)], [detection("a", "email")],
                      checks_dir=checks)
    [f] = results["a_declares"].findings
    assert (f.subject, f.evidence["flows"], f.evidence["example_flow_ids"]) == ("x", 1, ["a"])
    assert results["b_borrows"].status == "error" and "hits" in results["b_borrows"].error
    assert results["c_writes"].status == "error" and "temp view" in results["c_writes"].error
    assert results["undeclared_recipient"].status == "fail"


def roll_ups(sql: str) -> list[str]:
    """The evidence roll-up's aggregates in `sql`: lists of key paths or masked samples, and flows listed
    in time order (a list of (ts, …) structs). Read from sqlglot's tree, so that any spelling is found."""
    found = []
    for tree in sqlglot.parse(sql, read="duckdb"):
        for agg in tree.find_all(exp.ArrayAgg):
            arg = agg.this
            if (isinstance(arg, exp.Column) and arg.name in {"key_paths", "masked_samples"}) or (
                    isinstance(arg, exp.Struct) and arg.expressions and arg.expressions[0].this.name == "ts"):
                found.append(agg.sql(dialect="duckdb"))
    return found


def test_no_check_writes_the_evidence_roll_up_itself() -> None:
    assert len(roll_ups((CHECKS_DIR / EVIDENCE_FILE).read_text(encoding="utf-8"))) == 4
    assert roll_ups("SELECT array_slice(list_sort(list_distinct(flatten(list(d.key_paths)))), 1, 5) FROM d")
    for path in discover():
        spec = CheckSpec.from_file(path)
        assert roll_ups(spec.sql) == [], f"{spec.id}: roll `hits` up in evidence.sql, read hit_evidence"
        if re.search(r"\b(key_paths|masked_samples)\b", spec.query):   # shows detection evidence
            assert spec.uses_evidence and "hit_evidence" in spec.query, spec.id


def test_every_check_file_has_a_header_and_a_test_table() -> None:
    from . import test_checks_routing as routing
    from . import test_checks_validity as validity

    tables = {"undeclared_recipient": UNDECLARED_RECIPIENT, "undeclared_field_type": UNDECLARED_FIELD_TYPE,
              "scale_exceeded": SCALE_EXCEEDED, "important_data": IMPORTANT_DATA,
              "route_threshold": routing.ROUTE_THRESHOLD, "significant_change": routing.SIGNIFICANT_CHANGE,
              "negative_list_match": routing.NEGATIVE_LIST_MATCH,
              "recipient_country_mismatch": validity.RECIPIENT_COUNTRY_MISMATCH,
              "outside_validity": validity.OUTSIDE_VALIDITY, "unfiled_export": validity.UNFILED_EXPORT}
    assert {p.stem for p in discover()} == set(tables)  # views.sql and evidence.sql are no checks
    for path in discover():
        spec = CheckSpec.from_file(path)
        assert spec.basis and spec.action
        # The period and "cross-border" come from the shared views (views.sql), never written again here.
        body = "\n".join(line.split("--", 1)[0] for line in spec.sql.splitlines())
        assert spec.params == () and "cross_border" not in body and "period_from" not in body, spec.id
        assert not re.search(r"\b(FROM|JOIN)\s+(flows|scenario_flows)\b", body), f"{spec.id}: period_flows"
        cases = tables[spec.id]
        assert any(not c.values[-1] for c in cases) and any(c.values[-1] for c in cases)
