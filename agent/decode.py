"""Link, IP and transport decoding: a captured frame in, a small frozen `Packet` (or None) out.

Covers Ethernet II with 802.1Q / 802.1ad / QinQ tags, LLC/SNAP, PPPoE sessions (RFC 2516) carrying
PPP IPv4/IPv6, MPLS label stacks, 802.11 data frames with or without radiotap (agent/wlan.py), Linux
cooked captures SLL and SLL2, raw IP, BSD null/loopback, NFLOG, GRE (RFC 2784/2890, including transparent
Ethernet bridging), IP-in-IP; IPv4 (RFC 791) with fragment reassembly, IPv6 (RFC 8200) with extension
headers and fragments; TCP (RFC 9293) and UDP (RFC 768).

The common case — Ethernet / IPv4 without options or fragmentation / TCP or UDP — is decoded with
fixed-offset `struct` reads in `Decoder.decode` itself: it runs for nearly every packet, so it builds no
intermediate objects. Everything else goes through the slower general path. Bad input never raises: it
becomes `None` plus an anomaly (layer link/ip/tcp/udp), unless the sink is strict. Where an enclosing layer
states its payload's length (PPPoE, an 802.3 length, an outer IP datagram), an IP length beyond it is cut
to it (anomaly `ip_length_exceeds_link`): the bytes past it are link padding, never TCP or UDP payload.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass
from socket import AF_INET6, inet_ntoa, inet_ntop

from agent.anomalies import AnomalySink
from agent.ipfrag import FragmentTable
from agent.wlan import LT_IEEE802_11, LT_RADIOTAP, WlanError, llc_payload, radiotap

log = logging.getLogger(__name__)

TCP, UDP = 6, 17
ETH_IPV4, ETH_IPV6 = 0x0800, 0x86DD
VLAN_TYPES = frozenset({0x8100, 0x88A8, 0x9100, 0x9200})
ETH_PPPOE_SESSION, ETH_MPLS, ETH_MPLS_MC, GRE_TEB = 0x8864, 0x8847, 0x8848, 0x6558
PPP_IPV4, PPP_IPV6 = 0x0021, 0x0057
# hop-by-hop, routing, destination options, mobility, HIP, shim6
IPV6_EXT_HEADERS = frozenset({0, 43, 60, 135, 139, 140})
LT_ETHERNET, LT_SLL, LT_SLL2, LT_NFLOG = 1, 113, 276, 239
LT_RAW = frozenset({101, 12, 14})
LT_IPV4, LT_IPV6 = 228, 229
LT_NULL, LT_LOOP = 0, 108
NULL_IPV6_FAMILIES = frozenset({24, 28, 30})  # AF_INET6 on NetBSD/OpenBSD, FreeBSD/DragonFly, Darwin
MAX_DEPTH = 6  # tag stacks and tunnels deeper than this are not traffic we need to see

_IP4 = struct.Struct("!BxHxxHxB xx4s4sHH")  # from the IPv4 header: ver/ihl, len, frag, proto, src, dst, ports
_TCP_REST = struct.Struct("!IxxxxBB")  # from TCP offset 4: seq, (ack), data offset, flags
_TCP = struct.Struct("!HHIxxxxBB")
_UDP = struct.Struct("!HHH")
_IP4_HDR = struct.Struct("!BxHHHxB xx4s4s")
_IP6_HDR = struct.Struct("!4xHB x16s16s")
_U16 = struct.Struct("!H")


def _least(limit: int | None, end: int) -> int:
    return end if limit is None else min(limit, end)


@dataclass(frozen=True, slots=True)
class Packet:
    """One TCP or UDP segment as the flow table needs it (docs/internals.md)."""

    ts: float
    src: str
    dst: str
    proto: int
    sport: int
    dport: int
    flags: int
    seq: int
    payload: bytes
    truncated: int


class Decoder:
    """Decodes frames of any supported link type; holds the IP fragment table between calls."""

    def __init__(self, anomalies: AnomalySink, max_fragments: int = 4096, fragment_timeout_s: float = 30.0
                 ) -> None:
        self.anomalies = anomalies
        self.frags = FragmentTable(anomalies, max_fragments, fragment_timeout_s)
        self._unsupported: set[int] = set()

    def decode(self, ts: float, linktype: int, frame: bytes) -> Packet | None:
        # Fast path: Ethernet II, IPv4 with a 20-byte header, not a fragment, TCP or UDP.
        n = len(frame)
        if linktype == 1 and n >= 42 and frame[12] == 8 and frame[13] == 0:
            vihl, tot, frag, proto, src, dst, sport, dport = _IP4.unpack_from(frame, 14)
            if vihl == 0x45 and not frag & 0x3FFF and tot >= 28:
                end = 14 + tot
                if proto == TCP:
                    if n >= 54:
                        seq, doff, flags = _TCP_REST.unpack_from(frame, 38)
                        start = 34 + ((doff >> 2) & 0x3C)
                        if doff >= 0x50 and start <= end and start <= n:
                            if end <= n:
                                return Packet(ts, inet_ntoa(src), inet_ntoa(dst), TCP, sport, dport, flags,
                                              seq, frame[start:end], 0)
                            return Packet(ts, inet_ntoa(src), inet_ntoa(dst), TCP, sport, dport, flags, seq,
                                          frame[start:], end - n)
                elif proto == UDP:
                    if end <= n:
                        return Packet(ts, inet_ntoa(src), inet_ntoa(dst), UDP, sport, dport, 0, 0,
                                      frame[42:end], 0)
                    return Packet(ts, inet_ntoa(src), inet_ntoa(dst), UDP, sport, dport, 0, 0, frame[42:],
                                  end - n)
                elif proto != 4 and proto != 41 and proto != 47:
                    return None  # ICMP, ESP, ...; tunnels (IPIP, 6in4, GRE) take the general path
        try:
            return self._link(ts, linktype, frame)
        except (struct.error, IndexError, ValueError) as e:
            # A bounds check missed somewhere below: still an anomaly, never a crash.
            self.anomalies.add("link", "decode_error", f"{type(e).__name__} at link type {linktype}", ts=ts)
            return None

    # -- link layer -------------------------------------------------------------------------------------

    def _link(self, ts: float, lt: int, frame: bytes) -> Packet | None:
        n = len(frame)
        if lt == LT_ETHERNET:
            return self._ether(ts, frame, 0, 0)
        if lt == LT_SLL:
            if n < 16:
                return self._bad("link", "truncated_frame", f"SLL frame of {n} bytes", ts)
            return self._ethertype(ts, frame, 16, _U16.unpack_from(frame, 14)[0], 0)
        if lt == LT_SLL2:
            if n < 20:
                return self._bad("link", "truncated_frame", f"SLL2 frame of {n} bytes", ts)
            return self._ethertype(ts, frame, 20, _U16.unpack_from(frame, 0)[0], 0)
        if lt in LT_RAW:
            return self._ip_any(ts, frame, 0, 0)
        if lt == LT_IPV4:
            return self._ipv4(ts, frame, 0, 0)
        if lt == LT_IPV6:
            return self._ipv6(ts, frame, 0, 0)
        if lt in (LT_NULL, LT_LOOP):
            if n < 4:
                return self._bad("link", "truncated_frame", f"loopback frame of {n} bytes", ts)
            # The family is in the writer's byte order (DLT_NULL) or network order (DLT_LOOP): try both.
            fam_le, fam_be = struct.unpack_from("<I", frame)[0], struct.unpack_from(">I", frame)[0]
            if fam_le == 2 or fam_be == 2:
                return self._ipv4(ts, frame, 4, 0)
            if fam_le in NULL_IPV6_FAMILIES or fam_be in NULL_IPV6_FAMILIES:
                return self._ipv6(ts, frame, 4, 0)
            return None
        if lt == LT_NFLOG:
            return self._nflog(ts, frame)
        if lt in (LT_RADIOTAP, LT_IEEE802_11):
            return self._wlan(ts, lt, frame)
        if lt not in self._unsupported:
            self._unsupported.add(lt)
            self.anomalies.add("link", "unsupported_linktype", f"link type {lt}", ts=ts)
        return None

    def _ether(self, ts: float, buf: bytes, off: int, depth: int, limit: int | None = None) -> Packet | None:
        if len(buf) - off < 14:
            return self._bad("link", "truncated_frame", f"Ethernet frame of {len(buf) - off} bytes", ts)
        return self._ethertype(ts, buf, off + 14, _U16.unpack_from(buf, off + 12)[0], depth, limit)

    def _ethertype(self, ts: float, buf: bytes, off: int, etype: int, depth: int, limit: int | None = None
                   ) -> Packet | None:
        """`limit`: where the enclosing layer says its payload ends (None: it does not say)."""
        n = len(buf)
        for _ in range(MAX_DEPTH):
            if etype == ETH_IPV4:
                return self._ipv4(ts, buf, off, depth, limit)
            if etype == ETH_IPV6:
                return self._ipv6(ts, buf, off, depth, limit)
            if etype in VLAN_TYPES:
                if n - off < 4:
                    return self._bad("link", "truncated_frame", "VLAN tag cut", ts)
                etype = _U16.unpack_from(buf, off + 2)[0]
                off += 4
            elif etype == ETH_PPPOE_SESSION:
                if n - off < 8:
                    return self._bad("link", "truncated_frame", "PPPoE header cut", ts)
                # The PPPoE length (PPP protocol field + payload) is what the link carries: Ethernet
                # padding after it is not part of the datagram, whatever the IP length claims.
                plen, ppp = struct.unpack_from("!HH", buf, off + 4)
                limit = _least(limit, off + 6 + plen)
                off += 8
                if ppp == PPP_IPV4:
                    etype = ETH_IPV4
                elif ppp == PPP_IPV6:
                    etype = ETH_IPV6
                else:
                    return None  # LCP, IPCP, CHAP: control traffic
            elif etype in (ETH_MPLS, ETH_MPLS_MC):
                # Walk labels to bottom-of-stack, then guess the payload from the IP version nibble.
                while n - off >= 4 and not buf[off + 2] & 0x01:
                    off += 4
                return self._ip_any(ts, buf, off + 4, depth + 1, limit) if n - off >= 4 else None
            elif etype < 0x0600 and buf[off:off + 3] == b"\xaa\xaa\x03" and n - off >= 8:
                limit = _least(limit, off + etype)  # an 802.3 length field: the LLC frame's length
                etype = _U16.unpack_from(buf, off + 6)[0]  # 802.2 LLC + SNAP
                off += 8
            else:
                return None  # ARP, LLDP, STP, ...: nothing for the flow table
        return self._bad("link", "too_many_tags", f"more than {MAX_DEPTH} encapsulations", ts)

    def _wlan(self, ts: float, lt: int, frame: bytes) -> Packet | None:
        flags = 0
        try:
            if lt == LT_RADIOTAP:
                got = radiotap(frame)
                if got is None:
                    return self._bad("link", "bad_fcs", "the radio's FCS check failed", ts)
                frame, flags = got
            found = llc_payload(frame, flags)
        except WlanError as e:
            return self._bad("link", e.name, e.detail, ts)
        return None if found is None else self._ethertype(ts, frame, found[0], found[1], 0)

    def _nflog(self, ts: float, buf: bytes) -> Packet | None:
        # NFLOG: 4-byte header (family, version, resource id), then TLVs in host (little-endian) order.
        fam, pos, n = buf[0] if buf else 0, 4, len(buf)
        while pos + 4 <= n:
            tlen, ttype = struct.unpack_from("<HH", buf, pos)
            if tlen < 4:
                break
            if ttype == 9:  # NFULA_PAYLOAD
                payload = buf[pos + 4:pos + tlen]
                return self._ipv4(ts, payload, 0, 0) if fam == 2 else self._ipv6(ts, payload, 0, 0)
            pos += (tlen + 3) & ~3
        return None

    # -- IP -----------------------------------------------------------------------------------------------

    def _ip_any(self, ts: float, buf: bytes, off: int, depth: int, limit: int | None = None) -> Packet | None:
        if len(buf) <= off:
            return self._bad("ip", "truncated_header", "no IP header", ts)
        v = buf[off] >> 4
        if v == 4:
            return self._ipv4(ts, buf, off, depth, limit)
        if v == 6:
            return self._ipv6(ts, buf, off, depth, limit)
        return self._bad("ip", "bad_version", f"IP version {v}", ts)

    def _ipv4(self, ts: float, buf: bytes, off: int, depth: int, limit: int | None = None) -> Packet | None:
        n = len(buf)
        if n - off < 20:
            return self._bad("ip", "truncated_header", f"{n - off} bytes of IPv4 header", ts)
        vihl, tot, ident, frag, proto, src_b, dst_b = _IP4_HDR.unpack_from(buf, off)
        ihl = (vihl & 0x0F) * 4
        if vihl >> 4 != 4 or ihl < 20:
            return self._bad("ip", "bad_header", f"version/IHL byte {vihl:#04x}", ts)
        if n - off < ihl:
            return self._bad("ip", "truncated_header", f"{n - off} of {ihl} header bytes", ts)
        if tot == 0:
            tot = (n if limit is None else limit) - off  # segmentation offload: the NIC fills it in later
        elif tot < ihl:
            return self._bad("ip", "bad_total_length", f"total length {tot} < header {ihl}", ts)
        end = off + tot
        if limit is not None and end > limit:
            self._exceeds(ts, f"IPv4 total length {tot}", limit - off)
            end = limit
            if end < off + ihl:
                return self._bad("ip", "truncated_header", f"{limit - off} of {ihl} header bytes carried", ts)
        src, dst = inet_ntoa(src_b), inet_ntoa(dst_b)
        if frag & 0x3FFF:
            if proto != TCP and proto != UDP:
                return None
            if end > n:
                return self._bad("ip", "truncated_fragment", f"{end - n} bytes not captured", ts)
            done = self.frags.add((4, src, dst, ident, proto), ts, (frag & 0x1FFF) * 8, bool(frag & 0x2000),
                                  buf[off + ihl:end])
            if done is None:
                return None
            data = done[0]
            return self._transport(ts, src, dst, proto, data, 0, len(data))
        return self._ip_payload(ts, src, dst, proto, buf, off + ihl, end, depth)

    def _ipv6(self, ts: float, buf: bytes, off: int, depth: int, limit: int | None = None) -> Packet | None:
        n = len(buf)
        if n - off < 40:
            return self._bad("ip", "truncated_header", f"{n - off} bytes of IPv6 header", ts)
        if buf[off] >> 4 != 6:
            return self._bad("ip", "bad_header", f"IPv6 version nibble {buf[off] >> 4}", ts)
        plen, nh, src_b, dst_b = _IP6_HDR.unpack_from(buf, off)
        src, dst = inet_ntop(AF_INET6, src_b), inet_ntop(AF_INET6, dst_b)
        pos = off + 40
        end = pos + plen if plen else n if limit is None else limit  # 0: jumbogram or offload
        if limit is not None and end > limit:
            self._exceeds(ts, f"IPv6 payload length {plen}", limit - pos)
            end = limit
            if end < pos:
                return self._bad("ip", "truncated_header", f"{limit - off} of 40 header bytes carried", ts)
        for _ in range(16):
            if nh in (TCP, UDP):
                return self._transport(ts, src, dst, nh, buf, pos, end)
            if nh in IPV6_EXT_HEADERS or nh == 51:
                if n - pos < 2:
                    return self._bad("ip", "truncated_header", f"IPv6 extension header {nh} cut", ts)
                hlen = (buf[pos + 1] + 2) * 4 if nh == 51 else (buf[pos + 1] + 1) * 8
                nh = buf[pos]
                pos += hlen
                if pos > end:
                    return self._bad("ip", "bad_extension_header", f"runs past byte {end - off}", ts)
            elif nh == 44:
                if n - pos < 8:
                    return self._bad("ip", "truncated_header", "IPv6 fragment header cut", ts)
                nxt, offmf, ident = struct.unpack_from("!BxHI", buf, pos)
                if not offmf & 0xFFF9:
                    nh, pos = nxt, pos + 8  # atomic fragment (RFC 6946): the whole datagram
                    continue
                if end > n:
                    return self._bad("ip", "truncated_fragment", f"{end - n} bytes not captured", ts)
                done = self.frags.add((6, src, dst, ident, 0), ts, offmf & 0xFFF8, bool(offmf & 1),
                                      buf[pos + 8:end], nxt)
                if done is None:
                    return None
                buf, nh = done
                pos, end, n = 0, len(buf), len(buf)
            else:
                return self._ip_payload(ts, src, dst, nh, buf, pos, end, depth)
        return self._bad("ip", "bad_extension_header", "more than 16 IPv6 extension headers", ts)

    def _ip_payload(self, ts: float, src: str, dst: str, proto: int, buf: bytes, pos: int, end: int,
                    depth: int) -> Packet | None:
        if proto in (TCP, UDP):
            return self._transport(ts, src, dst, proto, buf, pos, end)
        if depth >= MAX_DEPTH:
            return None
        # The outer datagram's end bounds the inner one: what lies past it is the outer link's padding.
        if proto == 4:
            return self._ipv4(ts, buf[:end], pos, depth + 1, end)
        if proto == 41:
            return self._ipv6(ts, buf[:end], pos, depth + 1, end)
        if proto == 47:
            return self._gre(ts, buf[:end], pos, depth + 1, end)
        return None  # ICMP, ESP, SCTP, ...

    def _gre(self, ts: float, buf: bytes, pos: int, depth: int, limit: int) -> Packet | None:
        if len(buf) - pos < 4:
            return self._bad("ip", "truncated_header", "GRE header cut", ts)
        fl, ptype = struct.unpack_from("!HH", buf, pos)
        if fl & 0x4007:  # source routing (RFC 1701) or a version other than 0 (PPTP): not decoded
            return None
        pos += 4 + 4 * (bool(fl & 0x8000) + bool(fl & 0x2000) + bool(fl & 0x1000))  # checksum, key, seq
        if ptype == GRE_TEB:
            return self._ether(ts, buf, pos, depth, limit)
        return self._ethertype(ts, buf, pos, ptype, depth, limit)

    # -- transport ----------------------------------------------------------------------------------------

    def _transport(self, ts: float, src: str, dst: str, proto: int, buf: bytes, off: int, end: int
                   ) -> Packet | None:
        """`end` is where the segment ends on the wire; `buf` may stop earlier (snaplen)."""
        n = len(buf)
        if proto == TCP:
            if end - off < 20:
                return self._bad("tcp", "bad_header_length", f"{end - off} bytes for a TCP header", ts)
            if n - off < 20:
                return self._bad("tcp", "truncated_header", f"{n - off} of 20 header bytes captured", ts)
            sport, dport, seq, doff, flags = _TCP.unpack_from(buf, off)
            hl = (doff >> 4) * 4
            if hl < 20 or off + hl > end:
                return self._bad("tcp", "bad_data_offset", f"data offset {hl}", ts)
            if off + hl > n:
                return self._bad("tcp", "truncated_header", f"{n - off} of {hl} header bytes captured", ts)
            start = off + hl
        else:
            if end - off < 8:
                return self._bad("udp", "bad_header_length", f"{end - off} bytes for a UDP header", ts)
            if n - off < 8:
                return self._bad("udp", "truncated_header", f"{n - off} of 8 header bytes captured", ts)
            sport, dport, ulen = _UDP.unpack_from(buf, off)
            if 8 <= ulen <= end - off:
                end = off + ulen  # bytes past the UDP length are link padding
            flags = seq = 0
            start = off + 8
        if end <= n:
            return Packet(ts, src, dst, proto, sport, dport, flags, seq, buf[start:end], 0)
        return Packet(ts, src, dst, proto, sport, dport, flags, seq, buf[start:n], end - max(n, start))

    def _exceeds(self, ts: float, claim: str, carried: int) -> None:
        # An IP length beyond what the enclosing layer carries: the layer wins (as in tshark), and the
        # bytes past it are padding, never payload. (A capture cut short by snaplen is not this: there the
        # enclosing layer's own length runs past the captured bytes too, and `truncated` counts the rest.)
        self.anomalies.add("ip", "ip_length_exceeds_link", f"{claim}, the link carries {carried}", ts=ts)

    def _bad(self, layer: str, name: str, detail: str, ts: float) -> None:
        self.anomalies.add(layer, name, detail, ts=ts)
        return None
