"""Application-protocol parsers, one module per protocol.

This module is also the registry that picks a parser for a flow, as data rather than an if-chain: a table
of content sniffers, each with the ports where a weaker match is enough (Zeek's DPD signatures plus
well-known ports, nDPI's guess-by-port fallback). Content wins over the port: TLS on port 80 is TLS.

- `sniff(first_bytes, dport)` — a TCP stream by its first client bytes: "http" (a method token and a space,
  RFC 9112 §3), "tls" (a handshake record, RFC 8446 §5.1), "socks5" (a greeting, RFC 1928 §3; a tunnel whose
  inner stream is sniffed again), "unknown", or None while more bytes are needed (never more than
  `SNIFF_BYTES`).
- `datagram_app(payload, ports)` — a UDP flow by port and first datagram: "dns" (RFC 1035 §4.2.1),
  "quic" (a long-header packet, RFC 9000 §17.2), None while undecided.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from agent.protocols import socks5
from agent.protocols.http_syntax import HTTP_METHODS, bare_method, method_prefix

SNIFF_BYTES = 16

# Registered methods are recognised on any port (http_syntax.HTTP_METHODS); on an HTTP port any method token
# will do (CCM_POST and other vendor methods are seen in the wild).
HTTP_PORTS = frozenset({80, 81, 591, 3128, 8000, 8008, 8080, 8081, 8088, 8888})
TLS_PORTS = frozenset({443, 465, 853, 993, 995, 8443})
SOCKS_PORTS = frozenset({1080})

# A sniffer answers True (this protocol), False (not it) or None (need more bytes).
SniffFn = Callable[[bytes, bool], "bool | None"]


@dataclass(frozen=True, slots=True)
class Sniffer:
    app: str
    ports: frozenset[int]   # ports where the protocol is expected (a looser content match is accepted)
    match: SniffFn


def _tls(prefix: bytes, on_port: bool) -> bool | None:
    # ContentType handshake (22), ProtocolVersion major 3, minor 0 (SSL 3.0) .. 4.
    expected = (0x16, 0x03)
    for i, want in enumerate(expected[: len(prefix)]):
        if prefix[i] != want:
            return False
    if len(prefix) < 3:
        return None
    return prefix[2] <= 0x04


def _http(prefix: bytes, on_port: bool) -> bool | None:
    prefix = prefix.lstrip(b"\r\n")  # RFC 9112 §2.2: empty lines before the request line
    start = method_prefix(prefix)
    if start is False:
        return on_port and bare_method(prefix)   # `OPTIONS` alone on its line, a malformed request
    if start is None:
        return None
    return on_port or prefix[: prefix.index(b" ")] in HTTP_METHODS


SNIFFERS: tuple[Sniffer, ...] = (
    Sniffer("tls", TLS_PORTS, _tls),
    Sniffer("http", HTTP_PORTS, _http),
    Sniffer("socks5", SOCKS_PORTS, socks5.sniff),
)


def sniff(first_bytes: bytes, dport: int) -> str | None:
    """The application protocol of a TCP stream from its first client bytes, None if undecided yet."""
    if not first_bytes:
        return None
    prefix = bytes(first_bytes[:SNIFF_BYTES])
    undecided = False
    for sniffer in SNIFFERS:
        verdict = sniffer.match(prefix, dport in sniffer.ports)
        if verdict:
            return sniffer.app
        undecided = undecided or verdict is None
    return None if undecided and len(prefix) < SNIFF_BYTES else "unknown"


def _is_quic_long_header(payload: bytes) -> bool:
    # RFC 9000 §17.2: header form and fixed bits set, then a 32-bit version (0 = version negotiation).
    return len(payload) >= 7 and payload[0] & 0xC0 == 0xC0 and payload[1:5] != b"\0\0\0\0"


# UDP port -> (app, content check or None when the port alone decides).
DATAGRAM_PORTS: dict[int, tuple[str, Callable[[bytes], bool] | None]] = {
    53: ("dns", None),
    443: ("quic", _is_quic_long_header),
}


def datagram_app(payload: bytes, ports: Iterable[int]) -> str | None:
    """The application protocol of a UDP flow from one datagram and the flow's ports; None if undecided."""
    for port in ports:
        entry = DATAGRAM_PORTS.get(port)
        if entry is not None and (entry[1] is None or entry[1](payload)):
            return entry[0]
    return None
