"""Bounded memory under a flood of short flows (issue: the agent at the egress): the flow table stays at
max_flows, evictions are counted, and resident memory does not grow with the number of flows. What one open
flow costs is held in tests/security/test_agent_flow_memory.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

from tests.conftest import ROOT

FLOWS, MAX_FLOWS, CACHES = 160_000, 2_000, 4_096


def test_a_flood_of_short_flows_keeps_memory_flat_and_counts_evictions(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, str(Path(__file__).with_name("flood.py")), str(tmp_path), str(FLOWS),
                        str(MAX_FLOWS), str(CACHES)], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    # 100,000 more flows after the first measurement and (almost) no more memory: the table, the
    # recently-closed keys, the address caches and the record buffers are all bounded (caps scaled down so
    # that the plateau comes within the test).
    assert got["rss_late_mb"] - got["rss_early_mb"] < 15, got
    assert got["flows"] == FLOWS
    assert got["evicted"] > FLOWS // 2              # SYN-only flows never end by themselves
    stats = [row for f in (tmp_path / "capture_stats").glob("*.parquet")
             for row in pq.read_table(f).to_pylist()]
    assert sum(s["flows_evicted"] for s in stats) == got["evicted"]
    # flood.py sends a SYN per flow and an RST back for every third: ceil(n / 3) of them, per part (the
    # first 3/8 in one, the rest in ten, as capture files would come).
    early, rest = FLOWS * 3 // 8, FLOWS - FLOWS * 3 // 8
    parts = (early, *[rest // 10] * 9, rest // 10 + rest % 10)
    assert sum(s["packets_received"] for s in stats) == sum(n + -(-n // 3) for n in parts)
