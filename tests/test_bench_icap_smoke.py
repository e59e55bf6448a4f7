"""Smoke tests of bench/icap.py: the bodies it sends (about 10 KB, distinct persons, valid resident IDs,
four values per person as the real detectors count them — what its records check relies on), its client
against its origin server, the added-latency arithmetic and the limit, and one tiny run through Squid and
the real `egress-agent icap` (needs root and Squid, as CI has).

Nothing here asserts a time: the figures are the benchmark's output, not a test's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest
from stdnum.cn import ric

from tests.conftest import ROOT, load_script

BENCH = ROOT / "bench"


@pytest.fixture(scope="module")
def bench() -> dict[str, ModuleType]:
    sys.path.insert(0, str(BENCH))
    try:
        return {name: load_script(BENCH / f"{name}.py", name)
                for name in ("icap_load", "icap_procs", "icap_report", "icap")}
    finally:
        sys.path.remove(str(BENCH))


def test_bodies_are_10kb_of_distinct_persons_with_valid_ids(bench: dict[str, ModuleType]) -> None:
    load = bench["icap_load"]
    batch = load.prepare(load.People(seed=3), 40, "127.77.0.1:8080", 10 * 1024)
    seen: Counter[str] = Counter()
    persons = 0
    for request in batch.requests:
        head, _, body = request.partition(b"\r\n\r\n")
        assert head.startswith(b"POST http://127.77.0.1:8080/")
        assert f"Content-Length: {len(body)}".encode() in head
        assert 9_500 <= len(body) <= 10_500
        records = json.loads(body)["records"]
        persons += len(records)
        for person in records:
            assert ric.is_valid(person["idNo"]), person["idNo"]
            seen.update(person[k] for k in ("idNo", "mobile", "email"))
    assert persons == batch.persons
    assert len(seen) == 3 * persons and set(seen.values()) == {1}    # no value twice, across all bodies


def test_real_detectors_find_four_values_per_person(bench: dict[str, ModuleType]) -> None:
    from detectors.engine import Engine

    load = bench["icap_load"]
    batch = load.prepare(load.People(seed=4), 1, "127.77.0.1:8080", 10 * 1024)
    body = batch.requests[0].partition(b"\r\n\r\n")[2]
    hits = Engine.from_configs(ROOT / "configs", b"k" * 32).inspect(body, "application/json").hits
    by_type = Counter(h.field_type for h in hits)
    assert set(by_type) == {"person_name", "resident_id_cn", "mobile_cn", "email"}
    assert set(by_type.values()) == {batch.persons}
    assert len(hits) == load.VALUES_PER_PERSON * batch.persons


def test_client_paces_requests_to_the_origin(bench: dict[str, ModuleType]) -> None:
    load, procs = bench["icap_load"], bench["icap_procs"]
    children = procs.Children()
    port = procs.free_port()
    try:
        procs.start_origin(children, "127.0.0.1", port)
        batch = load.prepare(load.People(seed=5), 30, f"127.0.0.1:{port}", 2048)
        windows: list[str] = []
        result = load.run_load(batch, 100.0, 10, ("127.0.0.1", port), 4, windows.append)
    finally:
        children.stop_all()
    assert windows == ["start", "end"]
    assert result.sent == 30 and result.measured == 20 and not result.errors
    assert len(result.latencies) == 20 and all(x > 0 for x in result.latencies)
    assert result.wall_s > 0 and not children.procs


def _round(bench: dict[str, ModuleType], mode: str, offered: float, latencies: list[float],
           errors: dict[str, int] | None = None, records_ok: bool | None = True) -> object:
    load = bench["icap_load"].LoadResult(offered=offered, sent=len(latencies), measured=len(latencies),
                                          latencies=latencies, start_lag=[0.0] * len(latencies),
                                          offsets=[i / offered for i in range(len(latencies))],
                                          errors=errors or {}, wall_s=len(latencies) / offered)
    return bench["icap"].Round(mode, offered, 0, load, cpu_s={"other": 0.0},
                               records_ok=records_ok if mode == "on" else None)


def test_added_latency_is_the_difference_of_percentiles_and_the_limit_the_highest_passing_load(
        bench: dict[str, ModuleType]) -> None:
    report = bench["icap_report"]
    ms = [i / 1000 for i in range(1, 101)]           # 1..100 ms: p50 50.5 ms, p99 99.01 ms
    rounds = [_round(bench, "off", 50, ms), _round(bench, "on", 50, [x + 0.002 for x in ms]),
              _round(bench, "off", 100, ms), _round(bench, "on", 100, [x + 0.004 for x in ms]),
              _round(bench, "off", 200, ms), _round(bench, "on", 200, [x + 0.030 for x in ms]),
              _round(bench, "off", 400, ms), _round(bench, "on", 400, ms, errors={"http_500": 1})]
    summary = report.summarise(rounds, target_ms=10.0)
    by_load = {p["offered_tx_s"]: p for p in summary["per_load"]}
    assert by_load[100]["off"]["p50_ms"] == 50.5 and by_load[100]["off"]["p99_ms"] == 99.01
    assert by_load[100]["added_p50_ms"] == 4.0 and by_load[100]["added_p99_ms"] == 4.0
    assert [by_load[x]["pass"] for x in (50, 100, 200, 400)] == [True, True, False, False]
    assert summary["limit_tx_s"] == 100 and summary["first_failing_tx_s"] == 200
    assert "FAIL" in report.table(summary) and "limit" in report.table(summary)


def test_missing_records_fail_a_load(bench: dict[str, ModuleType]) -> None:
    ms = [i / 1000 for i in range(1, 101)]
    rounds = [_round(bench, "off", 50, ms), _round(bench, "on", 50, ms, records_ok=False)]
    summary = bench["icap_report"].summarise(rounds, target_ms=10.0)
    assert summary["limit_tx_s"] is None and not summary["per_load"][0]["pass"]


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("squid") is None,
                    reason="needs root and squid (Debian squid-openssl): Squid drops root for its proxy user")
def test_tiny_run_through_squid_and_the_real_agent(tmp_path: Path) -> None:
    # Squid, dropped to its proxy user, must reach its folder: not under /tmp/pytest-of-root (0700).
    out = ROOT / "bench" / "out" / f"icap-smoke-{os.getpid()}"
    try:
        done = subprocess.run([sys.executable, str(BENCH / "icap.py"), "--loads", "20", "--duration", "1",
                               "--warmup", "1", "--repeats", "1", "--retries", "0", "--out", str(out),
                               "--json", str(tmp_path / "r.json")], capture_output=True, text=True,
                              timeout=300, check=False)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    assert done.returncode == 0, done.stderr[-2000:]
    doc = json.loads((tmp_path / "r.json").read_text())
    assert {r["mode"] for r in doc["rounds"]} == {"on", "off"}
    for r in doc["rounds"]:
        assert r["errors"] == {} and r["squid_status"] == {"TCP_MISS/200": r["sent"]}
    on = next(r for r in doc["rounds"] if r["mode"] == "on")
    assert on["records_ok"] is True and on["records"] == {**on["records_expected"], "anomalies": 0}
    assert on["cpu_s"]["agent"] > 0
