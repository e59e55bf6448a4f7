"""Person linking in DuckDB (`build_record_persons`) against the Python reference (`link_records`, DESIGN §5)
on random linking graphs: the same records, the same persons (ids included) and the same flags."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import duckdb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.persons import build_record_persons, link_records

# flow_id, record_key, field_type, value_key, identifier, sensitive
Row = tuple[str, int, str, int, bool, bool]

IDENTIFIERS = ("resident_id_cn", "mobile_cn", "email", "passport_no")
NAME, DOB, ADDR, LANDLINE = "person_name", "date_of_birth", "postal_address", "landline_cn"
INT64 = (-(2**63), 2**63 - 1)
# Value keys are hashes: negatives, extremes and numbers that sort differently as text ("10" < "9").
_value = st.one_of(st.integers(-3, 12), st.sampled_from(INT64))
_sensitive = st.booleans()


@contextmanager
def _pi_values(rows: list[Row]) -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect()
    try:
        con.execute("CREATE TABLE pi_values (flow_id VARCHAR, record_key BIGINT, field_type VARCHAR, "
                    "value_key BIGINT, identifier BOOLEAN, sensitive BOOLEAN)")
        if rows:
            con.executemany("INSERT INTO pi_values VALUES (?, ?, ?, ?, ?, ?)", rows)
        yield con
    finally:
        con.close()


def _assert_same_as_reference(rows: list[Row]) -> None:
    expected = sorted(link_records(rows))
    with _pi_values(rows) as con:
        persons = build_record_persons(con)
        got = sorted(con.execute("SELECT flow_id, record_key, person_id, sensitive, nonsensitive "
                                 "FROM record_persons").fetchall())
    assert got == expected
    assert persons == len({r[2] for r in expected})


@st.composite
def _record(draw: st.DrawFn) -> list[tuple[str, int, bool, bool]]:
    """The (field_type, value_key, identifier, sensitive) values of one record, of one of three shapes."""
    shape = draw(st.sampled_from(("identifiers", "combinations", "no-key")))
    values: list[tuple[str, int, bool, bool]] = []
    if shape == "identifiers":
        for ft in draw(st.lists(st.sampled_from(IDENTIFIERS), min_size=1, max_size=3)):
            values.append((ft, draw(_value), True, draw(_sensitive)))
    if shape in ("identifiers", "combinations"):
        for ft in draw(st.lists(st.sampled_from((NAME, DOB, ADDR, LANDLINE)), min_size=1, max_size=5)):
            values.append((ft, draw(_value), False, draw(_sensitive)))
    if shape == "no-key":
        ft = draw(st.sampled_from((NAME, LANDLINE, DOB)))
        values.append((ft, draw(_value), False, draw(_sensitive)))
    return values


@st.composite
def _rows(draw: st.DrawFn) -> list[Row]:
    records = draw(st.lists(_record(), max_size=25))
    rows = [(f"f{i % 4}", i // 4 - 2, ft, vk, ident, sens)
            for i, values in enumerate(records) for ft, vk, ident, sens in values]
    duplicates = draw(st.lists(st.sampled_from(rows), max_size=5)) if rows else []
    return draw(st.permutations(rows + duplicates))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_rows())
def test_random_linking_graphs_give_the_references_persons_and_flags(rows: list[Row]) -> None:
    _assert_same_as_reference(rows)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 400).flatmap(lambda n: st.permutations(range(n + 1))), st.booleans())
def test_a_long_chain_is_one_person(order: list[int], by_combinations: bool) -> None:
    # Record i shares a key with record i + 1; value keys are shuffled so the chain does not run in key order.
    rows: list[Row] = []
    for i in range(len(order) - 1):
        if by_combinations:   # names n_i and n_i+1 with one date of birth: combos (n_i, d) and (n_i+1, d)
            rows += [(f"f{i}", 1, NAME, order[i], False, False),
                     (f"f{i}", 1, NAME, order[i + 1], False, False), (f"f{i}", 1, DOB, 7, False, i == 0)]
        else:
            rows += [(f"f{i}", 1, "mobile_cn", order[i], True, False),
                     (f"f{i}", 1, "mobile_cn", order[i + 1], True, i % 3 == 0)]
    rows.append(("lonely", 1, "mobile_cn", -1, True, False))
    assert len({r[2] for r in link_records(rows)}) == 2   # the chain and the lonely record
    _assert_same_as_reference(rows)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 400)), min_size=1, max_size=600))
def test_a_giant_component_beside_small_ones(pairs: list[tuple[int, int]]) -> None:
    # Records joining a hub key (one of three, all linked by the first records) to keys of their own.
    rows: list[Row] = [("hub", 1, "mobile_cn", 0, True, True), ("hub", 1, "mobile_cn", 1, True, False),
                       ("hub", 2, "mobile_cn", 1, True, False), ("hub", 2, "mobile_cn", 2, True, False)]
    for i, (hub, own) in enumerate(pairs):
        if i % 5 == 4:   # every fifth record stays apart: its own keys only
            rows += [(f"r{i}", i, "email", own, True, False), (f"r{i}", i, "passport_no", own, True, True)]
        else:
            rows += [(f"r{i}", i, "mobile_cn", hub, True, False),
                     (f"r{i}", i, "resident_id_cn", own, True, True)]
    assert any(r[0].startswith("r") and r[2] == 0 for r in link_records(rows))   # records joined the hub
    _assert_same_as_reference(rows)


def test_no_rows_and_rows_without_person_keys_give_no_persons() -> None:
    _assert_same_as_reference([])
    _assert_same_as_reference([("f", 1, NAME, 1, False, False), ("f", 2, LANDLINE, 2, False, True)])
