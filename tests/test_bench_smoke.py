"""Smoke tests of bench/throughput.py (a 1 MB capture is a valid pcap with the intended traffic mix) and
bench/decrypt.py (a 1 MB TLS capture made on loopback runs through both tools and the report's fields are
sane; needs root and dumpcap, as CI has).

Nothing here asserts a time: the figures are the benchmark's output, not a test's.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import socket
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from types import ModuleType

import dpkt
import pytest

from tests.conftest import load_script

BENCH = Path(__file__).resolve().parent.parent / "bench" / "throughput.py"


@pytest.fixture(scope="module")
def throughput() -> ModuleType:
    return load_script(BENCH, "bench_throughput")


def test_one_megabyte_capture_has_the_expected_mix(throughput: ModuleType, tmp_path: Path) -> None:
    path = tmp_path / "mixed.pcap"
    stats = throughput.generate(path, 1.0, seed=3)
    size = path.stat().st_size
    assert size == stats.bytes and 1_000_000 <= size < 1_100_000

    domestic = [ipaddress.ip_network(f"{fmt.rsplit('.', 1)[0]}.0/24") for fmt in throughput.DOMESTIC]
    kinds: Counter[str] = Counter()
    snis, posts, dns, last_ts, packets = 0, 0, 0, 0.0, 0
    with path.open("rb") as f:
        reader = dpkt.pcap.Reader(f)
        assert reader.datalink() == dpkt.pcap.DLT_EN10MB
        for ts, buf in reader:
            packets += 1
            assert ts >= last_ts
            last_ts = ts
            ip = dpkt.ethernet.Ethernet(buf).data
            assert isinstance(ip, dpkt.ip.IP) and ip.len == len(buf) - 14
            l4 = ip.data
            if isinstance(l4, dpkt.udp.UDP):
                dns += l4.dport == 53
                continue
            server = ip.dst if l4.dport in (80, 443) else ip.src
            addr = ipaddress.ip_address(socket.inet_ntoa(server))
            port = min(l4.sport, l4.dport)
            kind = "domestic" if any(addr in n for n in domestic) else ("http" if port == 80 else "tls")
            kinds[kind] += len(buf)
            data = bytes(l4.data)
            snis += data.startswith(b"\x16\x03\x01") and b".example" in data
            posts += data.startswith(b"POST ")
    assert packets == stats.packets
    total = sum(kinds.values())
    assert kinds["tls"] / total > 0.6, kinds
    assert 0.02 < kinds["http"] / total < 0.12, kinds
    assert 0.03 < kinds["domestic"] / total < 0.25, kinds
    assert snis > 10 and posts > 5 and dns > 0


def test_generation_is_deterministic(throughput: ModuleType, tmp_path: Path) -> None:
    a, b = tmp_path / "a.pcap", tmp_path / "b.pcap"
    throughput.generate(a, 0.2, seed=5)
    throughput.generate(b, 0.2, seed=5)
    assert a.read_bytes() == b.read_bytes()


def test_table_formats_skipped_tools(throughput: ModuleType) -> None:
    results = [throughput.RunResult("egress-agent", [], None, None, None, None, "skipped: not found"),
               throughput.RunResult("tshark", ["tshark"], 0, 2.0, 10.0, 50.0)]
    table = throughput.format_table(results, 20.0)
    assert "skipped: not found" in table and "tshark" in table and "ratio" not in table


# -- bench/decrypt.py --------------------------------------------------------------------------------------

DECRYPT = BENCH.parent / "decrypt.py"


@pytest.fixture(scope="module")
def decrypt() -> ModuleType:
    return load_script(DECRYPT, "bench_decrypt")


def test_decrypt_bench_runs_on_a_small_capture(decrypt: ModuleType, tmp_path: Path) -> None:
    """One megabyte of TLS through both tools: tshark finds every request the clients sent (so the capture
    and its key log are right), and the agent decrypts the same requests per connection — or, while it has
    no --keylog, none, and says so."""
    reason = decrypt.tls_capture.check_can_capture() or (None if shutil.which("tshark") else "tshark absent")
    if reason:
        pytest.skip(reason)
    cache, out = tmp_path / "cache", tmp_path / "decrypt.json"
    args = ["--size", "1", "--cache-dir", str(cache), "--json", str(out), "--plaintext-baseline"]
    assert decrypt.main(args) == 0
    doc = json.loads(out.read_text())

    capture, keylog = Path(doc["capture"]["pcap"]), Path(doc["capture"]["keylog"])
    assert capture.parent == keylog.parent == cache
    assert doc["capture"]["capture_bytes"] == capture.stat().st_size > 500_000
    assert keylog.stat().st_mode & 0o077 == 0, "a key log is a secret: owner-only"
    assert "CLIENT_TRAFFIC_SECRET_0" in keylog.read_text() and "CLIENT_RANDOM" in keylog.read_text()
    sent = doc["capture"]["requests_sent"]
    assert set(doc["capture"]["requests"]) == {v[0] for v in decrypt.tls_capture.VARIANTS}
    assert "dropped on interface" in doc["capture"]["dumpcap"]

    agent, tshark = doc["results"]
    assert (agent["tool"], tshark["tool"]) == ("egress-agent", "tshark")
    assert agent["returncode"] == tshark["returncode"] == 0
    assert agent["mb_per_s"] > 0 and tshark["mb_per_s"] > 0
    assert doc["ratio_agent_tshark"] > 0 and doc["ratio_agent_tshark_cpu"] > 0

    req = doc["requests"]
    assert req["sent"] == req["tshark"] == sent > 0
    assert req["connections"] >= len(doc["capture"]["requests"])
    if doc["agent_keylog"]:
        assert req["agent"] == req["tshark"] and req["agree"]
    else:
        assert req["agent"] == 0 and "decrypted" not in req["agent_flows_by_visibility"]
    assert sum(req["agent_flows_by_visibility"].values()) >= req["connections"]

    prof = doc["profile"]
    assert prof["total_s"] > 0 and 0 < prof["packet_loop_share"] <= 1
    assert prof["by_module"] and prof["top"] and all(0 <= share <= 1 for _, share, _ in prof["top"])
    base = doc["plaintext_baseline"]
    plain = Path(base["capture"])
    assert plain.parent == cache and base["capture_bytes"] == plain.stat().st_size
    assert [r["tool"] for r in base["results"]] == ["egress-agent", "tshark"]
    assert all(r["returncode"] == 0 and r["mb_per_s"] > 0 for r in base["results"])

    # A second run reuses the cached capture; the flag makes it again.
    stamp = capture.stat().st_mtime_ns
    assert decrypt.main(["--size", "1", "--cache-dir", str(cache), "--generate-only"]) == 0
    assert capture.stat().st_mtime_ns == stamp
    assert decrypt.main(["--size", "1", "--cache-dir", str(cache), "--generate-only", "--regenerate"]) == 0
    assert capture.stat().st_mtime_ns != stamp


def test_decrypt_compares_requests_per_connection(decrypt: ModuleType) -> None:
    tshark = Counter({40001: 3, 40002: 5, 40003: 1})
    flows = [{"src_port": 40001, "requests": 3, "visibility": "decrypted", "app": "tls"},
             {"src_port": 40002, "requests": 4, "visibility": "decrypted", "app": "http2"},
             {"src_port": 40003, "requests": 0, "visibility": "encrypted", "app": "tls"},
             {"src_port": 40004, "requests": 2, "visibility": "plaintext", "app": "http"}]
    req = decrypt.compare(9, tshark, flows)
    assert (req.tshark, req.agent, req.connections, req.connections_agree) == (9, 7, 3, 1)
    assert not req.agree
    assert req.agent_flows_by_visibility == {"decrypted": 2, "encrypted": 1, "plaintext": 1}
    # An agent from before issue 11 writes no visibility column: its TLS flows were not opened.
    old = decrypt.compare(9, tshark, [{"src_port": 40001, "requests": 0, "app": "tls"}])
    assert old.agent == 0 and old.agent_flows_by_visibility == {"encrypted": 1}


def test_decrypt_report_says_when_the_agent_could_not_decrypt(decrypt: ModuleType) -> None:
    doc = {"capture": {"capture_bytes": 2_000_000, "requests_sent": 10, "requests": {"h2-tls13": 10},
                       "dumpcap": "Packets captured: 40"},
           "agent_keylog": False,
           "results": [asdict(decrypt.RunResult("egress-agent", [], 0, 1.0, 2.0, 100.0)),
                       asdict(decrypt.RunResult("tshark", [], 0, 2.0, 1.0, 100.0))],
           "requests": {"sent": 10, "tshark": 10, "agent": 0, "connections": 2, "connections_agree": 0,
                        "agent_flows_by_visibility": {"encrypted": 2}},
           "profile": {"total_s": 1.0, "packet_loop_share": 0.5, "by_module": [["agent/flows.py", 0.5]],
                       "top": [["agent/flows.py:1(process)", 0.5, 10]]},
           "plaintext_baseline": None}
    report = decrypt.format_report(doc)
    assert "no --keylog option" in report and "ratio agent/tshark: 2.00x" in report
    assert "tshark 10, agent 0" in report and "agent/flows.py 50%" in report
