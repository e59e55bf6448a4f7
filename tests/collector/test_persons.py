"""Distinct-person counting (DESIGN §5): key linking, combinations, sensitivity and the CST year."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from collector.persons import (
    CST,
    Linking,
    PersonCounts,
    SharedKey,
    build_record_persons,
    calendar_year,
    count_persons,
    link_records,
    reference_linking,
    year_of,
)
from collector.store import Store

from .builders import flow as make_flow
from .builders import pi, write_records

ID, MOBILE, EMAIL, NAME, DOB, ADDR, PASSPORT, LANDLINE = (
    "resident_id_cn", "mobile_cn", "email", "person_name", "date_of_birth", "postal_address", "passport_no",
    "landline_cn",
)


def _rows(*values: tuple) -> list[tuple]:
    """(flow_id, record_key, field_type, value_key, identifier, sensitive) rows from PiValueRecords."""
    return [(v.flow_id, v.record_key, v.field_type, v.value_key, v.identifier, v.sensitive) for v in values]


def _persons(*values) -> int:
    return len({r[2] for r in link_records(_rows(*values))})


def test_when_a_record_links_id_and_mobile_then_a_later_mobile_only_record_is_the_same_person() -> None:
    assert _persons(
        pi("f1", 1, ID, 100, identifier=True, sensitive=True),
        pi("f1", 1, MOBILE, 200, identifier=True),
        pi("f2", 7, MOBILE, 200, identifier=True),
    ) == 1


def test_when_identifiers_chain_through_records_then_one_component() -> None:
    # ID+mobile, mobile+email, email alone: one person by transitivity.
    assert _persons(
        pi("f1", 1, ID, 100, identifier=True), pi("f1", 1, MOBILE, 200, identifier=True),
        pi("f2", 1, MOBILE, 200, identifier=True), pi("f2", 1, EMAIL, 300, identifier=True),
        pi("f3", 1, EMAIL, 300, identifier=True),
    ) == 1


def test_different_identifiers_in_different_records_are_different_persons() -> None:
    assert _persons(pi("f1", 1, MOBILE, 200, identifier=True), pi("f1", 2, MOBILE, 201, identifier=True)) == 2


@pytest.mark.parametrize(("values", "expected"), [
    pytest.param([pi("f1", 1, NAME, 1), pi("f1", 1, DOB, 2), pi("f2", 1, NAME, 1), pi("f2", 1, DOB, 2)], 1,
                 id="same-name-and-dob-twice"),
    pytest.param([pi("f1", 1, NAME, 1), pi("f1", 1, DOB, 2), pi("f2", 1, NAME, 1), pi("f2", 1, DOB, 3)], 2,
                 id="same-name-other-dob"),
    pytest.param([pi("f1", 1, NAME, 1), pi("f1", 1, ADDR, 5), pi("f2", 1, NAME, 1), pi("f2", 1, ADDR, 5)], 1,
                 id="name-and-address"),
    pytest.param([pi("f1", 1, NAME, 1), pi("f1", 1, DOB, 2), pi("f1", 1, ADDR, 5),
                  pi("f2", 1, NAME, 1), pi("f2", 1, ADDR, 5)], 1, id="dob-and-address-combos-linked"),
    pytest.param([pi("f1", 1, NAME, 1)], 0, id="name-alone-is-no-person"),
    pytest.param([pi("f1", 1, LANDLINE, 9)], 0, id="non-identifier-alone-is-no-person"),
    # An identifier wins: combinations are only used when a record has none.
    pytest.param([pi("f1", 1, NAME, 1), pi("f1", 1, DOB, 2), pi("f1", 1, MOBILE, 200, identifier=True),
                  pi("f2", 1, NAME, 1), pi("f2", 1, DOB, 2)], 2, id="identifier-beats-combination"),
])
def test_combination_keys(values: list, expected: int) -> None:
    assert _persons(*values) == expected


def test_sensitive_and_nonsensitive_flags_per_record() -> None:
    linked = {(r[0], r[1]): r[3:] for r in link_records(_rows(
        pi("f1", 1, PASSPORT, 1, identifier=True, sensitive=True),            # sensitive only
        pi("f1", 2, MOBILE, 2, identifier=True),                              # non-sensitive only
        pi("f1", 3, PASSPORT, 3, identifier=True, sensitive=True), pi("f1", 3, NAME, 4),  # both
    ))}
    assert linked == {("f1", 1): (True, False), ("f1", 2): (False, True), ("f1", 3): (True, True)}


def test_person_ids_are_stable_across_row_order() -> None:
    rows = _rows(pi("a", 1, MOBILE, 5, identifier=True), pi("b", 1, MOBILE, 6, identifier=True))
    assert link_records(rows) == link_records(list(reversed(rows)))


@pytest.mark.parametrize(("ts", "year"), [
    (datetime(2025, 12, 31, 15, 59, 59, tzinfo=UTC), 2025),   # 23:59:59 CST on 31 December
    (datetime(2025, 12, 31, 16, 0, 0, tzinfo=UTC), 2026),     # 00:00 CST on 1 January
])
def test_calendar_year_is_china_standard_time(ts: datetime, year: int) -> None:
    assert year_of(ts) == year
    start, end = calendar_year(year)
    assert start <= ts < end


def test_a_naive_instant_is_utc_and_an_aware_one_keeps_its_zone(monkeypatch) -> None:
    # DuckDB hands back naive datetimes for TIMESTAMP columns: they are UTC, whatever the machine's zone.
    monkeypatch.setenv("TZ", "America/Los_Angeles")
    time.tzset()
    try:
        assert year_of(datetime(2025, 12, 31, 15, 0)) == 2025      # 23:00 CST
        assert year_of(datetime(2025, 12, 31, 16, 0)) == 2026      # 00:00 CST
        assert year_of(datetime(2025, 12, 31, 23, 0, tzinfo=CST)) == 2025
    finally:
        monkeypatch.undo()
        time.tzset()


def test_a_record_without_person_keys_does_not_stop_the_records_after_it() -> None:
    rows = _rows(pi("f", 1, NAME, 7), pi("f", 2, MOBILE, 5, identifier=True),
                 pi("g", 1, MOBILE, 6, identifier=True))
    assert [(r[0], r[1]) for r in link_records(rows)] == [("f", 2), ("g", 1)]


def test_record_persons_keeps_each_records_key_and_the_count_is_returned(tmp_path: Path) -> None:
    values = [pi("a", 10, MOBILE, 1, identifier=True), pi("a", 11, MOBILE, 2, identifier=True),
              pi("b", 20, MOBILE, 1, identifier=True, sensitive=True), pi("b", 21, NAME, 3)]
    write_records(tmp_path, [make_flow("a"), make_flow("b")], pi_values=values)
    with Store() as store:
        store.load_records(tmp_path)
        assert build_record_persons(store.con).persons == 2
        rows = store.con.execute("SELECT flow_id, record_key, person_id, sensitive, nonsensitive "
                                 "FROM record_persons ORDER BY flow_id, record_key").fetchall()
    # Person ids are the engine's numbering: the records, their flags and who is whom are what counts.
    assert [(r[0], r[1], r[3], r[4]) for r in rows] == [("a", 10, False, True), ("a", 11, False, True),
                                                        ("b", 20, True, False)]
    assert rows[0][2] == rows[2][2] != rows[1][2]


def test_counts_per_enterprise_scenario_and_destination_respect_the_cst_year(tmp_path: Path, filing) -> None:
    last_year = datetime(2025, 12, 31, 15, 59, tzinfo=UTC)   # 2025-12-31 23:59 CST
    this_year = datetime(2025, 12, 31, 16, 1, tzinfo=UTC)    # 2026-01-01 00:01 CST
    flows = [
        make_flow("old", ts=last_year),
        make_flow("new1", ts=this_year),
        make_flow("new2", ts=this_year, server_name="other.example", country="US"),
        make_flow("domestic", ts=this_year, country="CN", cross_border=False),
    ]
    values = [
        pi("old", 1, MOBILE, 1, identifier=True),                          # previous year: not counted
        pi("new1", 1, ID, 2, identifier=True, sensitive=True), pi("new1", 1, MOBILE, 3, identifier=True),
        pi("new2", 1, MOBILE, 3, identifier=True),                         # same person as new1
        pi("new2", 2, EMAIL, 4, identifier=True),
        pi("domestic", 1, MOBILE, 9, identifier=True),                     # not exported
    ]
    write_records(tmp_path, flows, pi_values=values)
    with Store() as store:
        store.load_records(tmp_path)
        store.load_filing(filing)
        build_record_persons(store.con)
        period = calendar_year(2026)
        assert count_persons(store.con, period) == {None: PersonCounts(2, 1)}
        assert count_persons(store.con, period, by="scenario") == {"booking": PersonCounts(1, 1)}
        assert count_persons(store.con, period, by="destination") == {
            "booking.gfb-freight.example": PersonCounts(1, 1), "other.example": PersonCounts(2, 0)}
        assert count_persons(store.con, calendar_year(2025)) == {None: PersonCounts(1, 0)}


@pytest.mark.parametrize(("values", "expected"), [
    # The second record's first key has a root that sorts after the other key's: the union must still link.
    pytest.param([pi("f1", 1, EMAIL, 3, identifier=True), pi("f1", 1, ID, 1, identifier=True),
                  pi("f2", 1, MOBILE, 2, identifier=True), pi("f2", 1, ID, 1, identifier=True)], 1,
                 id="link-into-an-earlier-root"),
    # Value keys are hashes: 9 < 10 as numbers, "10" < "9" as text; two of one type in a record link.
    pytest.param([pi("f1", 1, MOBILE, 9, identifier=True), pi("f1", 1, MOBILE, 10, identifier=True),
                  pi("f2", 1, MOBILE, 9, identifier=True), pi("f3", 1, MOBILE, 10, identifier=True)], 1,
                 id="keys-sorting-differently-as-numbers-and-text"),
    pytest.param([pi("f1", 1, MOBILE, 10, identifier=True), pi("f1", 1, MOBILE, 9, identifier=True),
                  pi("f2", 1, MOBILE, 10, identifier=True), pi("f3", 1, MOBILE, 9, identifier=True),
                  pi("f4", 1, MOBILE, 11, identifier=True)], 2, id="a-third-key-stays-apart"),
])
def test_union_of_keys(values: list, expected: int) -> None:
    assert _persons(*values) == expected


def test_no_pi_values_give_an_empty_typed_record_persons_table(tmp_path: Path, filing) -> None:
    write_records(tmp_path, [make_flow("a")], pi_values=[])
    with Store() as store:
        store.load_records(tmp_path)
        store.load_filing(filing)
        assert build_record_persons(store.con).persons == 0
        types = store.con.execute("SELECT column_name, data_type FROM information_schema.columns "
                                  "WHERE table_name = 'record_persons' ORDER BY ordinal_position").fetchall()
        assert count_persons(store.con, calendar_year(2026)) == {None: PersonCounts(0, 0)}
    assert types == [("flow_id", "VARCHAR"), ("record_key", "BIGINT"), ("person_id", "BIGINT"),
                     ("sensitive", "BOOLEAN"), ("nonsensitive", "BOOLEAN")]


def _linking(rows: list[tuple], **kw) -> Linking:
    return reference_linking(rows, **kw)[1]


def test_persons_of_different_deployment_keys_are_never_joined() -> None:
    rows = [("a", 1, MOBILE, 5, True, False, "0a1b2c3d"), ("b", 1, MOBILE, 5, True, False, "ffff0000"),
            ("c", 1, MOBILE, 5, True, False, "ffff0000")]
    assert _linking(rows) == Linking(2, 3, ("0a1b2c3d", "ffff0000"), ())


def test_only_records_of_flows_in_the_period_link_and_count() -> None:
    # "old" bridges the two mobiles, but its flow lies outside the period: two persons, not one.
    rows = _rows(pi("old", 1, MOBILE, 1, identifier=True), pi("old", 1, MOBILE, 2, identifier=True),
                 pi("new1", 1, MOBILE, 1, identifier=True), pi("new2", 1, MOBILE, 2, identifier=True))
    assert _linking(rows).persons == 1
    assert _linking(rows, flows={"new1", "new2"}) == Linking(2, 2, ("",), ())


def test_an_over_shared_identifier_does_not_link_and_its_records_fall_back_to_combinations() -> None:
    # A hotline number in three records: with a limit of 2 it links nobody; the records with another
    # identifier keep it, the one without falls back to name + date of birth.
    hotline = [pi(f"f{i}", 1, MOBILE, 400, identifier=True) for i in range(3)]
    rows = _rows(*hotline, pi("f0", 1, ID, 1, identifier=True, sensitive=True),
                 pi("f1", 1, ID, 2, identifier=True, sensitive=True),
                 pi("f2", 1, NAME, 7), pi("f2", 1, DOB, 8), pi("f3", 1, NAME, 7), pi("f3", 1, DOB, 8))
    assert _linking(rows).persons == 2   # f0-f2 through the hotline, f3 by name + date of birth
    linking = _linking(rows, max_records_per_key=2)
    assert linking == Linking(3, 4, ("",), (SharedKey("identifier", MOBILE, 3),))


def test_an_over_shared_combination_does_not_link_either() -> None:
    rows = _rows(*(v for i in range(3) for v in (pi(f"f{i}", 1, NAME, 7), pi(f"f{i}", 1, DOB, 8))),
                 pi("f0", 1, ADDR, 9), pi("f9", 1, NAME, 7), pi("f9", 1, ADDR, 9))
    assert _linking(rows).persons == 1
    assert _linking(rows, max_records_per_key=2) == Linking(
        1, 2, ("",), (SharedKey("combination", f"{NAME}+{DOB}", 3),))


def test_the_rules_hold_in_duckdb_over_the_store(tmp_path: Path) -> None:
    flows = [make_flow("old", ts=datetime(2025, 6, 1, tzinfo=UTC))] + [make_flow(f"f{i}") for i in range(4)]
    values = [pi("old", 1, MOBILE, 1, identifier=True), pi("old", 1, MOBILE, 2, identifier=True),
              pi("f0", 1, MOBILE, 1, identifier=True), pi("f1", 1, MOBILE, 2, identifier=True),
              pi("f2", 1, MOBILE, 2, identifier=True), pi("f2", 1, EMAIL, 3, identifier=True),
              pi("f3", 1, MOBILE, 2, identifier=True)]
    write_records(tmp_path, flows, pi_values=values)
    with Store() as store:
        store.load_records(tmp_path)
        assert build_record_persons(store.con).persons == 1             # "old" bridges mobiles 1 and 2
        assert build_record_persons(store.con, calendar_year(2026)) == Linking(2, 4, ("",), ())
        # Mobile 2 in three records of the year: it links nobody, f1 and f3 are left without a person key.
        assert build_record_persons(store.con, calendar_year(2026), max_records_per_key=2) == Linking(
            2, 2, ("",), (SharedKey("identifier", MOBILE, 3),))
        linked = store.con.execute("SELECT flow_id FROM record_persons ORDER BY 1").fetchall()
    assert linked == [("f0",), ("f2",)]


def test_the_linking_sql_is_in_the_subset_spark_runs() -> None:
    from collector.persons_sql import changed_sql, key_sql, result_sql, round_sql, shared_sql

    from .test_checks_sql import unfaithful
    statements = [*key_sql(True, True), *key_sql(False, False), round_sql, changed_sql, result_sql,
                  shared_sql]
    for sql in statements:
        assert ";" not in sql.strip().rstrip(";"), "one statement per call"
        assert unfaithful(sql) == []
        assert "::" not in sql and "hash(" not in sql.lower()
