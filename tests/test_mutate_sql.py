"""tools/mutate_sql.py, the SQL checks' mutation tester: the mutants it plants in a tiny check, and the check
file is back as it was after a run, also when the run fails half-way."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.conftest import load_script

ROOT = Path(__file__).resolve().parents[1]


ms = load_script(ROOT / "tools" / "mutate_sql.py", "mutate_sql")
TINY = ("-- check: tiny\n-- severity: low\n"
        "SELECT DISTINCT a AS subject, count(DISTINCT b) FROM t\nWHERE b > 1 AND c = 'x'\n")


def test_the_mutants_of_a_tiny_check() -> None:
    got = {(m.operator, m.description) for m in ms.mutants("tiny", TINY)}
    assert got == {
        ("distinct", "SELECT DISTINCT -> SELECT"),
        ("distinct", "COUNT(DISTINCT b): drop DISTINCT"),
        ("predicate", "drop `b > 1`"),
        ("predicate", "drop `c = 'x'`"),
        ("comparison", "b > 1  ->  b >= 1"),
        ("comparison", "c = 'x'  ->  c <> 'x'"),
        ("constant", "1 -> 2 in `b > 1`"),
    }
    for m in ms.mutants("tiny", TINY):
        assert m.sql.startswith("-- check: tiny\n-- severity: low\n") and m.sql != ms.round_trip(TINY)


def test_a_check_with_a_hits_view_keeps_its_statements_apart_for_the_runner() -> None:
    from collector.checks.views import statements

    two = ("-- check: two\n-- severity: low\nCREATE OR REPLACE TEMP VIEW hits AS SELECT a AS subject FROM t "
           "WHERE a > 1;\nSELECT subject FROM hit_evidence WHERE flows = 2\n")
    got = list(ms.mutants("two", two))
    assert {m.description for m in got} >= {"a > 1  ->  a >= 1", "flows = 2  ->  flows <> 2"}
    for m in got:
        setup, query = statements(m.sql)
        assert "TEMPORARY VIEW hits" in setup and query.startswith("SELECT")
    assert ms.tests_for("evidence") == list(ms.CHECK_TESTS) == ms.tests_for("views")


def test_a_single_predicate_where_is_dropped_and_evidence_lengths_are_left_alone() -> None:
    sql = "SELECT array_slice(list(a), 1, 5) AS subject FROM t WHERE a >= 3\n"
    got = {m.description for m in ms.mutants("x", sql)}
    assert got == {"drop WHERE `a >= 3`", "a >= 3  ->  a > 3", "3 -> 4 in `a >= 3`"}


def test_the_file_is_restored_after_a_run_and_each_mutant_was_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "tiny.sql"
    path.write_text(TINY, encoding="utf-8")
    seen: list[str] = []

    def runner(name: str, python: str) -> bool:
        seen.append(path.read_text(encoding="utf-8"))
        # the tests pass on the unmutated round trip and, of the mutants, only on the boundary one
        return len(seen) == 1 or "b >= 1" in seen[-1]

    outcomes = ms.mutate_file(path, sys.executable, runner=runner)
    assert path.read_text(encoding="utf-8") == TINY
    assert seen[0] == ms.round_trip(TINY) and len(seen) == len(outcomes) + 1 == 8
    assert [o.mutant.description for o in outcomes if not o.killed] == ["b > 1  ->  b >= 1"]


def test_the_file_is_restored_when_the_run_breaks_off(tmp_path: Path) -> None:
    path = tmp_path / "tiny.sql"
    path.write_text(TINY, encoding="utf-8")
    calls = []

    def runner(name: str, python: str) -> bool:
        calls.append(name)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return True

    with pytest.raises(KeyboardInterrupt):
        ms.mutate_file(path, sys.executable, runner=runner)
    assert path.read_text(encoding="utf-8") == TINY


def test_a_check_whose_round_trip_fails_is_skipped_untouched(tmp_path: Path) -> None:
    path = tmp_path / "tiny.sql"
    path.write_text(TINY, encoding="utf-8")
    assert ms.mutate_file(path, sys.executable, runner=lambda name, python: False) == []
    assert path.read_text(encoding="utf-8") == TINY


def test_a_mutant_whose_tests_run_too_long_is_stopped_and_counts_as_killed() -> None:
    import time

    # (a child left sleeping would hold this test for an hour: the timeout is what ends it)
    assert ms.forked(lambda name, python: time.sleep(3600) or True, timeout=0.5)("x", sys.executable) is False
    assert ms.forked(lambda name, python: True, timeout=30)("x", sys.executable) is True
    assert ms.forked(lambda name, python: False, timeout=30)("x", sys.executable) is False
