"""negative_list_match beyond one entry at a time: several entries and several lists matching at once, two
scenarios claiming the exemption, entries that name only an important-data sub-category, and the
processor-wide persons in the evidence. A negative-list match is the most serious finding, so each case
asserts every finding with the evidence that decides it (cases for surviving SQL mutants, issue 10 §3b:
`python tools/mutate_sql.py negative_list_match`).

Lists are built inline with small thresholds so that persons stay few. Example filing: booking
(exempt_outside_list), crew-management (standard_contract unless a case makes it exempt too).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from collector.negative_lists import NegativeList, parse_negative_list

from .builders import (
    CREW,
    UNDECLARED_HOST,
    Persons,
    check_spool,
    detection,
    filing_with,
    flow,
    important_candidate,
    write_persons,
    write_records,
)

SA, SC, CERT = "security_assessment", "standard_contract", "certification"


def entry(entry_id: str, route: str, *, field_types: tuple[str, ...] = (), subcategory: str | None = None,
          gte: int | None = None, lt: int | None = None, name: str | None = None) -> dict[str, Any]:
    kind = "important_data" if route == SA and subcategory else "personal_information"
    e: dict[str, Any] = {"entry_id": entry_id, "name": name or f"entry {entry_id}", "kind": kind,
                         "route": route, "field_types": list(field_types)}
    if subcategory:
        e["important_subcategory"] = subcategory
    threshold = {k: v for k, v in (("gte", gte), ("lt", lt)) if v is not None}
    if threshold:
        e["threshold"] = threshold
    return e


def negative_list(list_id: str, *entries: dict[str, Any]) -> NegativeList:
    return parse_negative_list({
        "schema": "ftz.negative_list/v1", "list_id": list_id, "version": "1", "jurisdiction": "test",
        "title": list_id, "sectors": [{"name": "all", "entries": list(entries)}]}, "inline")


class _Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def run(tmp_path: Path, flows, detections, persons, lists, mutate=None):
    root = write_records(tmp_path / "records", flows, list(detections))
    write_persons(root, persons)
    # The check returns one row per (scenario, list, entry): the runner keeps the first of two rows for one
    # finding with a warning, which would hide a wrong join behind a right-looking first row.
    warnings = _Warnings()
    runner_log = logging.getLogger("collector.checks.runner")
    runner_log.addHandler(warnings)
    try:
        results = check_spool(root, negative_lists=lists, filing=filing_with(mutate) if mutate else None)
    finally:
        runner_log.removeHandler(warnings)
    assert not [w for w in warnings.messages if "negative_list_match" in w], warnings.messages
    r = results["negative_list_match"]
    assert r.status != "error", r.error
    return r.findings


EVIDENCE = ("list_id", "persons", "processor_persons", "flows", "occurrences", "detected_field_types",
            "important_subcategories")


def table(findings) -> list[tuple]:
    """(scenario, subject, severity, list_id, persons, processor_persons, flows, occurrences, detected field
    types, sub-categories) per finding, in the check's order."""
    return [(f.scenario_id, f.subject, f.severity, *(f.evidence[k] for k in EVIDENCE)) for f in findings]


def test_negative_list_match_reports_each_matching_entry_once_with_its_own_persons_and_flows(
        tmp_path: Path) -> None:
    lst = negative_list(
        "L", entry("A-1", SA, field_types=("genetic",), subcategory="27"),
        entry("A-2", SC, field_types=("resident_id_cn",), gte=3),
        entry("A-3", CERT, field_types=("mobile_cn", "email"), gte=2, lt=100),
        entry("A-4", SC, field_types=("passport_no",)))                    # not carried: no finding
    flows = [flow("a"), flow("a2")]
    dets = [detection("a", "genetic", sensitive=True, important="27", occurrences=2),
            detection("a", "resident_id_cn", sensitive=True, occurrences=4),
            detection("a", "mobile_cn", occurrences=1), detection("a", "email", occurrences=1),
            detection("a2", "resident_id_cn", sensitive=True, occurrences=3)]
    # The same three resident IDs on a and a2 are three persons; genetic and mobile records are others.
    persons = [Persons("a", 3, "resident_id_cn", sensitive=True), Persons("a2", 3, "resident_id_cn", True),
               Persons("a", 2, "genetic", sensitive=True, start=10), Persons("a", 5, start=20)]
    findings = run(tmp_path, flows, dets, persons, [lst])
    assert table(findings) == [
        # genetic matches A-1 by its field type and by its sub-category: one detection, counted once.
        ("booking", "A-1", "critical", "L", 2, 2, 1, 2, ["genetic"], ["27"]),
        ("booking", "A-2", "high", "L", 3, 3, 2, 7, ["resident_id_cn"], []),
        # mobile and e-mail on one flow: one flow.
        ("booking", "A-3", "high", "L", 5, 5, 1, 2, ["email", "mobile_cn"], []),
    ]
    by_entry = {f.subject: f for f in findings}
    assert by_entry["A-3"].observed == "entry A-3 (A-3): 5 person(s) in the period; requires certification"
    assert by_entry["A-3"].evidence["entry_field_types"] == ["email", "mobile_cn"]
    assert (by_entry["A-3"].evidence["threshold_gte"], by_entry["A-3"].evidence["threshold_lt"]) == (2, 100)
    assert by_entry["A-2"].evidence["example_flow_ids"] == ["a", "a2"]
    assert by_entry["A-1"].evidence["required_route"] == SA


def test_negative_list_match_keeps_entries_of_two_lists_with_one_entry_id_apart(tmp_path: Path) -> None:
    # Zones' lists number entries independently: L1's E-1 (VINs, floor 1) and L2's E-1 (VINs or e-mail
    # addresses, floor 10) are two entries; 5 persons reach only the first, and the processor-wide
    # persons of each are its own field types' (L2's E-1 also counts u's 2 e-mail addresses).
    l1 = negative_list("L1", entry("E-1", CERT, field_types=("vin",), gte=1, name="车辆识别代号"))
    l2 = negative_list("L2", entry("E-1", SC, field_types=("vin", "email"), gte=10, name="VIN 10+"),
                       entry("E-2", SC, field_types=("vin", "email"), gte=5))
    flows = [flow("a"), flow("u", server_name=UNDECLARED_HOST)]
    findings = run(tmp_path, flows, [detection("a", "vin"), detection("u", "email")],
                   [Persons("a", 5, "vin"), Persons("u", 2, "email", start=100)], [l1, l2])
    assert table(findings) == [
        ("booking", "E-1", "high", "L1", 5, 5, 1, 1, ["vin"], []),
        ("booking", "E-2", "high", "L2", 5, 7, 1, 1, ["vin"], []),
    ]
    assert [(f.evidence["required_route"], f.evidence["threshold_gte"]) for f in findings] == [
        (CERT, 1), (SC, 5)]
    assert findings[0].observed.startswith("车辆识别代号 (E-1): 5 person(s)")


def both_exempt(d: dict) -> None:
    """crew-management exempt too; booking says it assessed entry S-27 (the finding's `expected`)."""
    for s in d["scenarios"]:
        s["route"] = "exempt_outside_list"
        if s["scenario_id"] == "booking":
            s["negative_list_match"]["entry_ids"] = ["S-27", "G-1"]


def test_negative_list_match_counts_persons_per_scenario_and_the_processor_over_every_flow(
        tmp_path: Path) -> None:
    lst = negative_list("L", entry("G-1", SA, field_types=("genetic",), subcategory="27", gte=3),
                        entry("S-27", SA, subcategory="27", gte=3))
    flows = [flow("a"), flow("c", **CREW), flow("u", server_name=UNDECLARED_HOST),
             flow("d", cross_border=False, country="CN"), flow("m")]
    dets = [detection(f, "genetic", sensitive=True, important="27") for f in ("a", "c", "u", "d")]
    # Record keys restart on every flow: m's mobile records 0..9 share keys with a's genetic records.
    persons = [Persons("a", 2, "genetic", sensitive=True), Persons("c", 4, "genetic", True, start=100),
               Persons("u", 1, "genetic", sensitive=True, start=1000),
               Persons("d", 50, "genetic", sensitive=True, start=5000),           # domestic: no export
               Persons("m", 10, start=0)]
    findings = run(tmp_path, flows, dets, persons, [lst], both_exempt)
    # booking's 2 persons stay below both floors of 3; crew-management's 4 reach them. The processor
    # counts every cross-border flow of the period: a, c and the undeclared u (2 + 4 + 1).
    assert table(findings) == [
        ("crew-management", "G-1", "critical", "L", 4, 7, 1, 1, ["genetic"], ["27"]),
        ("crew-management", "S-27", "critical", "L", 4, 0, 1, 1, ["genetic"], ["27"]),
    ]
    assert {f.expected for f in findings} == {"route: exempt_outside_list; negative_list_match.entry_ids: []"}


def test_negative_list_match_expected_names_the_entries_the_scenario_filed(tmp_path: Path) -> None:
    lst = negative_list("L", entry("G-1", SA, field_types=("genetic",), subcategory="27"))
    findings = run(tmp_path, [flow("a"), flow("c", **CREW)],
                   [detection(f, "genetic", sensitive=True, important="27") for f in ("a", "c")],
                   [Persons("a", 2, "genetic", sensitive=True)], [lst], both_exempt)
    assert [(f.scenario_id, f.expected) for f in findings] == [
        ("booking", "route: exempt_outside_list; negative_list_match.entry_ids: [S-27, G-1]"),
        ("crew-management", "route: exempt_outside_list; negative_list_match.entry_ids: []")]
    assert [f.evidence["persons"] for f in findings] == [2, 0]


def test_negative_list_match_counts_persons_of_the_flows_carrying_a_subcategory_only_entry(
        tmp_path: Path) -> None:
    # S-27, T-27 and L2's X-1 name only the sub-category: their persons are those of the flows that
    # carried it (a and c, the same three persons), not b's. G-27 and L1's X-1 name genetic data too, and
    # no genetic values were seen: 0 persons although their sub-category matched on flows with persons, so
    # L1's X-1 (floor 1) is no finding.
    typed = negative_list("L1", entry("G-27", SA, field_types=("genetic",), subcategory="27"),
                          entry("T-27", SA, subcategory="27"),
                          entry("X-1", SA, field_types=("genetic",), subcategory="27", gte=1))
    sub_only = negative_list("L2", entry("S-27", SA, subcategory="27", gte=3),
                             entry("X-1", SA, subcategory="27"))
    flows = [flow("a"), flow("b"), flow("c")]
    dets = [important_candidate("a", "27"), important_candidate("c", "27"), detection("b", "mobile_cn")]
    persons = [Persons("a", 3), Persons("c", 3), Persons("b", 5, start=100)]
    findings = run(tmp_path, flows, dets, persons, [typed, sub_only])
    candidate = (2, 2, ["important_data"], ["27"])              # flows, occurrences, types, sub-categories
    assert table(findings) == [
        ("booking", "G-27", "critical", "L1", 0, 0, *candidate),
        ("booking", "T-27", "critical", "L1", 3, 0, *candidate),
        ("booking", "S-27", "critical", "L2", 3, 0, *candidate),
        ("booking", "X-1", "critical", "L2", 3, 0, *candidate),
    ]
    assert [f.evidence["entry_field_types"] for f in findings] == [["genetic"], [], [], []]
    assert [f.evidence["entry_subcategory"] for f in findings] == ["27"] * 4
    assert findings[0].observed.endswith(": 0 person(s) in the period; requires security_assessment")


def test_negative_list_match_subcategory_only_entry_below_its_floor_is_no_finding(tmp_path: Path) -> None:
    lst = negative_list("L", entry("S-27", SA, subcategory="27", gte=3))
    findings = run(tmp_path, [flow("a"), flow("b")], [important_candidate("a", "27")],
                   [Persons("a", 2), Persons("b", 5, start=100)], [lst])
    assert findings == []
