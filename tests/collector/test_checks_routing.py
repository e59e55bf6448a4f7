"""The routing checks: route_threshold, significant_change, negative_list_match. One parametrized table per
check with consistent and inconsistent cases and the thresholds' boundaries (99,999 vs 100,000 persons).

Persons are written with `Persons` specs (one identifier per record, pyarrow directly): cheap enough for
100,000 rows. Example filing: booking (R1, exempt_outside_list, 30,000 / 0 persons) and crew-management
(R2, standard_contract, 800 / 800); processor industry G5822, not a CIIO; +30 % is a major change.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from collector.negative_lists import load_negative_list, parse_negative_list
from collector.persons import CST
from collector.selfcheck import run_selfcheck

from .builders import (
    CREW,
    EXAMPLE_NEGATIVE_LIST,
    PERIOD,
    UNDECLARED_HOST,
    Persons,
    check_spool,
    detection,
    filing_with,
    findings_of,
    flow,
    important_candidate,
    make_filing,
    write_persons,
    write_records,
)

LAST_YEAR = datetime(2025, 6, 1, tzinfo=CST)
EXAMPLE = load_negative_list(EXAMPLE_NEGATIVE_LIST)


def run(tmp_path: Path, flows, detections=(), persons=(), **kwargs):
    root = write_records(tmp_path / "records", flows, list(detections))
    write_persons(root, persons)
    return check_spool(root, **kwargs)


def routes(**by_scenario: str):
    """A filing mutation setting scenario routes (keys use _ for -)."""
    def mutate(d: dict) -> None:
        for s in d["scenarios"]:
            s["route"] = by_scenario.get(s["scenario_id"].replace("-", "_"), s["route"])
    return mutate


def ciio(d: dict) -> None:
    d["processor"]["is_ciio"] = True


# --- route_threshold --------------------------------------------------------------------------------

SC, SA = "standard_contract", "security_assessment"

ROUTE_THRESHOLD = [
    pytest.param([flow("a")], [Persons("a", 5)], None, [], id="few-nonsensitive-exempt"),
    pytest.param([flow("a", **CREW)], [Persons("a", 50, "passport_no", sensitive=True)], None, [],
                 id="sensitive-under-standard-contract"),
    pytest.param([flow("a"), flow("b", **CREW)],
                 [Persons("a", 5), Persons("b", 50, "passport_no", sensitive=True)], None, [],
                 id="sensitive-band-binds-only-scenarios-with-sensitive-pi"),
    pytest.param([flow("a")], [Persons("a", 1, "resident_id_cn", sensitive=True)], None,
                 [("booking", "sensitive_ge_1", "high")], id="one-sensitive-person-under-exempt"),
    pytest.param([flow("a")], [Persons("a", 99_999)], None, [], id="99999-nonsensitive"),
    pytest.param([flow("a")], [Persons("a", 100_000)], None,
                 [("booking", "nonsensitive_ge_100000", "high")], id="100000-nonsensitive"),
    pytest.param([flow("a"), flow("u", server_name=UNDECLARED_HOST)],
                 [Persons("a", 50_000), Persons("u", 50_000, start=50_000)], None,
                 [("booking", "nonsensitive_ge_100000", "high")], id="processor-wide-no-splitting"),
    pytest.param([flow("a"), flow("b")], [Persons("a", 50_000), Persons("b", 50_000)], None, [],
                 id="same-persons-twice-count-once"),
    pytest.param([flow("a")], [Persons("a", 100_000)], routes(booking="certification"), [],
                 id="certification-covers-100000"),
    pytest.param([flow("a", **CREW)], [Persons("a", 9_999, "passport_no", sensitive=True)], None, [],
                 id="9999-sensitive-under-standard-contract"),
    pytest.param([flow("a", **CREW)], [Persons("a", 10_000, "passport_no", sensitive=True)], None,
                 [("crew-management", "sensitive_ge_10000", "critical")], id="10000-sensitive"),
    pytest.param([flow("a", **CREW)], [Persons("a", 10_000, "passport_no", sensitive=True)],
                 routes(crew_management=SA), [], id="10000-sensitive-under-security-assessment"),
    pytest.param([flow("a"), flow("b", **CREW)], [Persons("a", 1), Persons("b", 1)], ciio,
                 [("booking", "ciio_any_pi", "critical"), ("crew-management", "ciio_any_pi", "critical")],
                 id="ciio-any-pi"),
    pytest.param([flow("a")], [Persons("a", 1)], lambda d: (ciio(d), routes(booking=SA)(d)), [],
                 id="ciio-under-security-assessment"),
    pytest.param([flow("a", ts=LAST_YEAR)], [Persons("a", 1, "resident_id_cn", sensitive=True)], None, [],
                 id="previous-year-not-counted"),
    pytest.param([flow("a", cross_border=False, country="CN")],
                 [Persons("a", 1, "resident_id_cn", sensitive=True)], None, [], id="domestic-no-export"),
    pytest.param([flow("a", ts=datetime(2025, 12, 31, 16, 30, tzinfo=UTC))],
                 [Persons("a", 1, "resident_id_cn", sensitive=True)], None,
                 [("booking", "sensitive_ge_1", "high")], id="2025-12-31T16:30Z-is-2026-CST"),
]


@pytest.mark.parametrize(("flows", "persons", "mutate", "expected"), ROUTE_THRESHOLD)
def test_route_threshold(tmp_path: Path, flows, persons, mutate, expected) -> None:
    results = run(tmp_path, flows, persons=persons, filing=filing_with(mutate) if mutate else None)
    assert findings_of(results, "route_threshold") == expected


def test_route_threshold_says_what_was_filed_and_what_is_required(tmp_path: Path) -> None:
    results = run(tmp_path, [flow("a"), flow("u", server_name=UNDECLARED_HOST)],
                  persons=[Persons("a", 3, "resident_id_cn", sensitive=True), Persons("u", 4, start=10)])
    [f] = results["route_threshold"].findings
    assert f.expected == "exempt_outside_list"
    assert f.observed.startswith("standard_contract or certification required: 4 non-sensitive / 3 sensitive")
    assert f.evidence["required_routes"] == ["standard_contract", "certification"]
    assert f.evidence["bands"] == ["sensitive_ge_1"]
    assert (f.evidence["scenario_persons_sensitive"], f.evidence["processor_persons_nonsensitive"]) == (3, 4)
    assert f.evidence["example_flow_ids"] == ["a"]
    assert any("P16 Art. 8" in b for b in f.basis) and f.action


# --- significant_change -----------------------------------------------------------------------------

def cst(month: int, day: int) -> datetime:
    return datetime(2026, month, day, tzinfo=CST)


DAY_90, DAY_73, DAY_2 = cst(4, 1), cst(3, 15), cst(1, 3)   # days since 1 January CST: 90, 73, 2


def tolerance(pct: float):
    def mutate(d: dict) -> None:
        d["tolerances"]["volume_increase_major_pct"] = pct
    return mutate


def declared_nonsensitive(n: int):
    def mutate(d: dict) -> None:
        d["scenarios"][1]["scale"]["persons_nonsensitive"] = n
    return mutate


# crew-management declares 800 / 800 persons: a major change is above 1,040 projected.
SIGNIFICANT_CHANGE = [
    pytest.param([Persons("a", 800)], PERIOD[1], None, [], id="at-scale-at-year-end"),
    pytest.param([Persons("a", 250)], DAY_90, None, [], id="projection-within-tolerance"),
    pytest.param([Persons("a", 300)], DAY_90, None, [("crew-management", "persons_nonsensitive", "medium")],
                 id="projection-above-tolerance"),
    pytest.param([Persons("a", 208)], DAY_73, None, [], id="projection-exactly-at-tolerance"),
    pytest.param([Persons("a", 209)], DAY_73, None, [("crew-management", "persons_nonsensitive", "medium")],
                 id="projection-just-above-tolerance"),
    pytest.param([Persons("a", 800)], DAY_90, None, [("crew-management", "persons_nonsensitive", "medium")],
                 id="count-exactly-at-scale-with-high-projection"),
    pytest.param([Persons("a", 801)], DAY_90, None, [], id="count-above-scale-is-scale-exceeded"),
    pytest.param([Persons("a", 80)], DAY_2, None, [], id="early-january-floored-at-30-days"),
    pytest.param([Persons("a", 90)], DAY_2, None, [("crew-management", "persons_nonsensitive", "medium")],
                 id="early-january-spike-still-fires"),
    # The 30-day floor exactly: 85 x 365 / 30 = 1034 stays within 1,040, 86 x 365 / 30 = 1046 does not
    # (a floor of 29 days would fire on 85, one of 31 would not fire on 86).
    pytest.param([Persons("a", 85)], DAY_2, None, [], id="early-january-85-within-over-30-days"),
    pytest.param([Persons("a", 86)], DAY_2, None, [("crew-management", "persons_nonsensitive", "medium")],
                 id="early-january-86-above-over-30-days"),
    pytest.param([Persons("a", 1)], DAY_90, declared_nonsensitive(1),
                 [("crew-management", "persons_nonsensitive", "medium")], id="a-declared-scale-of-one"),
    pytest.param([Persons("a", 300, "passport_no", sensitive=True)], DAY_90, None,
                 [("crew-management", "persons_sensitive", "medium")], id="sensitive"),
    pytest.param([Persons("a", 300)], DAY_90, tolerance(50),
                 [("crew-management", "persons_nonsensitive", "medium")], id="wider-tolerance-still-above"),
    pytest.param([Persons("a", 290)], DAY_90, tolerance(50), [], id="wider-tolerance-within"),
]


@pytest.mark.parametrize(("persons", "as_of", "mutate", "expected"), SIGNIFICANT_CHANGE)
def test_significant_change(tmp_path: Path, persons, as_of, mutate, expected) -> None:
    results = run(tmp_path, [flow("a", **CREW)], persons=persons, as_of=as_of,
                  filing=filing_with(mutate) if mutate else None)
    assert findings_of(results, "significant_change") == expected


def test_significant_change_skips_a_declared_zero(tmp_path: Path) -> None:
    # booking declares 0 sensitive persons: scale_exceeded reports the first one, not this check.
    results = run(tmp_path, [flow("a")], persons=[Persons("a", 1, "resident_id_cn", sensitive=True)],
                  as_of=DAY_2)
    assert findings_of(results, "significant_change") == []
    assert findings_of(results, "scale_exceeded") == [("booking", "persons_sensitive", "high")]


def test_significant_change_evidence(tmp_path: Path) -> None:
    results = run(tmp_path, [flow("a", **CREW)], persons=[Persons("a", 300)], as_of=DAY_90)
    [f] = results["significant_change"].findings
    assert (f.evidence["declared"], f.evidence["observed_persons"], f.evidence["projected_persons"]) == (
        800, 300, 1217)
    assert (f.evidence["elapsed_days"], f.evidence["days_in_year"]) == (90, 365)
    assert f.expected == "declared 800 persons a year; a major change above 1040 (+30.0%)"
    assert f.observed == "projected 1217 persons a year (300 persons in 90 days)"


def test_selfcheck_runs_the_checks_as_of_the_report_time(tmp_path: Path) -> None:
    root = write_records(tmp_path / "records", [flow("a", **CREW), flow("g")],
                         [detection("g", "genetic", sensitive=True)])
    write_persons(root, [Persons("a", 300)])
    early = run_selfcheck(root, make_filing(), None, generated_at=DAY_90, negative_lists=[EXAMPLE])
    later = run_selfcheck(root, make_filing(), None, generated_at=datetime(2027, 2, 1, tzinfo=CST))
    ours = ("significant_change", "negative_list_match")
    assert [(f.check, f.subject) for f in early.findings if f.check in ours] == [
        ("negative_list_match", "ZJ-X-01"), ("significant_change", "persons_nonsensitive")]
    # After the year: as_of is the end of the period, the projection is the count itself (and no list).
    assert not [f for f in later.findings if f.check in ours]


# --- negative_list_match ----------------------------------------------------------------------------

CEILING = parse_negative_list({
    "schema": "ftz.negative_list/v1", "list_id": "test", "jurisdiction": "test", "title": "test",
    "sectors": [{"name": "all", "entries": [{
        "entry_id": "T-1", "name": "车辆识别代号", "kind": "personal_information", "route": "certification",
        "field_types": ["vin"], "threshold": {"gte": 10, "lt": 20}}]}],
}, "inline")


def industry(code: str | None):
    def mutate(d: dict) -> None:
        d["processor"]["industry"] = {"gbt4754": code} if code else None
    return mutate


NEGATIVE_LIST_MATCH = [
    pytest.param([flow("a")], [detection("a", "genetic", sensitive=True)], [], (), None, [],
                 id="no-list-loaded"),
    pytest.param([flow("a")], [detection("a", "mobile_cn")], [Persons("a", 5)], [EXAMPLE], None, [],
                 id="data-not-on-the-list"),
    pytest.param([flow("a")], [detection("a", "genetic", sensitive=True, important="27")], [], [EXAMPLE],
                 None, [("booking", "ZJ-X-01", "critical")], id="genetic-any-amount"),
    pytest.param([flow("a")], [important_candidate("a", "27")], [], [EXAMPLE], None,
                 [("booking", "ZJ-X-01", "critical")], id="by-important-subcategory"),
    pytest.param([flow("a", **CREW)], [detection("a", "genetic", sensitive=True)], [], [EXAMPLE], None, [],
                 id="scenario-not-claiming-exemption"),
    pytest.param([flow("a", server_name=UNDECLARED_HOST)], [detection("a", "genetic", sensitive=True)], [],
                 [EXAMPLE], None, [], id="no-scenario"),
    pytest.param([flow("a", ts=LAST_YEAR)], [detection("a", "genetic")], [], [EXAMPLE], None, [],
                 id="outside-period"),
    pytest.param([flow("a")], [detection("a", "resident_id_cn", sensitive=True)],
                 [Persons("a", 99_999, "resident_id_cn", sensitive=True)], [EXAMPLE], None, [],
                 id="99999-resident-ids"),
    pytest.param([flow("a")], [detection("a", "resident_id_cn", sensitive=True)],
                 [Persons("a", 100_000, "resident_id_cn", sensitive=True)], [EXAMPLE], None,
                 [("booking", "ZJ-X-02", "high")], id="100000-resident-ids"),
    pytest.param([flow("a"), flow("b")], [detection("a", "resident_id_cn", sensitive=True)],
                 [Persons("a", 1, "resident_id_cn", sensitive=True), Persons("b", 100_000, start=1)],
                 [EXAMPLE], None, [], id="threshold-counts-only-the-entry-field-types"),
    # Record keys restart on every flow: a's 99,999 resident IDs and b's mobiles share keys 0..99,998, and
    # only a's records carry the entry's field type.
    pytest.param([flow("a"), flow("b")], [detection("a", "resident_id_cn", sensitive=True)],
                 [Persons("a", 99_999, "resident_id_cn", sensitive=True), Persons("b", 100_000)],
                 [EXAMPLE], None, [], id="threshold-counts-the-persons-of-the-entry-records-only"),
    pytest.param([flow("a")], [detection("a", "health_medical", sensitive=True, important="28")],
                 [Persons("a", 10_000, "health_medical", sensitive=True)], [EXAMPLE], None, [],
                 id="health-entry-is-for-sector-q84-only"),
    pytest.param([flow("a")], [detection("a", "health_medical", sensitive=True, important="28")],
                 [Persons("a", 10_000, "health_medical", sensitive=True)], [EXAMPLE], industry("Q8411"),
                 [("booking", "ZJ-Q-01", "critical")], id="health-10000-in-sector-q84"),
    pytest.param([flow("a")], [detection("a", "health_medical", sensitive=True, important="28")],
                 [Persons("a", 9_999, "health_medical", sensitive=True)], [EXAMPLE], industry("Q8411"), [],
                 id="health-9999-in-sector-q84"),
    pytest.param([flow("a")], [detection("a", "precise_location", sensitive=True)],
                 [Persons("a", 10, "precise_location", sensitive=True)], [EXAMPLE], industry(None), [],
                 id="no-industry-no-sector-entries"),
    pytest.param([flow("a")], [detection("a", "vin")], [Persons("a", 19, "vin")], [CEILING], None,
                 [("booking", "T-1", "high")], id="below-ceiling"),
    pytest.param([flow("a")], [detection("a", "vin")], [Persons("a", 20, "vin")], [CEILING], None, [],
                 id="at-ceiling"),
    pytest.param([flow("a")], [detection("a", "vin")], [Persons("a", 9, "vin")], [CEILING], None, [],
                 id="below-floor"),
]


@pytest.mark.parametrize(("flows", "detections", "persons", "lists", "mutate", "expected"),
                         NEGATIVE_LIST_MATCH)
def test_negative_list_match(tmp_path: Path, flows, detections, persons, lists, mutate, expected) -> None:
    results = run(tmp_path, flows, detections, persons, negative_lists=lists,
                  filing=filing_with(mutate) if mutate else None)
    assert findings_of(results, "negative_list_match") == expected


def test_negative_list_match_evidence(tmp_path: Path) -> None:
    dets = [detection("a", "genetic", sensitive=True, important="27"), important_candidate("b", "27")]
    results = run(tmp_path, [flow("a"), flow("b")], dets, [Persons("a", 3, "genetic", sensitive=True)],
                  negative_lists=[EXAMPLE])
    [f] = results["negative_list_match"].findings
    assert f.expected == "route: exempt_outside_list; negative_list_match.entry_ids: []"
    assert f.observed == "人类遗传资源信息 (ZJ-X-01): 3 person(s) in the period; requires security_assessment"
    assert (f.evidence["list_id"], f.evidence["required_route"], f.evidence["persons"]) == (
        "zj-ftz-example", "security_assessment", 3)
    assert f.evidence["detected_field_types"] == ["genetic", "important_data"]
    assert f.evidence["important_subcategories"] == ["27"] and f.evidence["flows"] == 2
    assert f.evidence["example_flow_ids"] == ["a", "b"] and f.evidence["masked_samples"] == ["138****0000"]
    assert any("Art. 8" in b for b in f.basis) and any("Art. 11(2)" in b for b in f.basis)
