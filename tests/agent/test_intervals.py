"""A long HTTP flow through the real pipeline, live (ticks) and from a file (capture time): it is written in
intervals, each request's PI goes with the interval it arrived in, and the intervals' counters add up to
the unsplit flow's."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pyarrow.parquet as pq

from agent.config import AgentConfig
from agent.pipeline import Pipeline, build_engine
from agent.spool import Spool
from tests.conftest import FIXTURES

sys.path.insert(0, str(FIXTURES / "pcaps"))
craft = importlib.import_module("craft")

CLIENT = craft.Host("10.20.0.5", "02:00:00:00:00:05")
SERVER = craft.Host("203.116.1.10", "02:00:00:00:00:01")     # SG


def request(mobile: str) -> bytes:
    body = json.dumps({"receiver": {"mobile": mobile}}).encode()
    head = (b"POST /v1/orders HTTP/1.1\r\nHost: api.partner-logistics.example\r\n"
            b"Content-Type: application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n")
    return head + body


def rows(spool: Path, record_type: str) -> list[dict]:
    return [r for f in sorted((spool / record_type).glob("*.parquet")) for r in pq.read_table(f).to_pylist()]


def test_a_long_flow_is_cut_into_intervals_that_keep_their_own_pi(tmp_path: Path) -> None:
    cap = craft.Capture(now_us=1_767_225_600 * 1_000_000)
    conn = craft.TcpConn(cap, craft.IpIds(), CLIENT, SERVER, 40000, 80, isn_c=1000, isn_s=5000)
    conn.handshake()
    conn.send(request("13812345678"))
    conn.recv(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    first_part = len(cap.frames)
    cap.advance(100_000_000)                        # 100 s later, on the same connection
    conn.send(request("13987654321"))
    conn.recv(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    conn.close()
    frames = [(us / 1e6, 1, frame) for us, frame in cap.frames]

    config = AgentConfig(agent_id="intervals", subject_key_file=str(tmp_path / "k.key"), detector_workers=0,
                         limits={"active_timeout_s": 50.0},
                         live={"flush_interval_s": 1.0, "stats_interval_s": 1.0})
    engine = build_engine(config)
    spool, whole = tmp_path / "spool", tmp_path / "whole"
    pipeline = Pipeline(config, Spool(spool, "intervals", None), lambda: engine, strict=True)
    pipeline.feed(frames[:first_part])
    now = frames[first_part - 1][0]
    pipeline.tick(now)                              # arms the timers
    pipeline.tick(now + 60)                         # the flow is 60 s old: its first interval is written
    pipeline.feed(frames[first_part:])
    pipeline.finish()
    # The same capture as a file (no ticks): cut by capture time, the same two rows.
    offline = Pipeline(config, Spool(tmp_path / "offline", "intervals", None), lambda: engine, strict=True)
    offline.feed(frames)
    offline.finish()
    # And with the default hour-long active timeout: one row for the whole flow.
    hour = config.model_copy(update={"limits": config.limits.model_copy(update={"active_timeout_s": 3600.0})})
    reference = Pipeline(hour, Spool(whole, "intervals", None), lambda: engine, strict=True)
    reference.feed(frames)
    reference.finish()

    flows, (one,) = sorted(rows(spool, "flows"), key=lambda f: f["ts_start"]), rows(whole, "flows")
    by_file = sorted(rows(tmp_path / "offline", "flows"), key=lambda f: f["ts_start"])
    assert [(f["flow_id"], f["bytes_out"], f["requests"]) for f in by_file] == \
        [(f["flow_id"], f["bytes_out"], f["requests"]) for f in flows]
    assert [f["flow_id"] for f in flows] == [one["flow_id"], one["flow_id"] + ".1"]
    assert [f["requests"] for f in flows] == [1, 1]
    assert sum(f["bytes_out"] for f in flows) == one["bytes_out"] == conn.bytes_out
    for counter in ("bytes_in", "packets_out", "packets_in", "missed_bytes"):
        assert sum(f[counter] for f in flows) == one[counter], counter
    assert flows[1]["ts_start"] > flows[0]["ts_end"] and flows[1]["ts_end"] == one["ts_end"]
    mobiles = {}
    for p in rows(spool, "pi_values"):
        if p["field_type"] == "mobile_cn":
            mobiles.setdefault(p["flow_id"], set()).add(p["value_key"])
    assert {fid: len(keys) for fid, keys in mobiles.items()} == {f["flow_id"]: 1 for f in flows}
    assert mobiles[flows[0]["flow_id"]] != mobiles[flows[1]["flow_id"]]
