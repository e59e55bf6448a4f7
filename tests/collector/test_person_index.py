"""The person index kept at ingest (collector/person_index.py) against a full recomputation: after every
store, replay and removal of a batch — one that bridged two components, one whose key pushed over
max_records_per_key, a pi_values batch before its flows, a removed flows batch — the index's persons of
each CST year are the partition `build_record_persons` gives over the surviving records, with the same
counts, and a spot check over the year reads the same report from either."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.records import Envelope, PiValueRecord, to_table
from collector.audit import AuditEntry
from collector.ingest import parse_batch
from collector.inspection import run_inspection
from collector.person_counts import index_persons
from collector.persons import Linking, build_record_persons, calendar_year
from collector.reports import render_json
from collector.store import Store
from collector.warehouse import Warehouse

from .builders import BOOKING_HOST, detection, flow, make_filing, pi

E, AGENT = make_filing().processor.id, "gw-1"   # the example filing's enterprise
Y2026, Y2025 = datetime(2026, 3, 1, 2, tzinfo=UTC), datetime(2025, 12, 31, 15, tzinfo=UTC)   # CST years
MOBILE, ID, NAME, DOB = "mobile_cn", "resident_id_cn", "person_name", "date_of_birth"


def _bytes(record_type: str, rows: list, batch_id: str) -> bytes:
    buf = io.BytesIO()
    pq.write_table(to_table(record_type, rows, Envelope(AGENT, E, batch_id)), buf)
    return buf.getvalue()


def _store(wh: Warehouse, batch_id: str, record_type: str, rows: list) -> None:
    wh.store_batch(parse_batch(_bytes(record_type, rows, batch_id), batch_id, record_type, E, AGENT), "t")


def _delete(wh: Warehouse, batch_id: str) -> None:
    audit = AuditEntry("t", "regulator", "hangzhou", E, "batch", batch_id, "delete")
    assert wh.delete_batch(E, batch_id, audit) is not None


def _partition(rows: list[tuple]) -> frozenset[frozenset[tuple[str, int]]]:
    persons: dict[object, set[tuple[str, int]]] = {}
    for flow_id, record_key, person in rows:
        persons.setdefault(person, set()).add((flow_id, record_key))
    return frozenset(frozenset(p) for p in persons.values())


def _full(wh: Warehouse, year: int) -> tuple[frozenset, Linking]:
    with Store() as store:
        store.load_record_files(wh.record_files(E))
        linking = build_record_persons(store.con, calendar_year(year),
                                       max_records_per_key=wh.max_records_per_key)
        rows = store.con.execute("SELECT flow_id, record_key, person_id FROM record_persons").fetchall()
    return _partition(rows), linking


def _indexed(wh: Warehouse, year: int) -> tuple[frozenset, Linking]:
    link = index_persons(wh, E, calendar_year(year))
    assert link is not None
    with Store() as store:
        linking = link(store.con, calendar_year(year))
        rows = store.con.execute("SELECT flow_id, record_key, person_id FROM record_persons").fetchall()
    return _partition(rows), linking


def _assert_as_full(wh: Warehouse, years: tuple[int, ...] = (2025, 2026)) -> None:
    for year in years:
        assert _indexed(wh, year) == _full(wh, year), year


@contextmanager
def _warehouse(path: Path, max_records: int = 1000) -> Iterator[Warehouse]:
    wh = Warehouse(path, max_records_per_key=max_records)
    try:
        yield wh
    finally:
        wh.close()


def _merges(wh: Warehouse) -> list[tuple]:
    with wh.cursor() as cur:
        return cur.execute("SELECT batch_id, count(*) FROM person_merges GROUP BY 1 ORDER BY 1").fetchall()


def test_a_bridging_batch_merges_two_persons_and_removing_it_splits_them(tmp_path: Path) -> None:
    with _warehouse(tmp_path) as wh:
        _store(wh, "flows", "flows", [flow(f, ts=Y2026) for f in ("a", "b", "c")])
        _store(wh, "pa", "pi_values", [pi("a", 1, MOBILE, 1, identifier=True)])
        _store(wh, "pb", "pi_values", [pi("b", 1, MOBILE, 2, identifier=True, sensitive=True)])
        assert _indexed(wh, 2026)[1].persons == 2
        bridge = [pi("c", 1, MOBILE, 1, identifier=True), pi("c", 1, MOBILE, 2, identifier=True)]
        _store(wh, "bridge", "pi_values", bridge)
        assert _indexed(wh, 2026)[1].persons == 1
        assert _merges(wh) == [("bridge", 2)]              # two earlier persons became one
        _assert_as_full(wh)
        _store(wh, "bridge", "pi_values", bridge)          # a replay stores nothing and changes nothing
        _assert_as_full(wh)
        _delete(wh, "bridge")
        assert _indexed(wh, 2026)[1].persons == 2
        _assert_as_full(wh)
        _store(wh, "bridge", "pi_values", bridge)          # stored again after its removal
        assert _indexed(wh, 2026)[1].persons == 1
        _assert_as_full(wh)


def test_a_key_pushed_over_max_records_per_key_stops_linking_and_comes_back_when_removed(
        tmp_path: Path) -> None:
    with _warehouse(tmp_path, max_records=2) as wh:
        _store(wh, "flows", "flows", [flow(f"f{i}", ts=Y2026) for i in range(4)])
        # A hotline (mobile 400) beside each record's own ID; f3 falls back to name + date of birth, which
        # f2 shares.
        _store(wh, "p0", "pi_values", [pi("f0", 1, MOBILE, 400, identifier=True), pi("f0", 1, ID, 1,
                                                                                    identifier=True)])
        _store(wh, "p1", "pi_values", [pi("f1", 1, MOBILE, 400, identifier=True), pi("f1", 1, ID, 2,
                                                                                    identifier=True)])
        _store(wh, "p3", "pi_values", [pi("f3", 1, NAME, 7), pi("f3", 1, DOB, 8)])
        assert _indexed(wh, 2026)[1].persons == 2
        _store(wh, "p2", "pi_values", [pi("f2", 1, MOBILE, 400, identifier=True), pi("f2", 1, NAME, 7),
                                       pi("f2", 1, DOB, 8)])
        partition, linking = _indexed(wh, 2026)
        assert linking.persons == 3 and [k.records for k in linking.shared_keys] == [3]
        assert frozenset({("f2", 1), ("f3", 1)}) in partition
        _assert_as_full(wh)
        _delete(wh, "p2")
        assert _indexed(wh, 2026)[1].persons == 2 and _indexed(wh, 2026)[1].shared_keys == ()
        _assert_as_full(wh)


def test_pi_values_before_their_flows_wait_and_a_removed_flows_batch_takes_its_records_back(
        tmp_path: Path) -> None:
    with _warehouse(tmp_path) as wh:
        _store(wh, "p", "pi_values", [pi("a", 1, MOBILE, 1, identifier=True), pi("b", 1, MOBILE, 1,
                                                                                  identifier=True)])
        assert _indexed(wh, 2026)[1].records == 0
        _store(wh, "fa", "flows", [flow("a", ts=Y2026)])
        _store(wh, "fb", "flows", [flow("b", ts=Y2025)])      # another CST year: not linked with a
        assert _indexed(wh, 2026)[1] == Linking(1, 1, ("",), ())
        assert _indexed(wh, 2025)[1] == Linking(1, 1, ("",), ())
        _assert_as_full(wh)
        _delete(wh, "fa")
        assert _indexed(wh, 2026)[1].records == 0
        _assert_as_full(wh)
        _store(wh, "fa", "flows", [flow("a", ts=Y2026)])
        assert _indexed(wh, 2026)[1].records == 1
        _assert_as_full(wh)


_VALUE = st.tuples(st.sampled_from((MOBILE, ID, NAME, DOB)), st.integers(0, 4))


@st.composite
def _batches(draw: st.DrawFn) -> list[tuple[str, str, list]]:
    """A few flows batches and pi_values batches of small records over shared values."""
    flows = [f"f{i}" for i in range(6)]
    out: list[tuple[str, str, list]] = []
    for j, part in enumerate((flows[:3], flows[3:])):
        out.append((f"flows{j}", "flows", [flow(f, ts=draw(st.sampled_from((Y2026, Y2025)))) for f in part]))
    for j in range(draw(st.integers(1, 5))):
        rows: list[PiValueRecord] = []
        for k in range(draw(st.integers(1, 3))):
            f = draw(st.sampled_from(flows))
            for ft, v in draw(st.lists(_VALUE, min_size=1, max_size=3)):
                rows.append(pi(f, 10 * j + k, ft, v, identifier=ft in (MOBILE, ID), sensitive=ft == ID))
        out.append((f"p{j}", "pi_values", rows))
    return out


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(_batches(), st.lists(st.tuples(st.booleans(), st.integers(0, 6)), min_size=1, max_size=12),
       st.sampled_from((2, 1000)))
def test_random_ingest_and_removal_keep_the_index_equal_to_a_full_recomputation(
        tmp_path_factory: pytest.TempPathFactory, batches: list, ops: list[tuple[bool, int]],
        max_records: int) -> None:
    with _warehouse(tmp_path_factory.mktemp("wh"), max_records) as wh:
        stored: set[str] = set()
        for store, i in ops:
            batch_id, record_type, rows = batches[i % len(batches)]
            if store:
                _store(wh, batch_id, record_type, rows)
                stored.add(batch_id)
            elif batch_id in stored:
                _delete(wh, batch_id)
                stored.discard(batch_id)
            _assert_as_full(wh)


def test_the_index_is_built_for_a_warehouse_that_had_none_and_rebuilt_for_another_limit(
        tmp_path: Path) -> None:
    with _warehouse(tmp_path) as wh:
        _store(wh, "flows", "flows", [flow(f, ts=Y2026) for f in ("a", "b", "c")])
        _store(wh, "p", "pi_values", [pi(f, 1, MOBILE, 9, identifier=True) for f in ("a", "b", "c")])
        assert _indexed(wh, 2026)[1].persons == 1
    with _warehouse(tmp_path, max_records=2) as wh:
        assert _indexed(wh, 2026)[1].persons == 0
        _assert_as_full(wh)


def test_a_spot_check_over_a_calendar_year_reads_the_index_and_reports_as_relinking(tmp_path: Path) -> None:
    filing = make_filing()
    with _warehouse(tmp_path, max_records=2) as wh:
        _store(wh, "flows", "flows", [flow(f"f{i}", ts=Y2026, server_name=BOOKING_HOST) for i in range(5)]
               + [flow("old", ts=Y2025)])
        _store(wh, "dets", "detections", [detection(f"f{i}", MOBILE) for i in range(5)])
        _store(wh, "p1", "pi_values", [pi("f0", 1, MOBILE, 1, identifier=True),
                                       pi("f1", 1, MOBILE, 1, identifier=True),
                                       pi("f1", 1, ID, 5, identifier=True, sensitive=True),
                                       pi("old", 1, ID, 5, identifier=True)])
        _store(wh, "p2", "pi_values", [pi(f"f{i}", 2, MOBILE, 400, identifier=True) for i in range(2, 5)]
               + [pi("f2", 2, NAME, 3), pi("f2", 2, DOB, 4), pi("f3", 2, NAME, 3), pi("f3", 2, DOB, 4)])
        period = calendar_year(2026)
        link = index_persons(wh, E, period)
        assert link is not None
        now = datetime(2026, 6, 1, tzinfo=UTC)
        runs = [run_inspection(wh.record_files(E), filing, period=period, now=now, report_id="r",
                               max_records_per_key=2, link_persons=lp) for lp in (link, None)]
        assert index_persons(wh, E, (period[0], now)) is None        # not a calendar year: relink
    from_index, relinked = runs
    assert from_index.report is not None and relinked.report is not None
    assert from_index.linking == relinked.linking
    assert from_index.linking is not None and from_index.linking.shared_keys   # the hotline is reported
    assert render_json(from_index.report) == render_json(relinked.report)


def test_a_schema_3_warehouse_gets_its_person_index_from_the_stored_files(tmp_path: Path) -> None:
    with _warehouse(tmp_path) as wh:
        _store(wh, "p", "pi_values", [pi(f, 1, MOBILE, 9, identifier=True) for f in ("a", "b")])
        _store(wh, "flows", "flows", [flow(f, ts=Y2026) for f in ("a", "b")])
        expected = _indexed(wh, 2026)
        for table in ("person_records", "person_values", "person_key_counts", "person_merges",
                      "person_pending", "person_index_state"):
            wh.con.execute(f"DROP TABLE {table}")
        wh.con.execute("UPDATE meta SET value = '3' WHERE key = 'schema'")
    with _warehouse(tmp_path) as wh:
        assert _indexed(wh, 2026) == expected
        assert expected[1].persons == 1
        _assert_as_full(wh)


def _index_rows(wh: Warehouse) -> tuple[int, int]:
    with wh.cursor() as cur:
        row = cur.execute("SELECT (SELECT count(*) FROM person_records), "
                          "(SELECT count(*) FROM person_pending)").fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def test_an_upload_only_queues_its_rows_and_the_background_pass_folds_them(tmp_path: Path) -> None:
    from collector.compaction import Compactor
    from collector.config import Storage

    with _warehouse(tmp_path) as wh:
        _store(wh, "flows", "flows", [flow(f, ts=Y2026) for f in ("a", "b")])
        _store(wh, "p", "pi_values", [pi("a", 1, MOBILE, 1, identifier=True), pi("b", 1, MOBILE, 1,
                                                                                 identifier=True)])
        assert _index_rows(wh) == (0, 2)                 # queued, not linked, by the upload
        assert wh.persons_pending(E) == 2
        Compactor(wh, Storage()).run_once()              # what the service's background thread runs
        assert _index_rows(wh) == (2, 0) and wh.persons_pending(E) == 0
        _assert_as_full(wh)


def test_a_spot_check_behind_a_large_backlog_relinks_instead_of_folding(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import collector.person_counts as person_counts

    with _warehouse(tmp_path) as wh:
        _store(wh, "flows", "flows", [flow(f, ts=Y2026) for f in ("a", "b")])
        _store(wh, "p", "pi_values", [pi(f, 1, MOBILE, 7, identifier=True) for f in ("a", "b")])
        monkeypatch.setattr(person_counts, "MAX_FOLD_AT_CHECK", 1)
        assert index_persons(wh, E, calendar_year(2026)) is None       # 2 rows behind: relink
        assert _index_rows(wh) == (0, 2)                               # and the backlog is left alone
        monkeypatch.setattr(person_counts, "MAX_FOLD_AT_CHECK", 2)
        assert _indexed(wh, 2026)[1].persons == 1                      # within the bound: folded, counted
        assert _index_rows(wh) == (2, 0)
