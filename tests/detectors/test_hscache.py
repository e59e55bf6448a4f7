"""The compiled-database cache is an accelerator only: same matches, and any bad entry means compiling."""

from __future__ import annotations

from pathlib import Path

import pytest

from detectors import hscache

EXPRS = [rb"1[3-9]\d{9}", rb"[A-Za-z0-9]@[A-Za-z0-9-]+\.[A-Za-z]"]
FLAGS = [0, 0]
TEXT = b"tel 13800138000, mail a@b.cn"


def _matches(db: object) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    db.scan(TEXT, match_event_handler=lambda i, s, e, f, c: out.append((i, e)))  # type: ignore[attr-defined]
    return out


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("EGRESSWATCH_CACHE_DIR", str(tmp_path))
    return tmp_path


def test_a_cached_database_matches_exactly_like_a_fresh_one(cache: Path) -> None:
    fresh = _matches(hscache.compile_block(EXPRS, FLAGS))
    assert len(list(cache.glob("hs-*.db"))) == 1
    assert _matches(hscache.compile_block(EXPRS, FLAGS)) == fresh == [(0, 15), (1, 27)]


def test_a_corrupt_cache_entry_is_compiled_again(cache: Path) -> None:
    hscache.compile_block(EXPRS, FLAGS)
    (entry,) = cache.glob("hs-*.db")
    entry.write_bytes(b"not a database")
    assert _matches(hscache.compile_block(EXPRS, FLAGS)) == [(0, 15), (1, 27)]


def test_other_expressions_get_their_own_entry(cache: Path) -> None:
    hscache.compile_block(EXPRS, FLAGS)
    hscache.compile_block(EXPRS[:1], FLAGS[:1])
    assert len(list(cache.glob("hs-*.db"))) == 2


def test_the_cache_can_be_switched_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EGRESSWATCH_CACHE_DIR", "off")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert hscache.cache_dir() is None
    assert _matches(hscache.compile_block(EXPRS, FLAGS)) == [(0, 15), (1, 27)]
    assert not list(tmp_path.rglob("hs-*.db"))
