"""The committed fixture captures: reproducible, documented, small, and their truth files hold no raw PI.

Also recounts bytes_out and requests from the captures with dpkt (an implementation independent of the
generator's own bookkeeping), so a generator bug cannot silently bless a wrong truth file.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import socket
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import dpkt
import pytest

PCAPS = Path(__file__).resolve().parent.parent / "fixtures" / "pcaps"
GENERATED = ["demo.pcap", "demo.truth.json", "quirks.pcap", "quirks.pcapng", "quirks.pcap.gz",
             "quirks.truth.json", "catalog.pcap", "catalog.truth.json"]
TRUTHS = ["demo.truth.json", "quirks.truth.json", "catalog.truth.json"]


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("regen")
    subprocess.run([sys.executable, str(PCAPS / "generate.py"), "--out", str(out), "-q"], check=True)
    return out


def _truth(name: str) -> dict:
    return json.loads((PCAPS / name).read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", GENERATED)
def test_generator_is_byte_identical(regenerated: Path, name: str) -> None:
    assert (regenerated / name).read_bytes() == (PCAPS / name).read_bytes(), (
        f"{name} differs from a fresh run of fixtures/pcaps/generate.py; regenerate and commit it")


def test_generator_writes_nothing_else(regenerated: Path) -> None:
    assert sorted(p.name for p in regenerated.iterdir()) == sorted(GENERATED)


def test_every_fixture_file_is_documented() -> None:
    readme = (PCAPS / "README.md").read_text(encoding="utf-8")
    files = [p.name for p in PCAPS.iterdir() if p.is_file() and p.name != "README.md"]
    missing = [n for n in files if f"`{n}`" not in readme]
    assert not missing, f"not described in fixtures/pcaps/README.md: {missing}"


@pytest.mark.parametrize("name", [n for n in GENERATED if not n.endswith(".json")])
def test_captures_are_small(name: str) -> None:
    assert (PCAPS / name).stat().st_size < 300_000


@pytest.mark.parametrize("name", TRUTHS)
def test_truth_holds_no_raw_pi(name: str) -> None:
    text = (PCAPS / name).read_text(encoding="utf-8")
    assert "@" not in text
    assert not re.search(r"(?<![0-9])(?:\+?86)?1[3-9][0-9]{9}(?![0-9])", text), "mobile-like number"
    assert not re.search(r"(?<![0-9A-Za-z])[0-9]{17}[0-9Xx](?![0-9A-Za-z])", text), "resident-ID-like value"
    # Names and addresses are Chinese; the truth is written in English only.
    assert not re.search(r"[\u3400-\u9fff]", text), "CJK text (a name or address?)"


def test_demo_truth_plants_what_the_filing_check_needs() -> None:
    dests = _truth("demo.truth.json")["destinations"]
    of = dests["api.partner-logistics.example"]
    assert of["country"] == "SG"
    assert set(of["field_types"]) == {"person_name", "mobile_cn", "postal_address"}
    assert of["persons_sensitive"] == 0 and of["persons_nonsensitive"] <= 1000
    crm = dests["sync.crm-vendor.example"]
    assert crm["country"] == "US" and "resident_id_cn" in crm["field_types"]
    assert crm["persons_nonsensitive"] > 20 and crm["persons_sensitive"] > 0
    ad = dests["collect.ad-metrics.example"]
    assert ad["cross_border"] and set(ad["field_types"]) == {"mobile_cn", "email"}
    assert dests["api.domestic-crm.example"]["cross_border"] is False
    assert {d["app"] for d in dests.values()} == {"http", "tls"}


def test_declared_ips_have_the_countries_the_truth_claims() -> None:
    geoip2fast = pytest.importorskip("geoip2fast")
    # The IPv6 data file holds the IPv4 ranges too; it is the one the agent loads (agent/destinations.py).
    geo = geoip2fast.GeoIP2Fast(geoip2fast_data_file="geoip2fast-ipv6.dat.gz")
    for name in TRUTHS:
        for server, d in _truth(name)["destinations"].items():
            if d["country"] is not None:
                assert geo.lookup(d["dst_ip"]).country_code == d["country"], server


def test_catalog_truth_plants_what_issue_3_needs() -> None:
    dests = _truth("catalog.truth.json")["destinations"]
    crm = dests["crm.linked.example"]
    # Linked records: 142 records, 65 persons (60 identified, 5 by name + date of birth only).
    assert (crm["persons"], crm["persons_nonsensitive"], crm["persons_sensitive"]) == (65, 65, 60)
    assert sum(crm["records"].values()) > 2 * crm["persons"]
    assert {ft: v["distinct_values"] for ft, v in crm["field_types"].items()} == {
        "person_name": 65, "resident_id_cn": 60, "mobile_cn": 60, "email": 15, "date_of_birth": 5}
    expected = {"crm.linked.example": [], "his.hospital-partner.example": ["28"],
                "lab.genomics.example": ["27"], "telemetry.env-monitor.example": ["6"],
                "shop.catalog.example": [], "api.domestic-health.example": ["28"]}
    assert {name: d["important_subcategories"] for name, d in dests.items()} == expected
    assert "health_medical" in dests["his.hospital-partner.example"]["field_types"]
    assert "genetic" in dests["lab.genomics.example"]["field_types"]
    for name in ("telemetry.env-monitor.example", "shop.catalog.example"):
        assert dests[name]["field_types"] == {} and dests[name]["persons"] == 0, name
    assert dests["shop.catalog.example"]["expect_no_important"] is True
    assert [n for n, d in dests.items() if not d["cross_border"]] == ["api.domestic-health.example"]


# ---------------------------------------------------------------------------------------------- recount

def _frames(path: Path) -> list[tuple[float, bytes]]:
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    reader = dpkt.pcapng.Reader if path.suffix == ".pcapng" else dpkt.pcap.Reader
    return [(ts, bytes(buf)) for ts, buf in reader(io.BytesIO(data))]


def _ip_layer(frame: bytes) -> dpkt.ip.IP | dpkt.ip6.IP6 | None:
    eth = dpkt.ethernet.Ethernet(frame)   # dpkt strips 802.1Q and QinQ tags itself
    return eth.data if isinstance(eth.data, dpkt.ip.IP | dpkt.ip6.IP6) else None


def _recount(path: Path) -> dict[str, tuple[int, int]]:
    """dst ip -> (distinct client payload bytes by sequence space, HTTP request lines) for client->server."""
    ranges: dict[tuple, list[tuple[int, int]]] = defaultdict(list)
    isn: dict[tuple, int] = {}
    frags: dict[tuple, dict[int, bytes]] = defaultdict(dict)
    requests: dict[str, int] = defaultdict(int)
    for _, frame in _frames(path):
        ip = _ip_layer(frame)
        if ip is None:
            continue
        if isinstance(ip, dpkt.ip.IP) and (ip.mf or ip.offset):
            key = (ip.src, ip.dst, ip.id)
            frags[key][ip.offset] = bytes(ip.data)
            parts = frags[key]
            if ip.mf or 0 not in parts:
                continue
            blob = b"".join(parts[k] for k in sorted(parts))   # test data has no gaps: complete on last
            tcp = dpkt.tcp.TCP(blob)
        else:
            tcp = ip.data
        if not isinstance(tcp, dpkt.tcp.TCP) or tcp.dport not in (80, 443):
            continue
        fam = socket.AF_INET6 if isinstance(ip, dpkt.ip6.IP6) else socket.AF_INET
        dst = socket.inet_ntop(fam, ip.dst)
        conn = (ip.src, tcp.sport, dst)
        if tcp.flags & dpkt.tcp.TH_SYN:
            isn[conn] = tcp.seq + 1
        elif tcp.data:
            off = (tcp.seq - isn[conn]) % (1 << 32)
            ranges[conn].append((off, off + len(tcp.data)))
            requests[dst] += len(re.findall(rb"(?:^|\r\n\r\n|})(?:POST|GET) /", bytes(tcp.data)))
    totals: dict[str, int] = defaultdict(int)
    for (_, _, dst), spans in ranges.items():
        end, covered = -1, 0
        for a, b in sorted(spans):
            if a > end:
                covered += b - a
            elif b > end:
                covered += b - end
            end = max(end, b)
        totals[dst] += covered
    return {dst: (totals[dst], requests[dst]) for dst in totals}


@pytest.mark.parametrize("capture, truth", [("demo.pcap", "demo.truth.json"),
                                            ("quirks.pcap", "quirks.truth.json"),
                                            ("quirks.pcapng", "quirks.truth.json"),
                                            ("quirks.pcap.gz", "quirks.truth.json"),
                                            ("catalog.pcap", "catalog.truth.json")])
def test_truth_bytes_out_matches_an_independent_recount(capture: str, truth: str) -> None:
    counted = _recount(PCAPS / capture)
    for server, d in _truth(truth)["destinations"].items():
        got_bytes, _ = counted.get(d["dst_ip"], (0, 0))
        assert got_bytes == d["bytes_out"], server


def test_truth_requests_match_request_lines_in_simple_flows() -> None:
    # Only where every request line starts a segment (the split/overlap quirks would need reassembly).
    counted = _recount(PCAPS / "quirks.pcap")
    for server in ("keepalive", "pipeline", "gzip", "deflate", "vlan", "qinq", "ipv6", "gbk-form"):
        d = _truth("quirks.truth.json")["destinations"][f"{server}.quirks.example"]
        assert counted[d["dst_ip"]][1] == d["requests"], server
    # Every catalog request goes out in order on a keep-alive connection, so all of them count here.
    counted = _recount(PCAPS / "catalog.pcap")
    for server, d in _truth("catalog.truth.json")["destinations"].items():
        assert counted[d["dst_ip"]][1] == d["requests"], server


def test_quirks_formats_hold_the_same_frames() -> None:
    base = _frames(PCAPS / "quirks.pcap")
    for other in ("quirks.pcapng", "quirks.pcap.gz"):
        frames = _frames(PCAPS / other)
        assert [f for _, f in frames] == [f for _, f in base], other
        assert all(abs(a - b) < 1e-5 for (a, _), (b, _) in zip(frames, base, strict=True)), other


# ------------------------------------------------------------------------------------------- catalog payloads

def _payloads(path: Path) -> dict[str, bytes]:
    """dst ip -> client payload bytes in capture order (enough for captures sent strictly in order)."""
    out: dict[str, bytes] = defaultdict(bytes)
    for _, frame in _frames(path):
        ip = _ip_layer(frame)
        if ip is not None and isinstance(ip.data, dpkt.tcp.TCP) and ip.data.dport == 80:
            out[socket.inet_ntop(socket.AF_INET, ip.dst)] += bytes(ip.data.data)
    return out


def _hj212_crc() -> Callable[[bytes], int]:
    sys.path.insert(0, str(PCAPS))
    try:
        from scenario_catalog import hj212_crc
    finally:
        sys.path.remove(str(PCAPS))
    return hj212_crc


def test_the_generators_hj212_crc_reproduces_the_standards_example() -> None:
    # HJ 212-2017's own sample packet: ##0101QN=…&&1C80 (length 101, CRC 1C80). A second copy of the CRC
    # code in the test would only agree with itself; the published example anchors it.
    data = (b"QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;Flag=5;"
            b"CP=&&RtdInterval=30&&")
    assert len(data) == 101 and _hj212_crc()(data) == 0x1C80


def test_catalog_hj212_packets_have_valid_length_and_crc() -> None:
    crc = _hj212_crc()

    d = _truth("catalog.truth.json")["destinations"]["telemetry.env-monitor.example"]
    body = _payloads(PCAPS / "catalog.pcap")[d["dst_ip"]]
    packets = re.findall(rb"##(\d{4})(QN=[^\r]*?&&)([0-9A-F]{4})\r\n", body)
    assert len(packets) == d["hj212_packets"]
    for length, data, check in packets:
        assert int(length) == len(data) and int(check, 16) == crc(data)


def test_catalog_resident_ids_carry_valid_check_digits() -> None:
    ric = pytest.importorskip("stdnum.cn.ric")
    ids = set()
    for data in _payloads(PCAPS / "catalog.pcap").values():
        ids.update(re.findall(rb"(?<![0-9])[1-8][0-9]{16}[0-9X](?![0-9A-Za-z])", data))
    assert len(ids) == 60 + 10 + 3 + 3
    assert all(ric.calc_check_digit(i.decode()) == i.decode()[-1] for i in ids)
