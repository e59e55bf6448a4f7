"""Smoke test of bench/throughput.py: a 1 MB capture is a valid pcap with the intended traffic mix.

The benchmark itself (agent and tshark runs) is not part of the test run; nothing here times anything.
"""

from __future__ import annotations

import ipaddress
import socket
from collections import Counter
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
