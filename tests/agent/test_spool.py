"""The spool publishes complete batches only."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from agent.records import PiValueRecord
from agent.spool import Spool, spool_files

ROWS = [PiValueRecord("f1", 1, "mobile_cn", -5, True, False), PiValueRecord("f1", 1, "email", 7, True, False)]


def test_a_batch_lands_under_its_record_type_with_no_temporary_file_left(tmp_path: Path) -> None:
    path = Spool(tmp_path, "gw", "ent").write("pi_values", ROWS)
    assert path is not None and path.parent == tmp_path / "pi_values"
    assert spool_files(tmp_path, "pi_values") == [path]
    assert not list(tmp_path.rglob("*.tmp"))
    assert pq.read_table(path).num_rows == 2


def test_an_empty_batch_writes_no_file(tmp_path: Path) -> None:
    assert Spool(tmp_path, "gw", None).write("flows", []) is None
    assert not list(tmp_path.rglob("*.parquet"))


def test_a_staged_run_publishes_its_batches_only_on_success(tmp_path: Path) -> None:
    spool = Spool(tmp_path, "gw", None)
    with spool.staged() as stage:
        stage.write("pi_values", ROWS)
        assert spool_files(tmp_path, "pi_values") == []   # not visible until the run succeeds
    assert len(spool_files(tmp_path, "pi_values")) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["pi_values"]


def test_a_failed_staged_run_leaves_nothing_behind(tmp_path: Path) -> None:
    spool = Spool(tmp_path, "gw", None)
    with pytest.raises(RuntimeError), spool.staged() as stage:
        stage.write("pi_values", ROWS)
        raise RuntimeError("bad input halfway")
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_record_type_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown record type"):
        Spool(tmp_path, "gw", None).write("payloads", ROWS)
