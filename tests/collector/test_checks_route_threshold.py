"""route_threshold beyond tests/collector/test_checks_routing.py's table: which scenarios a band binds (a
scenario's own PI of the band's kind, however few persons, while the processor-wide count crosses the
threshold), the certification route against the security-assessment bands, the CIIO band beside the
others, the 1,000,000 band, and the evidence that says which bands bind and what the scenario carried
(cases for surviving SQL mutants, issue 10 §3b: `python tools/mutate_sql.py route_threshold`).

Example filing: booking (exempt_outside_list), crew-management (standard_contract, reached at CREW).
"""

from __future__ import annotations

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


def run(tmp_path: Path, flows, detections=(), persons=(), mutate=None):
    root = write_records(tmp_path / "records", flows, list(detections))
    write_persons(root, persons)
    return check_spool(root, filing=filing_with(mutate) if mutate else None)


def ciio(d: dict) -> None:
    d["processor"]["is_ciio"] = True


def crew_route(route: str):
    def mutate(d: dict) -> None:
        d["scenarios"][1]["route"] = route
    return mutate


def u(flow_id: str = "u"):
    return flow(flow_id, server_name=UNDECLARED_HOST)


PASSPORT = {"field_type": "passport_no", "sensitive": True}

ROUTE_THRESHOLD_BINDING = [
    # A PI detection without person keys carries PI; an important-data candidate alone does not (the
    # important_data check's), nor does a flow without data, however much PI other flows carried.
    pytest.param([flow("a"), flow("c", **CREW), flow("c2", **CREW), u()],
                 [detection("a", "email"), important_candidate("c", "27")], [Persons("u", 3)], ciio,
                 [("booking", "ciio_any_pi", "critical")],
                 id="ciio-binds-only-scenarios-whose-flows-carried-pi"),
    pytest.param([flow("a"), u()], [], [Persons("a", 1), Persons("u", 99_999, start=1)], None,
                 [("booking", "nonsensitive_ge_100000", "high")],
                 id="one-nonsensitive-person-in-a-scenario-of-a-100000-processor"),
    pytest.param([flow("c", **CREW), u()], [],
                 [Persons("c", 1, **PASSPORT), Persons("u", 9_999, start=1, **PASSPORT)], None,
                 [("crew-management", "sensitive_ge_10000", "critical")],
                 id="one-sensitive-person-in-a-scenario-of-a-10000-processor"),
    pytest.param([flow("c", **CREW), u()], [], [Persons("c", 5), Persons("u", 10_000, **PASSPORT)], None, [],
                 id="10000-sensitive-band-binds-only-scenarios-with-sensitive-pi"),
    pytest.param([flow("c", **CREW)], [], [Persons("c", 10_000, **PASSPORT)], crew_route("certification"),
                 [("crew-management", "sensitive_ge_10000", "critical")],
                 id="10000-sensitive-under-certification"),
]


@pytest.mark.parametrize(("flows", "detections", "persons", "mutate", "expected"), ROUTE_THRESHOLD_BINDING)
def test_route_threshold_binding(tmp_path: Path, flows, detections, persons, mutate, expected) -> None:
    assert findings_of(run(tmp_path, flows, detections, persons, mutate), "route_threshold") == expected


def test_route_threshold_lists_every_band_strongest_first(tmp_path: Path) -> None:
    results = run(tmp_path, [flow("a")], persons=[Persons("a", 1, "resident_id_cn", sensitive=True),
                                                    Persons("a", 100_000, start=10)])
    [f] = results["route_threshold"].findings
    assert f.subject == "sensitive_ge_1"
    assert f.evidence["bands"] == ["sensitive_ge_1", "nonsensitive_ge_100000"]


def test_route_threshold_ciio_band_comes_first_beside_the_sensitive_bands(tmp_path: Path) -> None:
    results = run(tmp_path, [flow("c", **CREW)], persons=[Persons("c", 10_000, **PASSPORT)], mutate=ciio)
    [f] = results["route_threshold"].findings
    assert (f.scenario_id, f.subject, f.severity) == ("crew-management", "ciio_any_pi", "critical")
    assert f.evidence["bands"] == ["ciio_any_pi", "sensitive_ge_10000", "sensitive_ge_1"]
    assert f.observed.startswith("security_assessment required: 0 non-sensitive / 10000 sensitive persons")
    assert f.observed.endswith("; the processor is a CIIO") and f.evidence["is_ciio"] is True
    assert f.evidence["required_routes"] == ["security_assessment"]


def test_route_threshold_binds_a_scenario_by_the_kinds_of_pi_it_carried(tmp_path: Path) -> None:
    # booking carried sensitive PI only: the non-sensitive band the undeclared flow crosses is not its.
    results = run(tmp_path, [flow("a"), u()], persons=[Persons("a", 2, "resident_id_cn", sensitive=True),
                                                         Persons("u", 100_000, start=10)])
    [f] = results["route_threshold"].findings
    assert (f.subject, f.evidence["bands"]) == ("sensitive_ge_1", ["sensitive_ge_1"])
    assert (f.evidence["scenario_persons_nonsensitive"], f.evidence["scenario_persons_sensitive"]) == (0, 2)
    assert (f.evidence["processor_persons_nonsensitive"], f.evidence["processor_persons_sensitive"]) == (
        100_000, 2)


def test_route_threshold_counts_the_scenario_persons_and_flows_once(tmp_path: Path) -> None:
    # The same 3 resident IDs and 4 mobiles on two flows: 3 + 4 persons, 2 flows (not 14 records).
    persons = [Persons(f, 3, "resident_id_cn", sensitive=True) for f in ("a", "a2")]
    persons += [Persons(f, 4, start=10) for f in ("a", "a2")]
    results = run(tmp_path, [flow("a"), flow("a2")], persons=persons)
    [f] = results["route_threshold"].findings
    assert (f.evidence["scenario_persons_nonsensitive"], f.evidence["scenario_persons_sensitive"]) == (4, 3)
    assert (f.evidence["flows"], f.evidence["example_flow_ids"]) == (2, ["a", "a2"])
    assert f.observed.startswith("standard_contract or certification required: 4 non-sensitive / 3 sensitive")


@pytest.mark.slow
def test_route_threshold_1000000_nonsensitive_needs_the_security_assessment(tmp_path: Path) -> None:
    # The band at a million persons (P16 Art. 7), reached exactly with booking's one person, binds booking
    # (non-sensitive PI, however little) and not crew-management, which carried one sensitive person only
    # (its standard contract covers that). ~30 s and ~1.4 GB to link a million records.
    results = run(tmp_path, [flow("a"), flow("c", **CREW), u()],
                  persons=[Persons("a", 1), Persons("c", 1, **PASSPORT), Persons("u", 999_999, start=1)])
    assert findings_of(results, "route_threshold") == [("booking", "nonsensitive_ge_1000000", "critical")]
    [f] = results["route_threshold"].findings
    assert f.evidence["bands"] == ["nonsensitive_ge_1000000", "nonsensitive_ge_100000"]
    assert f.evidence["required_routes"] == ["security_assessment"]
    assert (f.evidence["scenario_persons_nonsensitive"], f.evidence["processor_persons_nonsensitive"]) == (
        1, 1_000_000)
