"""The detectors' side of the agent: inline and in worker processes it writes the same records."""

from __future__ import annotations

import os
import pickle
import signal
import time
from datetime import date
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from agent.config import load_agent_config
from agent.inspection import Failed, Finished, FlowEnded, Flush, Inspect, InspectStats, Started
from agent.inspector import record_key, request_key_base
from agent.inspector_worker import WorkerInspector
from agent.pipeline import build_engine, run_capture_stats
from agent.spool import Spool, spool_files
from tests.conftest import FIXTURES

DEMO = FIXTURES / "pcaps" / "demo.pcap"


def _records(out: Path, record_type: str) -> list[tuple]:
    rows = [r for f in spool_files(out, record_type) for r in pq.read_table(f).to_pylist()]
    for r in rows:
        for k in ("batch_id", "agent_id", "enterprise_id", "schema_version"):
            r.pop(k)
    return sorted(tuple(sorted((k, str(v)) for k, v in r.items())) for r in rows)


@pytest.fixture
def key_file(tmp_path: Path) -> str:
    path = tmp_path / "k.key"
    path.write_bytes(b"inspector-test-key-not-secret-00")
    return str(path)


def test_worker_processes_write_exactly_the_records_of_the_inline_inspector(tmp_path: Path,
                                                                            key_file: str) -> None:
    outs = {}
    for workers in (0, 1, 2):
        cfg = load_agent_config(None, agent_id="w", subject_key_file=key_file, detector_workers=workers)
        outs[workers] = tmp_path / f"w{workers}"
        stats = run_capture_stats([DEMO], cfg, outs[workers])
        assert stats.detections > 0 and stats.pi_values > 0
    for record_type in ("flows", "detections", "pi_values"):
        inline = _records(outs[0], record_type)
        assert inline
        assert _records(outs[1], record_type) == inline
        assert _records(outs[2], record_type) == inline


def test_a_worker_that_cannot_build_its_engine_fails_the_run_with_its_one_line_reason(tmp_path: Path) -> None:
    def broken() -> object:
        raise ValueError("field_types.yaml: field_types[3].patterns[0]: bad regex")

    inspector = WorkerInspector(broken, Spool(tmp_path, "w", None), workers=1)
    with pytest.raises(RuntimeError, match="bad regex"):
        inspector.finish()


def test_a_worker_killed_mid_run_is_noticed_instead_of_hanging(tmp_path: Path, key_file: str) -> None:
    cfg = load_agent_config(None, agent_id="w", subject_key_file=key_file)
    inspector = WorkerInspector(lambda: build_engine(cfg), Spool(tmp_path, "w", None), workers=1)
    os.kill(inspector._first.pid, signal.SIGKILL)
    inspector._first.join()
    with pytest.raises(RuntimeError, match="stopped"):
        inspector.finish()


def test_a_forked_worker_killed_mid_run_is_noticed_too(tmp_path: Path, key_file: str) -> None:
    cfg = load_agent_config(None, agent_id="w", subject_key_file=key_file)
    inspector = WorkerInspector(lambda: build_engine(cfg), Spool(tmp_path, "w", None), workers=2)
    second = inspector._workers[1]
    for _ in range(600):                 # the first worker forks the second once its engine is built
        second.alive()
        if second.pid is not None:
            break
        time.sleep(0.05)
    assert second.pid is not None and second.pid != inspector._first.pid
    os.kill(second.pid, signal.SIGKILL)
    with pytest.raises(RuntimeError, match="stopped"):
        inspector.finish()
    inspector.close()


def test_workers_after_the_first_are_forked_from_it_with_its_engine(tmp_path: Path, key_file: str) -> None:
    log = tmp_path / "built"

    def factory() -> object:
        with log.open("a") as f:        # a file, not a list: the factory runs in another process
            f.write(f"{os.getpid()}\n")
        return build_engine(load_agent_config(None, agent_id="w", subject_key_file=key_file))

    inspector = WorkerInspector(factory, Spool(tmp_path / "spool", "w", None), workers=3)
    stats = inspector.finish()
    assert stats.detections == 0 and stats.pi_values == 0
    builders = log.read_text().split()
    assert builders == [str(inspector._first.pid)]   # one engine, built once, by the first worker


def test_record_keys_are_distinct_within_a_request_and_stable() -> None:
    base = request_key_base("f1", 0)
    keys = {record_key(base, i) for i in range(100_000)}
    assert len(keys) == 100_000
    assert all(-(1 << 63) <= k < (1 << 63) for k in keys)
    assert record_key(request_key_base("f1", 0), 7) == record_key(base, 7)
    assert request_key_base("f1", 1) != base


def test_a_worker_given_something_that_is_no_message_fails_the_run_naming_only_its_type(
        tmp_path: Path, key_file: str) -> None:
    cfg = load_agent_config(None, agent_id="w", subject_key_file=key_file)
    inspector = WorkerInspector(lambda: build_engine(cfg), Spool(tmp_path, "w", None), workers=1)
    inspector._workers[0].batch.append(("f" * 20, 0, "/", b"13812345678", None, None))   # the old tuple shape
    with pytest.raises(RuntimeError, match=r"^TypeError in the detector worker$"):
        inspector.finish()
    inspector.close()


def test_messages_and_replies_cross_a_process_boundary_as_their_own_types() -> None:
    messages = [Inspect("f", 1, "/?a=1", b"{}", "application/json", date(2026, 1, 2)), FlowEnded("f"),
                Flush(), Started(7), Finished(InspectStats(1, 2)), Failed("ValueError")]
    assert [pickle.loads(pickle.dumps(m)) for m in messages] == messages
    assert len({type(m) for m in messages}) == len(messages)
