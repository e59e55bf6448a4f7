"""Person linking in DuckDB (`build_record_persons`) against the Python reference (`reference_linking`,
DESIGN §5) on random linking graphs: the same records, the same partition into persons, the same flags,
key ids and over-shared keys — with several deployment keys, records outside the period and keys past
`max_records_per_key`. Person ids are compared as a partition (engines may number components otherwise)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import duckdb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.persons import build_record_persons, reference_linking

# flow_id, record_key, field_type, value_key, identifier, sensitive, key_id
Row = tuple[str, int, str, int, bool, bool, str]

IDENTIFIERS = ("resident_id_cn", "mobile_cn", "email", "passport_no")
NAME, DOB, ADDR, LANDLINE = "person_name", "date_of_birth", "postal_address", "landline_cn"
INT64 = (-(2**63), 2**63 - 1)
KEY_IDS = ("0a1b2c3d", "ffff0000")
# Value keys are hashes: negatives, extremes and numbers that sort differently as text ("10" < "9").
_value = st.one_of(st.integers(-3, 12), st.sampled_from(INT64))
_sensitive = st.booleans()
PERIOD = (datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))
IN_PERIOD, BEFORE = datetime(2026, 5, 1, tzinfo=UTC), datetime(2025, 5, 1, tzinfo=UTC)


@contextmanager
def _tables(rows: list[Row], outside: frozenset[str] = frozenset()) -> Iterator[duckdb.DuckDBPyConnection]:
    """pi_values of `rows`, and flows: every flow in PERIOD but those named in `outside`."""
    con = duckdb.connect()
    try:
        con.execute("CREATE TABLE pi_values (flow_id VARCHAR, record_key BIGINT, field_type VARCHAR, "
                    "value_key BIGINT, identifier BOOLEAN, sensitive BOOLEAN, key_id VARCHAR)")
        con.execute("CREATE TABLE flows (flow_id VARCHAR, ts_start TIMESTAMPTZ)")
        if rows:
            con.executemany("INSERT INTO pi_values VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            flows = sorted({r[0] for r in rows})
            con.executemany("INSERT INTO flows VALUES (?, ?)",
                            [(f, BEFORE if f in outside else IN_PERIOD) for f in flows])
        yield con
    finally:
        con.close()


def _partition(rows: list[tuple[str, int, int, bool, bool]]) -> tuple[frozenset, dict]:
    """Persons as sets of records, and each record's flags."""
    persons: dict[int, set[tuple[str, int]]] = {}
    for flow_id, record_key, person_id, _, _ in rows:
        persons.setdefault(person_id, set()).add((flow_id, record_key))
    return frozenset(frozenset(p) for p in persons.values()), {(r[0], r[1]): r[3:] for r in rows}


def _assert_same_as_reference(rows: list[Row], *, outside: frozenset[str] = frozenset(),
                              max_records: int = 1000) -> None:
    period = PERIOD if outside else None
    flows = {r[0] for r in rows} - outside if outside else None
    expected, linking = reference_linking(rows, flows=flows, max_records_per_key=max_records)
    with _tables(rows, outside) as con:
        got_linking = build_record_persons(con, period, max_records_per_key=max_records)
        got = con.execute("SELECT flow_id, record_key, person_id, sensitive, nonsensitive "
                          "FROM record_persons").fetchall()
    assert _partition(got) == _partition(expected)
    assert sorted(r[:2] for r in got) == sorted(r[:2] for r in expected)
    assert got_linking == linking


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
def _rows(draw: st.DrawFn, key_ids: tuple[str, ...] = KEY_IDS[:1]) -> list[Row]:
    records = draw(st.lists(_record(), max_size=25))
    # A flow belongs to one agent, so to one key id.
    flow_key = {f"f{i}": draw(st.sampled_from(key_ids)) for i in range(4)}
    rows = [(f"f{i % 4}", i // 4 - 2, ft, vk, ident, sens, flow_key[f"f{i % 4}"])
            for i, values in enumerate(records) for ft, vk, ident, sens in values]
    duplicates = draw(st.lists(st.sampled_from(rows), max_size=5)) if rows else []
    return draw(st.permutations(rows + duplicates))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_rows())
def test_random_linking_graphs_give_the_references_persons_and_flags(rows: list[Row]) -> None:
    _assert_same_as_reference(rows)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_rows(KEY_IDS), st.sets(st.sampled_from(("f0", "f1", "f2", "f3"))), st.integers(2, 4))
def test_several_key_ids_a_period_and_over_shared_keys_as_the_reference(
        rows: list[Row], outside: set[str], max_records: int) -> None:
    _assert_same_as_reference(rows, outside=frozenset(outside), max_records=max_records)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 400).flatmap(lambda n: st.permutations(range(n + 1))), st.booleans())
def test_a_long_chain_is_one_person(order: list[int], by_combinations: bool) -> None:
    # Record i shares a key with record i + 1; value keys are shuffled so the chain does not run in key order.
    rows: list[Row] = []
    k = KEY_IDS[0]
    for i in range(len(order) - 1):
        if by_combinations:   # names n_i and n_i+1 with one date of birth: combos (n_i, d) and (n_i+1, d)
            rows += [(f"f{i}", 1, NAME, order[i], False, False, k),
                     (f"f{i}", 1, NAME, order[i + 1], False, False, k),
                     (f"f{i}", 1, DOB, 7, False, i == 0, k)]
        else:
            rows += [(f"f{i}", 1, "mobile_cn", order[i], True, False, k),
                     (f"f{i}", 1, "mobile_cn", order[i + 1], True, i % 3 == 0, k)]
    rows.append(("lonely", 1, "mobile_cn", -1, True, False, k))
    assert reference_linking(rows)[1].persons == 2   # the chain and the lonely record
    _assert_same_as_reference(rows)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 400)), min_size=1, max_size=600),
       st.sampled_from((1000, 50)))
def test_a_giant_component_beside_small_ones(pairs: list[tuple[int, int]], max_records: int) -> None:
    # Records joining a hub key (one of three, all linked by the first records) to keys of their own; with a
    # limit of 50 a hub carried by more records stops linking and the giant component falls apart.
    k = KEY_IDS[0]
    rows: list[Row] = [("hub", 1, "mobile_cn", 0, True, True, k), ("hub", 1, "mobile_cn", 1, True, False, k),
                       ("hub", 2, "mobile_cn", 1, True, False, k), ("hub", 2, "mobile_cn", 2, True, False, k)]
    for i, (hub, own) in enumerate(pairs):
        if i % 5 == 4:   # every fifth record stays apart: its own keys only
            rows += [(f"r{i}", i, "email", own, True, False, k),
                     (f"r{i}", i, "passport_no", own, True, True, k)]
        else:
            rows += [(f"r{i}", i, "mobile_cn", hub, True, False, k),
                     (f"r{i}", i, "resident_id_cn", own, True, True, k)]
    if max_records == 1000:
        assert any(r[0].startswith("r") and r[2] == 0 for r in reference_linking(rows)[0])   # joined the hub
    _assert_same_as_reference(rows, max_records=max_records)


def test_no_rows_and_rows_without_person_keys_give_no_persons() -> None:
    _assert_same_as_reference([])
    _assert_same_as_reference([("f", 1, NAME, 1, False, False, "k"), ("f", 2, LANDLINE, 2, False, True, "k")])


def test_pi_values_without_a_key_id_column_link_as_one_key() -> None:
    with duckdb.connect() as con:
        con.execute("CREATE TABLE pi_values AS SELECT * FROM (VALUES ('a', 1, 'mobile_cn', 5, true, false), "
                    "('b', 1, 'mobile_cn', 5, true, true)) t(flow_id, record_key, field_type, value_key, "
                    "identifier, sensitive)")
        linking = build_record_persons(con)
    assert (linking.persons, linking.records, linking.key_ids) == (1, 2, ("",))
