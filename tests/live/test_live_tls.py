"""Encrypted egress with logged secrets, on real traffic (issue 11, "Tests with real traffic").

One capture per test session (tests/live/tls_traffic.py, the `tls_capture` fixture of tests/live/conftest.py):
hypercorn abroad over TLS 1.2 / 1.3, h1 / h2 / h3, h2c and gRPC; httpx, Python ssl, curl, `openssl
s_client` (a KeyUpdate; 0-RTT against `openssl s_server`) and aioquic (a QUIC key update) posting the live
plan's planted exports, every secret in one NSS key log; dumpcap records the client's veth. The capture is
read by the agent with the key log, as a pcapng carrying the secrets (editcap --inject-secrets) and with no
keys; tshark is the oracle (how requests are counted: tests/live/tls_checks.py). Broken key logs:
test_live_tls_keylogs.py.
"""

from __future__ import annotations

import json
import signal
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import BIN, FIXTURES, ROOT
from tests.live import plan, tls_oracle, tls_sessions
from tests.live.netns import topology
from tests.live.tls_checks import (
    TLS_PORTS,
    conn_key,
    matches_truth,
    read_spool,
    records_of,
    require_programs,
    selfcheck,
    summary,
    tls_flows,
    truth_flows,
)
from tests.live.tls_traffic import Capture, capture_traffic

pytestmark = pytest.mark.root
LIVE = {"flush_interval_s": 0.5, "stats_interval_s": 1.0, "ship_interval_s": 0.5}


@pytest.fixture
def cap(tls_capture: Capture) -> Capture:
    return tls_capture


# ---------------------------------------------------------------------------------------------- the harness

def test_the_server_got_every_request_the_clients_sent(cap: Capture) -> None:
    import hashlib
    sessions = tls_sessions.mixed()
    want: Counter[tuple[str, str, str, str, str]] = Counter()
    for s in sessions:
        if s.port == tls_sessions.ZERO_RTT_PORT:
            continue                  # openssl s_server's, below
        version = {"h3": "3", "http/1.1": "1.1"}.get(s.alpn or s.mode, "2")
        for msg in s.messages:
            want[(version, "POST", s.server_name, msg.path, hashlib.sha256(msg.body).hexdigest())] += 1
        if s.mode == "h2c-upgrade":
            want[("2", "GET", s.server_name, "/", hashlib.sha256(b"").hexdigest())] += 1
    got = Counter((e["http_version"], e["method"], e["host"], e["path"], e["body_sha256"])
                  for e in cap.server_log())
    assert got == want
    truth = cap.truth
    assert sum(f["requests"] for f in truth["flows"] if f["dst_port"] != tls_sessions.ZERO_RTT_PORT
               ) == len(cap.server_log())
    assert cap.zero_rtt_log is not None
    zero_rtt = cap.zero_rtt_log.read_bytes()
    early = zero_rtt.index(b"Early data received:")
    assert zero_rtt.count(b"GET /early ") == 1 and zero_rtt.count(b"POST /v2/shipments ") == 1
    assert zero_rtt.index(b"GET /early ") < early < zero_rtt.index(b"POST /v2/shipments ")
    assert truth["expected_findings"] == plan.EXPECTED_FINDINGS
    # every combination the issue names is in the capture
    combos = {(f["tls"], f["alpn"], f["mode"]) for f in truth["flows"]}
    assert {("1.3", "http/1.1", "0rtt"),
            ("1.2", "http/1.1", None), ("1.2", "h2", None), ("1.3", "http/1.1", None), ("1.3", "h2", None),
            ("1.3", "h3", None), ("1.3", "h2", "grpc"), (None, None, "h2c"), (None, None, "h2c-upgrade")
            } <= combos
    ciphers = {f["cipher"] for f in truth["flows"]}
    assert {"ECDHE-RSA-CHACHA20-POLY1305", "TLS_CHACHA20_POLY1305_SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
            "TLS_AES_128_GCM_SHA256"} <= ciphers


def test_tshark_decrypts_every_request_with_the_key_log(cap: Capture) -> None:
    """The oracle itself: with the key log, tshark sees each connection's requests and names."""
    seen = tls_oracle.requests_by_connection(cap.pcapng, cap.keylog)
    want = Counter((f["transport"], f["dst_port"], f["requests"], f["server_name"] if f["transport"] == "tcp"
                    else None) for f in truth_flows(cap) if f["requests"])
    got = Counter((s.transport, s.dst_port, s.requests, next(iter(s.authorities)) if s.authorities else None)
                  for s in seen.values())
    assert got == want
    assert all(len(s.authorities) <= 1 for s in seen.values())
    # without the early traffic secret the 0-RTT GET stays closed, the 1-RTT POST after it does not
    no_early = tls_oracle.drop_labels(cap.keylog, {"CLIENT_EARLY_TRAFFIC_SECRET"},
                                      cap.keylog.with_name("no-early.keys"))
    zero_rtt = [s for s in tls_oracle.requests_by_connection(cap.pcapng, no_early).values()
                if s.dst_port == tls_sessions.ZERO_RTT_PORT]
    assert [(s.requests, s.authorities) for s in zero_rtt] == [(1, {tls_sessions.PARTNER})]
    # without keys only the cleartext h2c / HTTP/1.1 requests are visible
    plain = tls_oracle.requests_by_connection(cap.pcapng, None)
    assert sum(s.requests for s in plain.values()) == sum(f["requests"] for f in truth_flows(cap)
                                                          if f["dst_port"] == 80)


def test_a_pcapng_with_injected_secrets_decrypts_in_tshark_without_a_key_log(cap: Capture) -> None:
    dsb = tls_oracle.inject_secrets(cap.pcapng, cap.keylog, cap.pcapng.with_name("dsb.pcapng"))
    with_dsb = tls_oracle.requests_by_connection(dsb, None)
    assert with_dsb == tls_oracle.requests_by_connection(cap.pcapng, cap.keylog)


def test_the_key_log_has_secrets_for_every_handshake_in_the_capture(cap: Capture) -> None:
    randoms = tls_oracle.client_randoms(cap.pcapng)
    logged = {line.split()[1] for line in cap.keylog.read_text().splitlines()
              if line and not line.startswith("#")}
    tls = [f for f in truth_flows(cap) if f["tls"] and f["session"] != "truncated-clienthello"]
    assert len(randoms) == len(tls)
    assert set(randoms.values()) <= logged


# ---------------------------------------------------------------------------------------------- with keys

def test_selfcheck_with_the_key_log_finds_exactly_what_was_sent(cap: Capture, tmp_path: Path) -> None:
    report = selfcheck(cap.pcapng, tmp_path / "report", cap.keylog)
    matches_truth(report, cap.truth)
    coverage = report["observed"]["coverage"]
    assert coverage["by_visibility"]["decrypted"] > 0 and coverage["by_visibility"]["plaintext"] > 0
    # only connections that carried no request may stay unopened (the truncated handshake, perhaps the
    # one that only fetched a session ticket): a few hundred bytes against the decrypted exports
    assert coverage["by_visibility"]["encrypted"] < coverage["by_visibility"]["decrypted"] / 10
    assert "decrypt_failed" not in {r["reason"] for r in coverage["uninspected_by_reason"]}


def test_selfcheck_of_a_pcapng_with_injected_secrets_needs_no_flag(cap: Capture, tmp_path: Path) -> None:
    dsb = tls_oracle.inject_secrets(cap.pcapng, cap.keylog, tmp_path / "dsb.pcapng")
    matches_truth(selfcheck(dsb, tmp_path / "report"), cap.truth)


def test_the_agent_decrypts_every_connection_as_tshark_does(cap: Capture, tmp_path: Path) -> None:
    records = records_of(cap, cap.keylog)
    flows = records["flows"]
    assert summary(flows) == summary(truth_flows(cap))
    oracle = tls_oracle.requests_by_connection(cap.pcapng, cap.keylog)
    by_conn = {conn_key(f): f for f in flows}
    for key, seen in oracle.items():
        flow = by_conn[key]
        if not flow["cross_border"]:
            continue
        assert flow["requests"] == seen.requests, flow
        if key[0] == "tcp":            # tshark 4.0 does not decode QPACK: HTTP/3 names come from the server
            assert {flow["server_name"]} == seen.authorities, flow
    for f in tls_flows(flows):
        assert f["uninspected_reason"] is None or not f["requests"], f
    h3 = [f for f in flows if f["transport"] == "udp"]
    assert [(f["server_name"], f["alpn"], f["visibility"]) for f in h3] == [
        ("sync.crm-vendor.example", "h3", "decrypted")]
    assert not [a for a in records.get("anomalies", []) if a.get("name") == "decrypt_failed"]


def test_key_updates_mid_connection_are_followed(cap: Capture, tmp_path: Path) -> None:
    """The s_client connection's second request follows a TLS 1.3 KeyUpdate (both sides), the aioquic
    connection's a QUIC key update: both requests counted, the second one's PI found."""
    records = records_of(cap, cap.keylog)
    updated = {(f["server_name"], f["transport"], f["dst_port"]) for f in truth_flows(cap) if f["key_update"]}
    flows = [f for f in records["flows"] if (f["server_name"], f["transport"], f["dst_port"]) in updated
             and f["requests"] == 2]
    assert len(flows) == len(updated) == 2
    inspected = {d["flow_id"] for d in records.get("detections", [])}
    assert {f["flow_id"] for f in flows} <= inspected


# ---------------------------------------------------------------------------------------------- without keys

def test_without_keys_the_same_flows_bytes_and_names_are_encrypted_and_silent(cap: Capture,
                                                                              tmp_path: Path) -> None:
    keyed = {conn_key(f): f for f in records_of(cap, cap.keylog)["flows"]}
    records = records_of(cap)
    bare = {conn_key(f): f for f in records["flows"]}
    assert set(bare) == set(keyed)
    for key, f in bare.items():
        k = keyed[key]
        assert (f["bytes_out"], f["bytes_in"], f["dst_ip"], f["dst_port"]) == (
            k["bytes_out"], k["bytes_in"], k["dst_ip"], k["dst_port"]), key
        if f["dst_port"] in TLS_PORTS and k["requests"]:
            assert f["server_name"] == k["server_name"], key          # SNI (QUIC: from the Initial)
            assert not f["inspected"], f
            if f["cross_border"]:
                assert (f["visibility"], f["uninspected_reason"]) == ("encrypted", "no_secrets"), f
        if f["dst_port"] == 80 and f["cross_border"]:
            assert f["visibility"] == "plaintext" and f["requests"] == k["requests"], f
    encrypted = {f["flow_id"] for f in records["flows"] if f["dst_port"] in TLS_PORTS}
    assert not [d for d in records.get("detections", []) if d["flow_id"] in encrypted]
    assert not [v for v in records.get("pi_values", []) if v["flow_id"] in encrypted]


def test_selfcheck_without_keys_reports_the_encrypted_bytes_and_only_cleartext_findings(
        cap: Capture, tmp_path: Path) -> None:
    report = selfcheck(cap.pcapng, tmp_path / "report")
    coverage = report["observed"]["coverage"]
    assert coverage["by_visibility"]["decrypted"] == 0 and coverage["by_visibility"]["encrypted"] > 0
    assert coverage["inspected_share"] < 0.5
    reasons = {r["reason"] for r in coverage["uninspected_by_reason"]}
    assert "no_secrets" in reasons and "decrypt_failed" not in reasons
    closed = {d["destination"] for d in coverage["uninspected_destinations"]
              if "no_secrets" in {r["reason"] for r in d["reasons"]}}
    named = {f["server_name"] for f in truth_flows(cap) if f["cross_border"] and f["tls"]}
    # beside the named exports, at most the truncated handshake's address (its SNI may be cut off)
    assert named <= closed and closed - named <= {plan.OVERSEAS_SG}, closed
    # only the cleartext h2c exports to the undeclared ad-metrics host can be seen
    assert {(f["check"], f["subject"]) for f in report["findings"]} == {
        ("undeclared_recipient", "collect.ad-metrics.example")}


# ---------------------------------------------------------------------------------------------- live

def test_the_live_agent_follows_the_growing_key_log_and_finds_exactly_what_was_sent(tmp_path: Path) -> None:
    """`egress-agent run --iface --keylog`: the clients write their secrets while the agent captures, so it
    must hold each flow's ciphertext until its keys arrive (tls.key_wait_s / key_wait_bytes)."""
    require_programs()
    with topology(tmp_path / "netns", sink=False) as t:
        spool, log = t.workdir / "spool", t.workdir / "agent.log"
        cfg = t.write_agent_config(enterprise_id=plan.ENTERPRISE_ID, live=LIVE)
        argv = [str(BIN / "egress-agent"), "run", "--iface", t.client_if, "--config", str(cfg), "--out",
                str(spool), "--keylog", str(t.workdir / "keys.log")]
        capture = capture_traffic(t, "mixed", agent_argv=argv, agent_log=log)
        agent = t.procs[-1]
        agent.send_signal(signal.SIGINT)
        assert agent.wait(timeout=60) == 0, log.read_text()[-3000:]
    assert "Traceback" not in log.read_text()
    flows = read_spool(spool)["flows"]
    assert summary(flows) == summary(truth_flows(capture))
    report = tmp_path / "report"
    filing = tmp_path / "filing.yaml"
    filing.write_text(json.dumps(plan.filing()), encoding="utf-8")
    r = subprocess.run([str(BIN / "egress-collector"), "selfcheck", "--records", str(spool), "--filing",
                        str(filing), "--out", str(report), "--format", "json"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stderr[-2000:]
    matches_truth(json.loads((report / "report.json").read_text(encoding="utf-8")),
                                capture.truth)


# ---------------------------------------------------------------------------------------------- the demo

def test_the_demo_content_in_cleartext_gives_the_findings_its_truth_promises(tmp_path: Path) -> None:
    """fixtures/pcaps/demo_tls.keyed-truth.json's expected findings and counts hold for the same messages sent
    in cleartext HTTP/1.1 through today's pipeline, so the decrypted demo has a right answer to meet."""
    require_programs()
    with topology(tmp_path / "netns", sink=False) as t:
        capture = capture_traffic(t, "demo_plain")
    demo_truth = json.loads((FIXTURES / "pcaps" / "demo_tls.keyed-truth.json").read_text(encoding="utf-8"))
    report = selfcheck(capture.pcapng, tmp_path / "report", filing=ROOT / "configs" / "filings" / "demo.yaml")
    assert {(f["check"], f["scenario_id"], f["subject"]) for f in report["findings"]} == {
        (f["check"], f["scenario_id"], f["subject"]) for f in demo_truth["expected_findings"]}
    dests = {d["server_name"]: d for d in report["observed"]["destinations"]}
    assert set(dests) == set(demo_truth["destinations"])
    for name, want in demo_truth["destinations"].items():
        assert (dests[name]["persons_nonsensitive"], dests[name]["persons_sensitive"]) == (
            want["persons_nonsensitive"], want["persons_sensitive"]), name
        assert {ft: v["distinct_values"] for ft, v in dests[name]["field_types"].items()} == {
            ft: v["distinct_values"] for ft, v in want["field_types"].items()}, name
