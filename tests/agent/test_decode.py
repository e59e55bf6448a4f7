"""agent.decode: every supported encapsulation gives the same Packet; bad input gives None + an anomaly."""

from __future__ import annotations

import dataclasses
import shutil
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.all import (
    GRE,
    IP,
    PPP,
    TCP,
    UDP,
    CookedLinux,
    Dot1AD,
    Dot1Q,
    Ether,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    PPPoE,
    fragment,
    fragment6,
    raw,
)

from agent.anomalies import AnomalyError, AnomalySink
from agent.capture import open_capture
from agent.decode import Decoder, Packet
from tests.conftest import REAL_PCAPS

BODY = b"POST /upload HTTP/1.1\r\nHost: example.com\r\n\r\n"
V4 = IP(src="10.1.2.3", dst="203.0.113.9") / TCP(sport=40000, dport=80, flags="PA", seq=1000) / BODY
V6 = IPv6(src="fd00::1", dst="2001:db8::9") / TCP(sport=40000, dport=80, flags="PA", seq=1000) / BODY
V4_UDP = IP(src="10.1.2.3", dst="203.0.113.9") / UDP(sport=5353, dport=53) / b"dns-query"
ETH = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
EXPECT_V4 = ("10.1.2.3", "203.0.113.9", 6, 40000, 80, 0x18, 1000, BODY, 0)
EXPECT_V6 = ("fd00::1", "2001:db8::9", 6, 40000, 80, 0x18, 1000, BODY, 0)


def sll2(ethertype: int, payload: bytes) -> bytes:
    # LINKTYPE_LINUX_SLL2: protocol, reserved, ifindex, ARPHRD, packet type, address length, address[8]
    return struct.pack("!HHIHBB8s", ethertype, 0, 2, 1, 4, 6, b"\x02\0\0\0\0\x01\0\0") + payload


def fields(p: Packet | None) -> tuple | None:
    return None if p is None else dataclasses.astuple(p)[1:]


ENCAPSULATIONS: dict[str, tuple[int, Callable[[], bytes], tuple]] = {
    "ethernet_ipv4_tcp_fast_path": (1, lambda: raw(ETH / V4), EXPECT_V4),
    "ethernet_ipv4_udp_fast_path": (1, lambda: raw(ETH / V4_UDP),
                                    ("10.1.2.3", "203.0.113.9", 17, 5353, 53, 0, 0, b"dns-query", 0)),
    "ethernet_padding_is_not_payload": (1, lambda: raw(ETH / IP(src="10.1.2.3", dst="203.0.113.9")
                                                       / TCP(sport=1, dport=2, flags="A", seq=5)) + b"\0" * 6,
                                        ("10.1.2.3", "203.0.113.9", 6, 1, 2, 0x10, 5, b"", 0)),
    "ipv4_with_options": (1, lambda: raw(ETH / IP(src="10.1.2.3", dst="203.0.113.9", options=b"\x01" * 4)
                                         / V4[TCP]), EXPECT_V4),
    "vlan_802_1q": (1, lambda: raw(ETH / Dot1Q(vlan=10) / V4), EXPECT_V4),
    "qinq_802_1ad_over_802_1q": (1, lambda: raw(ETH / Dot1AD(vlan=100) / Dot1Q(vlan=10) / V4), EXPECT_V4),
    "qinq_double_802_1q": (1, lambda: raw(ETH / Dot1Q(vlan=100) / Dot1Q(vlan=10) / V4), EXPECT_V4),
    "pppoe_session_ipv4": (1, lambda: raw(ETH / PPPoE(sessionid=7) / PPP(proto=0x0021) / V4), EXPECT_V4),
    "pppoe_session_ipv6_over_qinq": (1, lambda: raw(ETH / Dot1AD(vlan=100) / Dot1Q(vlan=10)
                                                    / PPPoE(sessionid=7) / PPP(proto=0x0057) / V6),
                                     EXPECT_V6),
    "gre_transparent_ethernet": (1, lambda: raw(ETH / IP(src="192.0.2.1", dst="192.0.2.2") / GRE(proto=0x6558)
                                                / ETH / V4), EXPECT_V4),
    "linux_sll": (113, lambda: raw(CookedLinux(proto=0x0800) / V4), EXPECT_V4),
    "linux_sll_ipv6": (113, lambda: raw(CookedLinux(proto=0x86DD) / V6), EXPECT_V6),
    "linux_sll2": (276, lambda: sll2(0x0800, raw(V4)), EXPECT_V4),
    "linux_sll2_vlan": (276, lambda: sll2(0x8100, raw(Dot1Q(vlan=3) / V4)), EXPECT_V4),
    "raw_ip_101_ipv4": (101, lambda: raw(V4), EXPECT_V4),
    "raw_ip_101_ipv6": (101, lambda: raw(V6), EXPECT_V6),
    "raw_ip_12": (12, lambda: raw(V4), EXPECT_V4),
    "raw_ip_14": (14, lambda: raw(V4), EXPECT_V4),
    "raw_ipv4_228": (228, lambda: raw(V4), EXPECT_V4),
    "raw_ipv6_229": (229, lambda: raw(V6), EXPECT_V6),
    "bsd_null_little_endian_ipv4": (0, lambda: struct.pack("<I", 2) + raw(V4), EXPECT_V4),
    "bsd_null_darwin_ipv6": (0, lambda: struct.pack("<I", 30) + raw(V6), EXPECT_V6),
    "openbsd_loop_network_order": (108, lambda: struct.pack(">I", 2) + raw(V4), EXPECT_V4),
    "ethernet_ipv6": (1, lambda: raw(ETH / V6), EXPECT_V6),
    "ipv6_extension_headers": (1, lambda: raw(ETH / IPv6(src="fd00::1", dst="2001:db8::9")
                                              / IPv6ExtHdrHopByHop() / IPv6ExtHdrRouting()
                                              / IPv6ExtHdrDestOpt() / V6[TCP]), EXPECT_V6),
    "ipv6_atomic_fragment": (1, lambda: raw(ETH / IPv6(src="fd00::1", dst="2001:db8::9")
                                            / IPv6ExtHdrFragment(offset=0, m=0, id=9) / V6[TCP]), EXPECT_V6),
}


@pytest.mark.parametrize("case", ENCAPSULATIONS)
def test_every_encapsulation_decodes_to_the_same_packet(case: str) -> None:
    linktype, build, expected = ENCAPSULATIONS[case]
    pkt = Decoder(AnomalySink(strict=True)).decode(12.5, linktype, build())
    assert pkt is not None and pkt.ts == 12.5
    assert fields(pkt) == expected


def test_packet_is_a_frozen_slotted_record() -> None:
    pkt = Decoder(AnomalySink(strict=True)).decode(0.0, 1, raw(ETH / V4))
    assert pkt is not None and not hasattr(pkt, "__dict__")
    with pytest.raises(dataclasses.FrozenInstanceError):
        pkt.seq = 1  # type: ignore[misc]


def test_ipv4_fragments_out_of_order_are_reassembled() -> None:
    big = (IP(src="10.1.2.3", dst="203.0.113.9", id=77) / TCP(sport=40000, dport=80, flags="PA", seq=1)
           / (b"x" * 3000))
    frags = [raw(ETH / f) for f in fragment(big, fragsize=1000)]
    assert len(frags) == 4
    dec = Decoder(AnomalySink(strict=True))
    out = [dec.decode(1.0, 1, f) for f in reversed(frags)]
    assert out[:3] == [None, None, None]
    assert out[3] is not None and out[3].payload == b"x" * 3000 and out[3].dport == 80
    assert len(dec.frags) == 0


def test_ipv4_overlapping_fragments_first_copy_wins_and_is_reported() -> None:
    body = bytes(range(256)) * 4
    udp = raw(UDP(sport=1, dport=53) / body)
    hdr = dict(src="10.1.2.3", dst="203.0.113.9", id=5, proto=17)
    first = raw(ETH / IP(flags="MF", frag=0, **hdr) / udp[:512])
    evil = raw(ETH / IP(flags="MF", frag=32, **hdr) / (b"Z" * 256))  # tries to rewrite bytes 256..511
    rest = raw(ETH / IP(frag=64, **hdr) / udp[512:])
    sink = AnomalySink()
    dec = Decoder(sink)
    assert dec.decode(1.0, 1, first) is None and dec.decode(1.0, 1, evil) is None
    pkt = dec.decode(1.0, 1, rest)
    assert pkt is not None and pkt.payload == body
    assert sink.counts["fragment_overlap_inconsistent"] == 1


def test_ipv6_fragments_out_of_order_are_reassembled() -> None:
    big = (IPv6(src="fd00::1", dst="2001:db8::9") / IPv6ExtHdrFragment(id=1234) / UDP(sport=9, dport=53)
           / (b"y" * 2500))
    frags = [raw(ETH / f) for f in fragment6(big, 1000)]
    assert len(frags) >= 3
    dec = Decoder(AnomalySink(strict=True))
    out = [dec.decode(1.0, 1, f) for f in [frags[1], frags[-1], *frags[2:-1], frags[0]]]
    pkt = out[-1]
    assert out[:-1] == [None] * (len(frags) - 1)
    assert pkt is not None and (pkt.src, pkt.proto, pkt.payload) == ("fd00::1", 17, b"y" * 2500)


def test_incomplete_fragments_time_out_with_an_anomaly() -> None:
    big = IP(src="10.1.2.3", dst="203.0.113.9", id=78) / UDP(sport=1, dport=2) / (b"x" * 3000)
    first = raw(ETH / fragment(big, fragsize=1000)[0])
    sink = AnomalySink()
    dec = Decoder(sink, fragment_timeout_s=30.0)
    assert dec.decode(100.0, 1, first) is None
    # The table is swept when fragments arrive (unfragmented traffic never pays for it).
    other = raw(ETH / fragment(IP(src="10.9.9.9", dst="203.0.113.9", id=79) / UDP() / (b"z" * 3000), 1000)[0])
    assert dec.decode(200.0, 1, other) is None
    assert len(dec.frags) == 1 and sink.counts["fragment_timeout"] == 1


def test_fragment_table_is_bounded() -> None:
    sink = AnomalySink()
    dec = Decoder(sink, max_fragments=8)
    for i in range(20):
        frame = raw(ETH / IP(src="10.1.2.3", dst="203.0.113.9", id=i, flags="MF", proto=17) / (b"x" * 16))
        assert dec.decode(1.0, 1, frame) is None
    assert len(dec.frags) == 8 and sink.counts["fragment_table_full"] == 12


@pytest.mark.parametrize("snaplen", [80, 60, 54], ids=["cut_in_payload", "cut_early_in_payload",
                                                        "cut_at_end_of_tcp_header"])
def test_snaplen_cut_payload_keeps_what_was_captured_and_counts_the_rest(snaplen: int) -> None:
    frame = raw(ETH / V4)
    pkt = Decoder(AnomalySink(strict=True)).decode(0.0, 1, frame[:snaplen])
    assert pkt is not None
    assert pkt.payload == BODY[:snaplen - 54]
    assert pkt.truncated == len(BODY) - (snaplen - 54)


def test_snaplen_cut_ipv6_payload_counts_missing_bytes() -> None:
    frame = raw(ETH / V6)
    pkt = Decoder(AnomalySink(strict=True)).decode(0.0, 1, frame[:-10])
    assert pkt is not None and pkt.truncated == 10 and pkt.payload == BODY[:-10]


MALFORMED = {
    "tcp_header_cut_by_snaplen": (1, lambda: raw(ETH / V4)[:44], "tcp", "truncated_header"),
    "tcp_options_cut_by_snaplen": (1, lambda: raw(ETH / IP(src="1.1.1.1", dst="2.2.2.2")
                                                  / TCP(options=[("MSS", 1460), ("NOP", None), ("NOP", None),
                                                                 ("SAckOK", b"")]))[:60],
                                   "tcp", "truncated_header"),
    "tcp_data_offset_below_five": (1, lambda: raw(ETH / IP(src="1.1.1.1", dst="2.2.2.2") / TCP(dataofs=3)),
                                   "tcp", "bad_data_offset"),
    "ipv4_header_length_below_twenty": (101, lambda: b"\x44" + raw(V4)[1:], "ip", "bad_header"),
    "ipv4_total_length_below_header": (101, lambda: raw(V4)[:2] + b"\x00\x10" + raw(V4)[4:], "ip",
                                       "bad_total_length"),
    "ipv4_header_cut": (1, lambda: raw(ETH / V4)[:24], "ip", "truncated_header"),
    "ipv6_header_cut": (229, lambda: raw(V6)[:30], "ip", "truncated_header"),
    "raw_ip_bad_version": (101, lambda: b"\x75" + raw(V4)[1:], "ip", "bad_version"),
    "ethernet_frame_too_short": (1, lambda: b"\x02" * 10, "link", "truncated_frame"),
    "udp_header_cut": (101, lambda: raw(V4_UDP)[:24], "udp", "truncated_header"),
    "sll_header_cut": (113, lambda: b"\0" * 10, "link", "truncated_frame"),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_input_gives_none_and_one_anomaly(case: str) -> None:
    linktype, build, layer, name = MALFORMED[case]
    sink = AnomalySink()
    assert Decoder(sink).decode(0.0, linktype, build()) is None
    assert [(r.layer, r.name) for r in sink.records] == [(layer, name)]
    with pytest.raises(AnomalyError):
        Decoder(AnomalySink(strict=True)).decode(0.0, linktype, build())


def test_unsupported_link_type_is_reported_once_per_link_type() -> None:
    sink = AnomalySink()
    dec = Decoder(sink)
    for _ in range(50):
        assert dec.decode(0.0, 163, b"\0" * 60) is None
        assert dec.decode(0.0, 284, b"\0" * 60) is None
    assert [(r.name, r.detail) for r in sink.records] == [("unsupported_linktype", "link type 163"),
                                                          ("unsupported_linktype", "link type 284")]


NOT_TRANSPORT = {
    "arp": (1, lambda: raw(Ether(type=0x0806) / (b"\x00\x01\x08\x00\x06\x04\x00\x01" + b"\0" * 20))),
    "icmp": (101, lambda: raw(IP(src="1.1.1.1", dst="2.2.2.2", proto=1) / (b"\x08\x00" * 8))),
    "pppoe_lcp": (1, lambda: raw(ETH / PPPoE(sessionid=7) / PPP(proto=0xC021) / b"\x01\x01\x00\x04")),
}


@pytest.mark.parametrize("case", NOT_TRANSPORT)
def test_traffic_without_tcp_or_udp_is_skipped_silently(case: str) -> None:
    linktype, build = NOT_TRANSPORT[case]
    sink = AnomalySink(strict=True)
    assert Decoder(sink).decode(0.0, linktype, build()) is None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(linktype=st.sampled_from([0, 1, 12, 101, 105, 108, 113, 127, 228, 229, 239, 276]),
       data=st.binary(max_size=120), prefix=st.sampled_from([b"", raw(ETH / V4)[:34], raw(ETH / V6)[:54]]))
def test_random_bytes_never_raise(linktype: int, data: bytes, prefix: bytes) -> None:
    Decoder(AnomalySink()).decode(0.0, linktype, prefix + data)


# -- a link layer that says how much it carries: its length wins over a larger IP length ----------------

def _pppoe_with_padding(inner: bytes, ip_extra: int, padding: bytes) -> bytes:
    # As in l2_pppoe-over-qinq: PPPoE's length is right, the IP length claims `ip_extra` bytes more, and
    # the frame carries that many bytes of padding after the datagram.
    pppoe = PPPoE(sessionid=7, len=2 + len(inner)) / PPP(proto=0x0021 if inner[0] >> 4 == 4 else 0x0057)
    if inner[0] >> 4 == 4:
        inner = inner[:2] + struct.pack("!H", len(inner) + ip_extra) + inner[4:]
    else:
        inner = inner[:4] + struct.pack("!H", len(inner) - 40 + ip_extra) + inner[6:]
    return raw(ETH / Dot1Q(vlan=3704) / Dot1Q(vlan=2474) / pppoe) + inner + padding


@pytest.mark.parametrize("inner", [raw(V4), raw(V6)], ids=["ipv4", "ipv6"])
def test_ip_length_beyond_the_pppoe_payload_is_cut_to_it_with_an_anomaly(inner: bytes) -> None:
    sink = AnomalySink()
    pkt = Decoder(sink).decode(0.0, 1, _pppoe_with_padding(inner, 6, b"\xee" * 6))
    assert pkt is not None and pkt.payload == BODY and pkt.truncated == 0
    assert [(r.layer, r.name) for r in sink.records] == [("ip", "ip_length_exceeds_link")]


def test_pppoe_padding_within_the_ip_length_is_not_an_anomaly() -> None:
    pkt = Decoder(AnomalySink(strict=True)).decode(0.0, 1, _pppoe_with_padding(raw(V4), 0, b"\0" * 6))
    assert pkt is not None and pkt.payload == BODY


def test_pppoe_cut_by_snaplen_is_truncation_not_an_anomaly() -> None:
    frame = raw(ETH / PPPoE(sessionid=7) / PPP(proto=0x0021) / V4)
    pkt = Decoder(AnomalySink(strict=True)).decode(0.0, 1, frame[:-10])
    assert pkt is not None and pkt.payload == BODY[:-10] and pkt.truncated == 10


def test_inner_ip_length_beyond_the_outer_datagram_is_cut_to_it_with_an_anomaly() -> None:
    inner = raw(V4)
    inner = inner[:2] + struct.pack("!H", len(inner) + 8) + inner[4:]
    sink = AnomalySink()
    pkt = Decoder(sink).decode(0.0, 101, raw(IP(src="192.0.2.1", dst="192.0.2.2", proto=4) / inner))
    assert pkt is not None and pkt.payload == BODY and pkt.truncated == 0
    assert [(r.layer, r.name) for r in sink.records] == [("ip", "ip_length_exceeds_link")]


@pytest.mark.parametrize("capture", ["l2_pppoe-over-qinq.pcap", "l2_80211-radiotap-http.pcap"])
def test_tcp_payload_of_every_frame_of_a_real_capture_is_what_tshark_says(capture: str) -> None:
    path = REAL_PCAPS / capture
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed")
    out = subprocess.run(["tshark", "-n", "-r", str(path), "-T", "fields", "-e", "frame.number",
                          "-e", "tcp.len"], capture_output=True, text=True, check=True).stdout
    theirs = {int(n): int(tl) for n, tl in (line.split("\t") for line in out.splitlines()) if tl}
    sink = AnomalySink()
    dec = Decoder(sink)
    ours = {}
    for i, (ts, linktype, frame) in enumerate(open_capture(Path(path), sink), start=1):
        pkt = dec.decode(ts, linktype, frame)
        if pkt is not None and pkt.proto == 6:
            ours[i] = len(pkt.payload) + pkt.truncated
    assert theirs and ours == theirs
