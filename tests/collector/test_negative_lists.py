"""Negative lists (ftz.negative_list/v1): the example loads, every invalid list is one line naming the file
and the field path, the store keeps the entries that apply to the processor's sector, and `validate`
recognises a list by its schema."""

from __future__ import annotations

import copy
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from collector.negative_lists import (
    NegativeListError,
    entries_table,
    load_negative_list,
    parse_negative_list,
    sector_applies,
)
from collector.store import Store

from .builders import EXAMPLE_NEGATIVE_LIST, REPO, delete_at, filing_with, make_filing, set_at


def example_list_data() -> dict[str, Any]:
    return yaml.safe_load(EXAMPLE_NEGATIVE_LIST.read_text(encoding="utf-8"))


def test_the_example_loads_and_says_it_is_illustrative() -> None:
    nl = load_negative_list(EXAMPLE_NEGATIVE_LIST)
    assert nl.illustrative and nl.list_id == "zj-ftz-example"
    assert "ILLUSTRATIVE" in EXAMPLE_NEGATIVE_LIST.read_text(encoding="utf-8").splitlines()[0]
    entries = {e.entry_id: e for s in nl.sectors for e in s.entries}
    health = entries["ZJ-Q-01"]
    assert (health.route, health.important_subcategory, health.threshold.gte) == ("security_assessment", "28",
                                                                                  10000)
    assert entries["ZJ-X-01"].important_subcategory == "27" and entries["ZJ-X-01"].threshold.gte is None
    assert entries["ZJ-G-01"].field_types == ["precise_location", "location_track"]
    assert (entries["ZJ-X-02"].route, entries["ZJ-X-02"].threshold.gte) == ("standard_contract", 100000)


ENTRY = ("sectors", 2, "entries", 0)  # ZJ-G-01, precise location

INVALID = [
    pytest.param(set_at((*ENTRY, "field_types", 1), "shoe_size"),
                 "sectors[2].entries[0].field_types[1]: 'shoe_size' is not a field type id",
                 id="unknown-field-type"),
    pytest.param(set_at((*ENTRY, "kind"), "secret"),
                 "sectors[2].entries[0].kind: Input should be 'important_data'", id="bad-kind"),
    pytest.param(set_at((*ENTRY, "route"), "exempt_outside_list"),
                 "sectors[2].entries[0].route: Input should be 'standard_contract'", id="bad-route"),
    pytest.param(set_at((*ENTRY, "threshold", "lt"), 100000),
                 "sectors[2].entries[0].threshold.lt: 100000 is not above gte 100000",
                 id="threshold-lt-not-above-gte"),
    pytest.param(set_at((*ENTRY, "threshold", "gte"), -1),
                 "sectors[2].entries[0].threshold.gte: Input should be greater than or equal to 0",
                 id="threshold-negative"),
    pytest.param(set_at((*ENTRY, "threshold", "gte"), "many"),
                 "sectors[2].entries[0].threshold.gte: Input should be a valid integer",
                 id="threshold-not-int"),
    pytest.param(set_at((*ENTRY, "threshold", "metric"), "records"),
                 "sectors[2].entries[0].threshold.metric: Input should be 'distinct_persons'",
                 id="threshold-metric"),
    pytest.param(set_at((*ENTRY, "colour"), "blue"),
                 "sectors[2].entries[0].colour: Extra inputs are not permitted", id="unknown-key"),
    pytest.param(set_at(("publisher",), "x"), "publisher: Extra inputs are not permitted",
                 id="unknown-top-key"),
    pytest.param(set_at((*ENTRY, "important_subcategory"), "41"),
                 "sectors[2].entries[0].important_subcategory: '41' is not an appendix sub-category",
                 id="bad-subcategory"),
    pytest.param(set_at(("sectors", 1, "gbt4754"), "Health"),
                 "sectors[1].gbt4754: String should match pattern", id="bad-sector-code"),
    pytest.param(set_at(("sectors", 1, "entries", 0, "route"), "standard_contract"),
                 "sectors[1].entries[0].route: kind important_data needs route security_assessment",
                 id="important-data-needs-security-assessment"),
    pytest.param(set_at((*ENTRY, "field_types"), []),
                 "sectors[2].entries[0].field_types: an entry needs field types or an important_subcategory",
                 id="entry-without-data"),
    pytest.param(set_at(("sectors", 3, "entries", 0, "entry_id"), "ZJ-X-01"),
                 "sectors[3].entries[0].entry_id: duplicate entry 'ZJ-X-01'", id="duplicate-entry"),
    pytest.param(delete_at(("jurisdiction",)), "jurisdiction: Field required", id="missing"),
    # Thresholds the checks compare with BIGINT counts: bounded like a filing's scale (collector/bounds.py).
    pytest.param(set_at((*ENTRY, "threshold", "gte"), 2**63),
                 "sectors[2].entries[0].threshold.gte: Input should be less than or equal to 10000000000",
                 id="threshold-gte-2^63"),
    pytest.param(set_at((*ENTRY, "threshold", "lt"), 10**400),
                 "sectors[2].entries[0].threshold.lt: Input should be less than or equal to 10000000000",
                 id="threshold-lt-10^400"),
    pytest.param(set_at((*ENTRY, "threshold"), {"gte": 10**10 + 1}),
                 "sectors[2].entries[0].threshold.gte: Input should be less than or equal to",
                 id="gte-cap+1"),
    pytest.param(set_at(("version",), [[1, 2], [3]]), "version: a version is a string or a number",
                 id="version-not-scalar"),
    pytest.param(set_at(("schema",), "ftz.negative_list/v2"), "schema: expected 'ftz.negative_list/v1'",
                 id="wrong-schema"),
]


@pytest.mark.parametrize(("mutate", "message"), INVALID)
def test_invalid_list_is_one_line_naming_file_and_path(tmp_path: Path, mutate: Callable,
                                                       message: str) -> None:
    data = copy.deepcopy(example_list_data())
    mutate(data)
    path = tmp_path / "list.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(NegativeListError) as exc:
        load_negative_list(path)
    text = str(exc.value)
    assert text.startswith(f"{path}: {message}"), text
    assert "\n" not in text


def test_parse_names_its_source_and_unreadable_files_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(NegativeListError, match=r"^inline: list_id: Field required"):
        parse_negative_list({k: v for k, v in example_list_data().items() if k != "list_id"}, "inline")
    (tmp_path / "bad.yaml").write_text("sectors: [unclosed", encoding="utf-8")
    with pytest.raises(NegativeListError, match=r"bad\.yaml: line 1"):
        load_negative_list(tmp_path / "bad.yaml")
    with pytest.raises(NegativeListError, match=r"nope\.yaml: cannot read"):
        load_negative_list(tmp_path / "nope.yaml")


@pytest.mark.parametrize(("sector", "industry", "applies"), [
    (None, None, True), (None, "F5292", True), ("F", "F5292", True), ("F52", "F5292", True),
    ("F5292", "F5292", True), ("F53", "F5292", False), ("G", "F5292", False), ("F", None, False),
])
def test_sector_applies_by_gbt4754_prefix(sector, industry, applies) -> None:
    assert sector_applies(sector, industry) is applies


def _entry_ids(table) -> list[tuple]:
    return sorted({(r["entry_id"], r["field_type"]) for r in table.to_pylist()}, key=str)


def test_entries_table_has_one_row_per_entry_and_field_type() -> None:
    nl = load_negative_list(EXAMPLE_NEGATIVE_LIST)
    data = example_list_data()
    data["list_id"] = "subcategory-only"
    entry = {"entry_id": "S-27", "name": "遗传资源", "kind": "important_data", "route": "security_assessment",
             "important_subcategory": 27}
    data["sectors"] = [{"name": "all", "entries": [entry]}]
    only_sub = parse_negative_list(data, "inline")
    assert _entry_ids(entries_table([nl, only_sub], "G5822")) == [
        ("S-27", None), ("ZJ-G-01", "location_track"), ("ZJ-G-01", "precise_location"),
        ("ZJ-G-02", "location_track"), ("ZJ-G-02", "precise_location"), ("ZJ-X-01", "genetic"),
        ("ZJ-X-02", "resident_id_cn")]
    assert _entry_ids(entries_table([nl], "Q8411")) == [
        ("ZJ-Q-01", "health_medical"), ("ZJ-X-01", "genetic"), ("ZJ-X-02", "resident_id_cn")]
    rows = entries_table([only_sub], None).to_pylist()
    assert rows[0]["important_subcategory"] == "27" and rows[0]["threshold_gte"] is None


def test_store_table_exists_empty_and_follows_the_filing_sector() -> None:
    nl = load_negative_list(EXAMPLE_NEGATIVE_LIST)
    with Store() as store:
        store.load_filing(make_filing())
        assert store.con.execute("SELECT count(*) FROM negative_list_entries").fetchall() == [(0,)]
        types = {r[0]: r[1] for r in store.con.execute("DESCRIBE negative_list_entries").fetchall()}
        assert types["threshold_gte"] == "BIGINT" and types["field_type"] == "VARCHAR"
        assert store.load_negative_lists([nl]) == 6            # G5822: the all-sector and the G entries
        sectors = "SELECT DISTINCT sector_code FROM negative_list_entries ORDER BY 1"
        assert store.con.execute(sectors).fetchall() == [("G",), (None,)]
        # A filing loaded later (another sector) re-filters the lists already loaded.
        store.load_filing(filing_with(set_at(("processor", "industry", "gbt4754"), "Q8411")))
        assert store.con.execute(sectors).fetchall() == [("Q84",), (None,)]


CLI = REPO / ".venv" / "bin" / "egress-collector"


def test_validate_recognises_a_negative_list_by_its_schema(tmp_path: Path) -> None:
    data = example_list_data()
    data["sectors"][0]["entries"][1]["field_types"] = ["resident_id"]
    bad = tmp_path / "zj.yaml"
    bad.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    proc = subprocess.run([str(CLI), "validate", str(EXAMPLE_NEGATIVE_LIST), str(bad)], capture_output=True,
                          text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 2, proc
    assert "negative list zj-ftz-example" in proc.stdout and "illustrative" in proc.stdout
    [line] = proc.stderr.strip().splitlines()
    assert f"{bad}: sectors[0].entries[1].field_types[0]: 'resident_id' is not a field type id" in line
    assert "Traceback" not in proc.stderr


def test_thresholds_at_the_bound_are_accepted() -> None:
    data = copy.deepcopy(example_list_data())
    data["sectors"][2]["entries"][0]["threshold"] = {"gte": 10**10 - 1, "lt": 10**10}
    nl = parse_negative_list(data, "inline")
    assert nl.sectors[2].entries[0].threshold.lt == 10**10
    table = entries_table([nl], "G5822")        # the BIGINT columns hold them
    assert 10**10 in table.column("threshold_lt").to_pylist()
