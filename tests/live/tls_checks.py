"""Helpers of the live TLS tests (test_live_tls.py, test_live_tls_keylogs.py): the agent and selfcheck on
the harness's capture, its records, and the views of flows the tests compare.

Requests per connection are counted as tshark counts them: each HTTP/1.x request, each HTTP/2 stream the
client opened with HEADERS, each client-initiated bidirectional QUIC stream; so the h2c Upgrade connection
has 2 (the body-less GET that upgrades, then the POST on stream 3) and the 0-RTT one 2 (a GET as early
data, then a POST in 1-RTT), 1 when the key log lacks CLIENT_EARLY_TRAFFIC_SECRET. Domestic connections are
left out of the per-flow comparisons (opening a flow that is no export is the agent's choice).
"""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from tests.conftest import BIN
from tests.live import plan, tls_oracle, tls_sessions
from tests.live.netns import assert_report_matches_truth, require_netns
from tests.live.tls_traffic import Capture, programs_unavailable

TLS_PORTS = (443, tls_sessions.ZERO_RTT_PORT)


def require_programs() -> None:
    """Skip, with the reason, without namespaces or a program the harness runs."""
    require_netns()
    reason = programs_unavailable()
    if reason:
        pytest.skip(reason)


def agent_run(pcap: Path, out: Path, *keylogs: Path) -> dict[str, list[dict[str, Any]]]:
    """`egress-agent run --pcap` (with `--keylog` per key log) -> its records by table."""
    argv = [str(BIN / "egress-agent"), "run", "--pcap", str(pcap), "--out", str(out)]
    for k in keylogs:
        argv += ["--keylog", str(k)]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=out.parent)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    return read_spool(out)


_RUNS: dict[tuple[str, ...], dict[str, list[dict[str, Any]]]] = {}


def records_of(cap: Capture, *keylogs: Path) -> dict[str, list[dict[str, Any]]]:
    """agent_run on the module's capture with the module's own key log or none, once per module."""
    key = (str(cap.pcapng), *map(str, keylogs))
    if key not in _RUNS:
        _RUNS[key] = agent_run(cap.pcapng, cap.pcapng.parent / f"spool-{len(_RUNS)}", *keylogs)
    return _RUNS[key]


def read_spool(spool: Path) -> dict[str, list[dict[str, Any]]]:
    tables: dict[str, list[dict[str, Any]]] = {}
    for f in sorted(spool.glob("*/*.parquet")):
        tables.setdefault(f.parent.name, []).extend(pq.read_table(f).to_pylist())
    return tables


def selfcheck(pcap: Path, out: Path, *keylogs: Path, filing: Path | None = None) -> dict[str, Any]:
    if filing is None:
        filing = out.parent / "filing.yaml"
        filing.write_text(json.dumps(plan.filing()), encoding="utf-8")
    argv = [str(BIN / "egress-collector"), "selfcheck", str(pcap), "--filing", str(filing), "--out", str(out),
            "--format", "json"]
    for k in keylogs:
        argv += ["--keylog", str(k)]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=out.parent)
    assert r.returncode in (0, 1), r.stderr[-3000:]
    return json.loads((out / "report.json").read_text(encoding="utf-8"))


def matches_truth(report: dict[str, Any], truth: dict[str, Any]) -> None:
    """netns.assert_report_matches_truth, after setting aside the destinations without a name the capture
    may give: the truncated handshake's address (its ClientHello, SNI and all, is cut short) and, for the
    agent capturing live, the gateway the capture's end-of-capture sentinel datagram went to
    (tests/live/dumpcap.py). They must carry nothing."""
    dests = report["observed"]["destinations"]
    unnamed = [d for d in dests if d["server_name"] is None]
    assert {ip for d in unnamed for ip in d["ip"]} <= {plan.OVERSEAS_SG, plan.GATEWAY_IP}, unnamed
    assert all(not d["field_types"] and not d["persons_nonsensitive"] and not d["persons_sensitive"]
               for d in unnamed), unnamed
    observed = {**report["observed"], "destinations": [d for d in dests if d["server_name"]]}
    named = {**report, "observed": observed}
    assert_report_matches_truth(named, truth)


def conn_key(flow: dict[str, Any]) -> tuple[str, int]:
    return flow["transport"], flow["src_port"]


def truth_flows(cap: Capture) -> list[dict[str, Any]]:
    return cap.truth["flows"]


def summary(flows: list[dict[str, Any]]) -> Counter[tuple[Any, ...]]:
    """Cross-border connections that carried requests, as (server name, address, port, transport,
    requests, visibility). Domestic ones are left out: whether the agent opens a flow that is no export
    (uninspected_reason not_cross_border) is its choice, not the truth's."""
    return Counter((f["server_name"], f["dst_ip"], f["dst_port"], f["transport"], f["requests"],
                    f.get("visibility", f.get("visibility_with_keys"))) for f in flows
                   if f["cross_border"] and f["requests"])


def tls_flows(flows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [f for f in flows if f["dst_port"] in TLS_PORTS]



def handshakes(cap: Capture, flows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The cross-border TLS and QUIC flows whose whole ClientHello is in the capture (the truncated one
    left out)."""
    randoms = tls_oracle.client_randoms(cap.pcapng)
    found = [f for f in flows if conn_key(f) in randoms]
    assert len(found) == len(randoms)
    return [f for f in found if f["cross_border"]]


def tls_visibility(flows: list[dict[str, Any]]) -> dict[tuple[str, int], str]:
    return {conn_key(f): f["visibility"] for f in tls_flows(flows) if f["requests"] or f["bytes_out"] > 600}


