"""agent.wlan through agent.decode: 802.11 data frames (bare, link type 105, or behind radiotap, 127) give the
same Packet as Ethernet; frames without IP are skipped silently; short frames are an anomaly, never a crash.

Headers are built by hand (radiotap.org, IEEE 802.11-2020 §9.2) so the test does not share a parser's view.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable

import pytest
from scapy.all import IP, TCP, raw

from agent.anomalies import AnomalySink
from agent.decode import Decoder, Packet

BODY = b"POST /upload HTTP/1.1\r\nHost: example.com\r\n\r\n"
V4 = raw(IP(src="10.1.2.3", dst="203.0.113.9") / TCP(sport=40000, dport=80, flags="PA", seq=1000) / BODY)
EXPECT = ("10.1.2.3", "203.0.113.9", 6, 40000, 80, 0x18, 1000, BODY, 0)
SNAP_IPV4 = b"\xaa\xaa\x03\x00\x00\x00\x08\x00"
MAC = b"\x02\x00\x00\x00\x00"
TO_DS, FROM_DS, MORE_FRAG, PROTECTED, ORDER = 0x01, 0x02, 0x04, 0x40, 0x80


def dot11(subtype: int = 0, flags: int = TO_DS, *, type_: int = 2, qos: int | None = None, seq: int = 0x10,
          ht: bool = False) -> bytes:
    """An 802.11 MAC header: frame control, duration, addresses (four in a WDS frame), sequence control."""
    fc = struct.pack("<BB", (subtype << 4) | (type_ << 2), flags | (ORDER if ht else 0))
    hdr = fc + b"\0\0" + MAC + b"\x01" + MAC + b"\x02" + MAC + b"\x03" + struct.pack("<H", seq)
    if flags & TO_DS and flags & FROM_DS:
        hdr += MAC + b"\x04"
    if qos is not None:
        hdr += struct.pack("<H", qos)
    if ht:
        hdr += b"\0" * 4
    return hdr


def radiotap(flags: int | None = None, *, tsft: bool = False, extra_words: int = 0) -> bytes:
    """A radiotap header: presence bitmap(s), then TSFT (8-aligned) and Flags if present."""
    present = (1 if tsft else 0) | (2 if flags is not None else 0) | (1 << 31 if extra_words else 0)
    words = [present] + [1 << 31] * (extra_words - 1) + ([0] if extra_words else [])
    body = b"".join(struct.pack("<I", w) for w in words)
    pos = 4 + len(body)
    fields = b""
    if tsft:
        fields += b"\0" * (((pos + 7) & ~7) - pos) + b"\x11" * 8
    if flags is not None:
        fields += bytes([flags])
    hdr = body + fields
    return struct.pack("<BBH", 0, 0, 4 + len(hdr)) + hdr


DECODES: dict[str, tuple[int, Callable[[], bytes]]] = {
    "bare_80211_to_ds": (105, lambda: dot11() + SNAP_IPV4 + V4),
    "bare_80211_from_ds": (105, lambda: dot11(flags=FROM_DS) + SNAP_IPV4 + V4),
    "bare_80211_wds_four_addresses": (105, lambda: dot11(flags=TO_DS | FROM_DS) + SNAP_IPV4 + V4),
    "qos_data": (105, lambda: dot11(8, qos=0x0005) + SNAP_IPV4 + V4),
    "qos_data_with_ht_control": (105, lambda: dot11(8, qos=0, ht=True) + SNAP_IPV4 + V4),
    "radiotap_no_flags": (127, lambda: radiotap() + dot11() + SNAP_IPV4 + V4),
    "radiotap_fcs_at_end": (127, lambda: radiotap(0x10) + dot11() + SNAP_IPV4 + V4 + b"\xde\xad\xbe\xef"),
    "radiotap_tsft_then_flags_extended_bitmap": (127, lambda: radiotap(0x10, tsft=True, extra_words=2)
                                                 + dot11(8, qos=0) + SNAP_IPV4 + V4 + b"FCS!"),
    "radiotap_data_pad_after_qos_header": (127, lambda: radiotap(0x20) + dot11(8, qos=0) + b"\0\0"
                                           + SNAP_IPV4 + V4),
    "bridge_tunnel_snap": (105, lambda: dot11() + b"\xaa\xaa\x03\x00\x00\xf8\x08\x00" + V4),
}


def fields(p: Packet | None) -> tuple | None:
    return None if p is None else dataclasses.astuple(p)[1:]


@pytest.mark.parametrize("case", DECODES)
def test_80211_data_frames_decode_like_ethernet(case: str) -> None:
    linktype, build = DECODES[case]
    assert fields(Decoder(AnomalySink(strict=True)).decode(1.0, linktype, build())) == EXPECT


def test_fcs_is_not_payload_even_when_the_ip_length_is_missing() -> None:
    # IPv4 total length 0 (segmentation offload): the datagram runs to the end of the frame, FCS excluded.
    v4 = V4[:2] + b"\0\0" + V4[4:]
    frame = radiotap(0x10) + dot11() + SNAP_IPV4 + v4 + b"FCS!"
    pkt = Decoder(AnomalySink(strict=True)).decode(1.0, 127, frame)
    assert pkt is not None and pkt.payload == BODY


SKIPPED: dict[str, tuple[int, Callable[[], bytes]]] = {
    "beacon": (105, lambda: dot11(8, 0, type_=0) + b"\0" * 40),
    "ack_control_frame": (105, lambda: b"\xd4\x00\x00\x00" + MAC + b"\x01"),
    "null_data": (105, lambda: dot11(4)),
    "qos_null": (105, lambda: dot11(12, qos=0)),
    "protected": (105, lambda: dot11(flags=TO_DS | PROTECTED) + b"\0" * 8 + V4),
    "first_fragment": (105, lambda: dot11(flags=TO_DS | MORE_FRAG) + SNAP_IPV4 + V4[:40]),
    "later_fragment": (105, lambda: dot11(seq=0x11) + V4[40:]),
    "a_msdu": (105, lambda: dot11(8, qos=0x0080) + b"\0" * 60),
    "not_snap": (105, lambda: dot11() + b"\x42\x42\x03" + b"\0" * 40),
    "arp_over_snap": (105, lambda: dot11() + b"\xaa\xaa\x03\x00\x00\x00\x08\x06" + b"\0" * 28),
}


@pytest.mark.parametrize("case", SKIPPED)
def test_frames_without_ip_are_skipped_silently(case: str) -> None:
    linktype, build = SKIPPED[case]
    assert Decoder(AnomalySink(strict=True)).decode(1.0, linktype, build()) is None


MALFORMED: dict[str, tuple[int, Callable[[], bytes], str]] = {
    "radiotap_cut": (127, lambda: b"\0\0\x08", "truncated_frame"),
    "radiotap_length_past_frame": (127, lambda: radiotap(0)[:2] + b"\x40\x00" + radiotap(0)[4:] + b"\0" * 20,
                                   "truncated_frame"),
    "radiotap_bad_version": (127, lambda: b"\x01" + radiotap()[1:] + dot11() + SNAP_IPV4 + V4,
                             "bad_radiotap_header"),
    "radiotap_bitmap_chain_past_header": (127, lambda: struct.pack("<BBHI", 0, 0, 8, 1 << 31) + dot11(),
                                          "bad_radiotap_header"),
    "radiotap_fcs_failed": (127, lambda: radiotap(0x50) + dot11() + SNAP_IPV4 + V4 + b"FCS!", "bad_fcs"),
    "dot11_header_cut": (105, lambda: dot11()[:20], "truncated_frame"),
    "qos_header_cut": (105, lambda: dot11(8, qos=0)[:25], "truncated_frame"),
    "snap_cut": (105, lambda: dot11() + SNAP_IPV4[:5], "truncated_frame"),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_short_or_malformed_80211_gives_none_and_one_link_anomaly(case: str) -> None:
    linktype, build, name = MALFORMED[case]
    sink = AnomalySink()
    assert Decoder(sink).decode(1.0, linktype, build()) is None
    assert [(r.layer, r.name) for r in sink.records] == [("link", name)]


def test_every_prefix_of_a_frame_is_caught_by_a_bounds_check() -> None:
    # decode() would turn a stray IndexError/struct.error into `decode_error`: none may get that far.
    frame = radiotap(0x10, tsft=True, extra_words=1) + dot11(8, qos=0) + SNAP_IPV4 + V4 + b"FCS!"
    for cut in range(len(frame) + 1):
        sink = AnomalySink()
        pkt = Decoder(sink).decode(1.0, 127, frame[:cut])
        assert sink.counts["decode_error"] == 0
        assert pkt is None or pkt.payload == BODY[:len(pkt.payload)]
