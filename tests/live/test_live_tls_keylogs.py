"""Broken key logs, 0-RTT and a truncated handshake on the live TLS capture (issue 11: "counted
correctly, never a crash, never garbage detections"). The capture and its key log: tests/live/tls_traffic.py
through the `tls_capture` fixture; helpers and request counting: tests/live/tls_checks.py.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import BIN
from tests.live import tls_oracle, tls_sessions
from tests.live.tls_checks import (
    agent_run,
    conn_key,
    handshakes,
    matches_truth,
    read_spool,
    records_of,
    selfcheck,
    tls_flows,
    tls_visibility,
)
from tests.live.tls_traffic import Capture

pytestmark = pytest.mark.root


@pytest.fixture
def cap(tls_capture: Capture) -> Capture:
    return tls_capture


def test_0rtt_without_its_secret_opens_the_rest_of_the_connection(cap: Capture, tmp_path: Path) -> None:
    """TLS 1.3 0-RTT whose CLIENT_EARLY_TRAFFIC_SECRET is not in the key log: the early data (a GET) is
    skipped, the handshake and the 1-RTT POST after it are decrypted; nothing else changes."""
    no_early = tls_oracle.drop_labels(cap.keylog, {"CLIENT_EARLY_TRAFFIC_SECRET"}, tmp_path / "no-early.keys")
    records = agent_run(cap.pcapng, tmp_path / "spool", no_early)
    zero_rtt = [f for f in records["flows"] if f["dst_port"] == tls_sessions.ZERO_RTT_PORT and f["requests"]]
    assert [(f["requests"], f["visibility"], f["server_name"]) for f in zero_rtt] == [
        (1, "decrypted", tls_sessions.PARTNER)]
    assert zero_rtt[0]["flow_id"] in {d["flow_id"] for d in records.get("detections", [])}
    matches_truth(selfcheck(cap.pcapng, tmp_path / "report", no_early), cap.truth)



def test_a_partial_key_log_opens_exactly_the_connections_it_has_secrets_for(cap: Capture,
                                                                             tmp_path: Path) -> None:
    # the connections that carried requests (not the one that only fetched a session ticket)
    carried = {k for k, seen in tls_oracle.requests_by_connection(cap.pcapng, cap.keylog).items()
               if seen.requests}
    randoms = {k: r for k, r in tls_oracle.client_randoms(cap.pcapng).items() if k in carried}
    keep = dict(sorted(randoms.items())[::2])                 # every other connection
    partial = tls_oracle.keep_randoms(cap.keylog, set(keep.values()), tmp_path / "partial.keys")
    records = agent_run(cap.pcapng, tmp_path / "spool", partial)
    flows = {conn_key(f): f for f in records["flows"]}
    for key in randoms:
        f = flows[key]
        if not f["cross_border"]:
            continue
        if key in keep:
            assert f["visibility"] == "decrypted", f
        else:
            assert (f["visibility"], f["uninspected_reason"]) == ("encrypted", "no_secrets"), f
    opened = {flows[k]["flow_id"] for k in keep}
    opened |= {f["flow_id"] for f in flows.values() if f["dst_port"] == 80}
    assert {d["flow_id"] for d in records.get("detections", [])} <= opened


def test_wrong_secrets_fail_their_tags_and_give_no_detections(cap: Capture, tmp_path: Path) -> None:
    wrong = tls_oracle.wrong_secrets(cap.keylog, tmp_path / "wrong.keys")
    records = agent_run(cap.pcapng, tmp_path / "spool", wrong)
    tls = handshakes(cap, records["flows"])
    assert tls and all(f["visibility"] == "encrypted" for f in tls), tls
    assert {f["uninspected_reason"] for f in tls} == {"decrypt_failed"}
    ids = {f["flow_id"] for f in tls}
    assert not [d for d in records.get("detections", []) if d["flow_id"] in ids]
    failed = [a for a in records.get("anomalies", []) if a["flow_id"] in ids]
    assert failed and {a["name"] for a in failed} >= {"decrypt_failed"}


def test_a_key_log_of_another_capture_counts_as_no_secrets(cap: Capture, tmp_path: Path) -> None:
    other = tls_oracle.other_capture(cap.keylog, tmp_path / "other.keys")
    records = agent_run(cap.pcapng, tmp_path / "spool", other)
    bare = records_of(cap)
    assert tls_visibility(records["flows"]) == tls_visibility(bare["flows"])
    assert {f["uninspected_reason"] for f in handshakes(cap, records["flows"])} == {"no_secrets"}
    assert len(records.get("detections", [])) == len(bare.get("detections", []))


def test_a_key_log_without_application_secrets_opens_no_application_data(cap: Capture,
                                                                           tmp_path: Path) -> None:
    """Handshake secrets only (what a key log cut off mid-connection holds): the names and ALPN may come
    from the decrypted handshake, the requests cannot."""
    application = {"CLIENT_TRAFFIC_SECRET_0", "SERVER_TRAFFIC_SECRET_0", "CLIENT_EARLY_TRAFFIC_SECRET",
                   "CLIENT_RANDOM", "CLIENT_TRAFFIC_SECRET_N", "SERVER_TRAFFIC_SECRET_N"}
    cut = tls_oracle.drop_labels(cap.keylog, application, tmp_path / "cut.keys")
    records = agent_run(cap.pcapng, tmp_path / "spool", cut)
    tls = tls_flows(records["flows"])
    assert not [f for f in tls if f["visibility"] == "decrypted" or f["inspected"]]
    ids = {f["flow_id"] for f in tls}
    assert not [d for d in records.get("detections", []) if d["flow_id"] in ids]


def test_the_truncated_handshake_is_one_flow_with_no_request(cap: Capture, tmp_path: Path) -> None:
    """Runs today too: the cut ClientHello is counted, never a crash, with or without the key log."""
    port = set(tls_oracle.client_randoms(cap.pcapng))
    for keylogs in ((), (cap.keylog,)):
        out = tmp_path / f"spool{len(keylogs)}"
        argv = [str(BIN / "egress-agent"), "run", "--pcap", str(cap.pcapng), "--out", str(out)]
        if keylogs:
            argv += ["--keylog", str(cap.keylog)]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=tmp_path)
        if r.returncode == 2 and "--keylog" in r.stderr:
            continue                  # the flag lands with the decryption wiring
        assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-2000:]
        flows = read_spool(out)["flows"]
        cut = [f for f in flows if f["dst_port"] == 443 and conn_key(f) not in port]
        assert len(cut) == 1 and cut[0]["requests"] == 0 and not cut[0]["inspected"], cut

