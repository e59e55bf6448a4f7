"""The filing-validity checks: recipient_country_mismatch, outside_validity, unfiled_export. One
parametrized table per check with consistent and inconsistent cases and the CST day boundaries.

Example filing: R1 (DE) booking.gfb-freight.example -> booking; R2 (SG) 203.116.40.0/24 -> crew-management;
valid 2026-01-01 .. 2027-12-31, status active. Records are UTC; calendar days are China Standard Time.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from .builders import (
    CREW,
    UNDECLARED_HOST,
    Persons,
    check_spool,
    detection,
    filing_with,
    findings_of,
    flow,
    important_candidate,
    write_persons,
    write_records,
)

LAST_YEAR = datetime(2025, 6, 1, tzinfo=UTC)
ORPHAN_HOST = "api.orphan-recipient.example"


def run(tmp_path: Path, flows, detections=(), persons=(), **kwargs):
    root = write_records(tmp_path / "records", flows, list(detections))
    write_persons(root, persons)
    return check_spool(root, **kwargs)


def orphan_recipient(d: dict) -> None:
    """R3 (JP), declared but named by no scenario."""
    d["recipients"].append({"recipient_id": "R3", "name": "Orphan KK", "country_region": "JP",
                            "declared_endpoints": {"domains": [ORPHAN_HOST], "ip_cidrs": []}})


# --- recipient_country_mismatch ---------------------------------------------------------------------

RECIPIENT_COUNTRY_MISMATCH = [
    pytest.param([flow("a")], [detection("a", "mobile_cn")], None, [], id="declared-country"),
    pytest.param([flow("a", **CREW)], [detection("a", "passport_no", sensitive=True)], None, [],
                 id="declared-country-by-cidr"),
    pytest.param([flow("a", country=None)], [detection("a", "mobile_cn")], None, [], id="unknown-country"),
    pytest.param([flow("a", country="CN", cross_border=False)], [detection("a", "mobile_cn")], None, [],
                 id="mainland-endpoint-is-no-export"),
    pytest.param([flow("a", country="US", ts=LAST_YEAR)], [detection("a", "mobile_cn")], None, [],
                 id="outside-period"),
    pytest.param([flow("a", server_name=UNDECLARED_HOST, country="US")], [detection("a", "email")], None, [],
                 id="undeclared-destination-is-not-a-recipient"),
    pytest.param([flow("a", country="US")], [detection("a", "mobile_cn")], None,
                 [("booking", "R1", "high")], id="other-country-with-pi"),
    pytest.param([flow("a", country="us")], [], None, [("booking", "R1", "medium")],
                 id="other-country-no-pi-seen"),
    pytest.param([flow("a", **{**CREW, "country": "HK"})], [detection("a", "passport_no", sensitive=True)],
                 None, [("crew-management", "R2", "high")], id="hk-is-not-sg"),
    pytest.param([flow("a", **CREW), flow("b", **{**CREW, "country": "HK"}), flow("c", country="FR")],
                 [detection("b", "org_credit_code")], None,
                 [("booking", "R1", "medium"), ("crew-management", "R2", "medium")],
                 id="one-row-per-scenario-and-recipient"),
    pytest.param([flow("a", server_name=ORPHAN_HOST, country="KR")], [detection("a", "email")],
                 orphan_recipient, [(None, "R3", "high")], id="recipient-in-no-scenario"),
    pytest.param([flow("a", server_name=ORPHAN_HOST, country="JP")], [detection("a", "email")],
                 orphan_recipient, [], id="recipient-in-no-scenario-consistent"),
]


@pytest.mark.parametrize(("flows", "detections", "mutate", "expected"), RECIPIENT_COUNTRY_MISMATCH)
def test_recipient_country_mismatch(tmp_path: Path, flows, detections, mutate, expected) -> None:
    results = run(tmp_path, flows, detections, filing=filing_with(mutate) if mutate else None)
    assert findings_of(results, "recipient_country_mismatch") == expected


def test_recipient_country_mismatch_lists_the_countries_seen(tmp_path: Path) -> None:
    hk, my = {**CREW, "country": "HK"}, {**CREW, "country": "MY"}
    flows = [flow("a", **CREW), flow("b", **hk), flow("c", **my), flow("d", **hk, bytes_out=5)]
    dets = [detection("b", "passport_no", sensitive=True), detection("b", "mobile_cn")]
    results = run(tmp_path, flows, dets)
    [f] = results["recipient_country_mismatch"].findings
    assert (f.expected, f.observed) == ("SG", ["HK", "MY"])
    assert (f.evidence["flows"], f.evidence["flows_to_recipient"], f.evidence["flows_with_data"]) == (3, 4, 1)
    assert f.evidence["bytes_out"] == 2005 and f.evidence["field_types"] == ["mobile_cn", "passport_no"]
    assert f.evidence["example_flow_ids"] == ["b", "c", "d"]
    assert any("Art. 10(4)" in b for b in f.basis) and f.action


def test_recipient_country_mismatch_gives_each_recipient_its_own_sums(tmp_path: Path, caplog) -> None:
    # Two recipients of one scenario, both reached in other countries: one row each, never the other's sums.
    def orphan_in_booking(d: dict) -> None:
        orphan_recipient(d)
        d["scenarios"][0]["recipients"].append("R3")

    # (a3: a country unknown, neither a mismatch nor one of the recipient's judged flows)
    flows = [flow("a", country="FR", bytes_out=7), flow("a2"), flow("a3", country=None),
             flow("c", server_name=ORPHAN_HOST, country="KR", bytes_out=50)]
    results = run(tmp_path, flows, filing=filing_with(orphan_in_booking))
    got = {(f.scenario_id, f.subject): (f.evidence["bytes_out"], f.evidence["flows_to_recipient"])
           for f in results["recipient_country_mismatch"].findings}
    assert got == {("booking", "R1"): (7, 2), ("booking", "R3"): (50, 1)}
    assert "twice" not in caplog.text


# --- outside_validity -------------------------------------------------------------------------------

def validity(valid_from: str, valid_until: str):
    def mutate(d: dict) -> None:
        d["valid_from"], d["valid_until"] = valid_from, valid_until
    return mutate


MARCH_TO_SEPTEMBER = validity("2026-03-01", "2026-09-30")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


OUTSIDE_VALIDITY = [
    pytest.param([flow("a", ts=utc(2026, 6, 1))], [detection("a", "mobile_cn")], MARCH_TO_SEPTEMBER, [],
                 id="within"),
    pytest.param([flow("a", ts=utc(2025, 12, 31, 16, 30))], [detection("a", "mobile_cn")], None, [],
                 id="2025-12-31T16:30Z-is-1-january-CST"),
    pytest.param([flow("a", ts=utc(2026, 2, 28, 16, 0))], [detection("a", "mobile_cn")], MARCH_TO_SEPTEMBER,
                 [], id="valid-from-00:00-CST"),
    pytest.param([flow("a", ts=utc(2026, 2, 28, 15, 59))], [detection("a", "mobile_cn")], MARCH_TO_SEPTEMBER,
                 [("booking", "before_valid_from", "high")], id="one-minute-before-valid-from"),
    pytest.param([flow("a", ts=utc(2026, 9, 30, 15, 59))], [detection("a", "mobile_cn")], MARCH_TO_SEPTEMBER,
                 [], id="last-minute-of-valid-until"),
    pytest.param([flow("a", ts=utc(2026, 9, 30, 16, 0))], [detection("a", "mobile_cn")], MARCH_TO_SEPTEMBER,
                 [("booking", "after_valid_until", "high")], id="day-after-valid-until"),
    pytest.param([flow("a", ts=utc(2026, 1, 5)), flow("b", ts=utc(2026, 12, 1), **CREW),
                  flow("c", ts=utc(2026, 11, 1))],
                 [detection("a", "email"), detection("b", "passport_no", sensitive=True),
                  important_candidate("c", "26")], MARCH_TO_SEPTEMBER,
                 [("booking", "after_valid_until", "high"), ("booking", "before_valid_from", "high"),
                  ("crew-management", "after_valid_until", "high")], id="both-sides-both-scenarios"),
    pytest.param([flow("a", ts=utc(2026, 1, 5))], [detection("a", "org_credit_code")], MARCH_TO_SEPTEMBER, [],
                 id="no-pi-no-finding"),
    pytest.param([flow("a", ts=utc(2026, 1, 5))], [], MARCH_TO_SEPTEMBER, [], id="no-detections"),
    pytest.param([flow("a", ts=utc(2026, 1, 5), server_name=UNDECLARED_HOST)], [detection("a", "email")],
                 MARCH_TO_SEPTEMBER, [], id="undeclared-destination-is-undeclared-recipients"),
    pytest.param([flow("a", ts=utc(2026, 1, 5), cross_border=False, country="CN")], [detection("a", "email")],
                 MARCH_TO_SEPTEMBER, [], id="domestic"),
]


@pytest.mark.parametrize(("flows", "detections", "mutate", "expected"), OUTSIDE_VALIDITY)
def test_outside_validity(tmp_path: Path, flows, detections, mutate, expected) -> None:
    results = run(tmp_path, flows, detections, filing=filing_with(mutate) if mutate else None)
    assert findings_of(results, "outside_validity") == expected


def test_outside_validity_evidence(tmp_path: Path) -> None:
    flows = [flow("a", ts=utc(2026, 1, 5)), flow("b", ts=utc(2026, 2, 1))]
    results = run(tmp_path, flows, [detection("a", "email", occurrences=2), detection("b", "mobile_cn")],
                  filing=filing_with(MARCH_TO_SEPTEMBER))
    [f] = results["outside_validity"].findings
    assert f.expected == "2026-03-01 .. 2026-09-30 (CST)"
    assert f.observed == ("2 flow(s) carrying email, mobile_cn from 2026-01-05 08:00 CST "
                          "to 2026-02-01 08:00 CST")
    assert (f.evidence["flows"], f.evidence["occurrences"]) == (2, 3)
    assert f.evidence["example_flow_ids"] == ["a", "b"]
    assert f.evidence["first_seen"] == "2026-01-05T08:00:00+08:00"


def test_outside_validity_counts_a_flow_once_and_keeps_term_names_out_of_the_samples(tmp_path: Path) -> None:
    dets = [detection("a", "email"), detection("a", "mobile_cn"), important_candidate("a", "26", ("genome",))]
    results = run(tmp_path, [flow("a", ts=utc(2026, 1, 5))], dets, filing=filing_with(MARCH_TO_SEPTEMBER))
    [f] = results["outside_validity"].findings
    assert f.evidence["flows"] == 1 and f.observed.startswith("1 flow(s) carrying email, important_data")
    assert f.evidence["masked_samples"] == ["138****0000"] and f.evidence["important_subcategories"] == ["26"]


# --- unfiled_export ---------------------------------------------------------------------------------

def status(value: str):
    def mutate(d: dict) -> None:
        d["status"] = value
    return mutate


UNFILED_EXPORT = [
    pytest.param([flow("a")], [detection("a", "mobile_cn")], None, [], id="active"),
    pytest.param([flow("a")], [detection("a", "mobile_cn")], status("draft"), [(None, "draft", "high")],
                 id="draft"),
    pytest.param([flow("a")], [detection("a", "mobile_cn")], status("submitted"),
                 [(None, "submitted", "high")], id="submitted"),
    pytest.param([flow("a")], [detection("a", "mobile_cn")], status("expired"), [(None, "expired", "high")],
                 id="expired"),
    pytest.param([flow("a")], [detection("a", "mobile_cn")], status("suspended"),
                 [(None, "suspended", "critical")], id="suspended"),
    pytest.param([flow("a", server_name=UNDECLARED_HOST)], [detection("a", "email")], status("revoked"),
                 [(None, "revoked", "critical")], id="revoked-any-destination"),
    pytest.param([flow("a")], [important_candidate("a", "27")], status("draft"), [(None, "draft", "high")],
                 id="important-data-candidate"),
    pytest.param([flow("a")], [detection("a", "org_credit_code")], status("draft"), [], id="no-pi"),
    pytest.param([flow("a")], [], status("draft"), [], id="no-detections"),
    pytest.param([flow("a", cross_border=False, country="CN")], [detection("a", "mobile_cn")],
                 status("draft"), [], id="domestic"),
    pytest.param([flow("a", ts=utc(2025, 12, 31, 16, 30))], [detection("a", "mobile_cn")], status("draft"),
                 [(None, "draft", "high")], id="2025-12-31T16:30Z-is-in-2026"),
    pytest.param([flow("a", ts=utc(2025, 12, 31, 15, 30))], [detection("a", "mobile_cn")], status("draft"),
                 [], id="2025-12-31T15:30Z-is-in-2025"),
]


@pytest.mark.parametrize(("flows", "detections", "mutate", "expected"), UNFILED_EXPORT)
def test_unfiled_export(tmp_path: Path, flows, detections, mutate, expected) -> None:
    results = run(tmp_path, flows, detections, filing=filing_with(mutate) if mutate else None)
    assert findings_of(results, "unfiled_export") == expected


def test_unfiled_export_evidence(tmp_path: Path) -> None:
    flows = [flow("a"), flow("u", server_name=UNDECLARED_HOST, country="US")]
    dets = [detection("a", "mobile_cn"), detection("u", "resident_id_cn", sensitive=True)]
    persons = [Persons("a", 3), Persons("u", 2, "resident_id_cn", sensitive=True)]
    results = run(tmp_path, flows, dets, persons, filing=filing_with(status("submitted")))
    [f] = results["unfiled_export"].findings
    assert (f.scenario_id, f.expected) == (None, "active")
    assert f.observed == ("filing ZJFTZ-NB-2026-0031 is submitted: 2 flow(s) carried mobile_cn, "
                          "resident_id_cn abroad")
    assert (f.evidence["persons_nonsensitive"], f.evidence["persons_sensitive"]) == (3, 2)
    assert f.evidence["destinations"] == ["booking.gfb-freight.example", UNDECLARED_HOST]
    assert any("Art. 10" in b for b in f.basis) and f.action


def test_unfiled_export_counts_a_flow_once_and_keeps_term_names_out_of_the_samples(tmp_path: Path) -> None:
    dets = [detection("a", "email"), detection("a", "mobile_cn"), important_candidate("a", "27", ("genome",))]
    results = run(tmp_path, [flow("a")], dets, filing=filing_with(status("draft")))
    [f] = results["unfiled_export"].findings
    assert f.evidence["flows"] == 1 and f.observed.startswith("filing ZJFTZ-NB-2026-0031 is draft: 1 flow(s)")
    assert f.evidence["masked_samples"] == ["138****0000"] and f.evidence["important_subcategories"] == ["27"]
