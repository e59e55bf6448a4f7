"""TLS ClientHello parsing (RFC 8446 §4.1.2, RFC 6066, RFC 7301) on real captures and crafted records."""

from __future__ import annotations

import struct
from functools import cache
from pathlib import Path

import dpkt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.protocols.tls import NEED_MORE, ClientHello, parse_client_hello

PCAPS = Path("/work/shared/pcaps/real")


@cache
def client_stream(name: str, port: int = 443) -> bytes:
    """The first connection's client bytes, in sequence order, from an Ethernet capture."""
    segments: dict[int, bytes] = {}
    client = None
    with (PCAPS / name).open("rb") as f:
        for _ts, frame in dpkt.pcap.Reader(f):
            ip = dpkt.ethernet.Ethernet(frame).data
            tcp = getattr(ip, "data", None)
            if not isinstance(tcp, dpkt.tcp.TCP) or tcp.dport != port or not tcp.data:
                continue
            if tcp.data[:1] == b"\x16" and client is None:
                client = tcp.sport
            if tcp.sport == client:
                segments.setdefault(tcp.seq, bytes(tcp.data))
    if not segments:
        pytest.skip(f"{name} not available")
    return b"".join(segments[s] for s in sorted(segments))


def hello_length(stream: bytes) -> int:
    """Bytes up to the end of the ClientHello's last record (for a single-record hello)."""
    return 5 + struct.unpack("!H", stream[3:5])[0]


REAL = [
    ("tls_split-client-hello.pcap", "clients2.google.com", 0x0304, ("h2", "http/1.1")),
    ("tls12_chrome-34-google.pcap", "google.de", 0x0303, ("spdy/3", "spdy/3.1", "http/1.1")),
    ("tls13_chrome-x25519-kyber-big-hello.pcap", "lh3.google.com", 0x0304, ("h2", "http/1.1")),
    ("tls13_ech-cloudflare.pcap", "cloudflare-ech.com", 0x0304, ("h2", "http/1.1")),  # ECH: outer SNI
]


@pytest.mark.parametrize(("name", "sni", "version", "alpn"), REAL, ids=[r[0] for r in REAL])
def test_client_hello_from_a_real_capture_gives_sni_version_and_alpn(name: str, sni: str, version: int,
                                                                     alpn: tuple[str, ...]) -> None:
    assert parse_client_hello(client_stream(name)) == ClientHello(sni=sni, version=version, alpn=alpn)


def test_split_client_hello_is_a_prefix_at_every_offset_and_complete_at_its_end() -> None:
    stream = client_stream("tls_split-client-hello.pcap")
    end = hello_length(stream)
    assert end > 1500  # the capture's hello spans several TCP segments
    for i in range(end):
        assert parse_client_hello(stream[:i]) is NEED_MORE, i
    assert parse_client_hello(stream[:end]).sni == "clients2.google.com"


def _extension(ext_type: int, body: bytes) -> bytes:
    return struct.pack("!HH", ext_type, len(body)) + body


def build_hello(sni: bytes | None = b"api.example.com", versions: tuple[int, ...] = (0x1A1A, 0x0304, 0x0303),
                alpn: tuple[bytes, ...] = (b"\x2a\x2a", b"h2"), record_size: int = 1 << 14) -> bytes:
    """A ClientHello (with GREASE values) cut into handshake records of at most `record_size` bytes."""
    exts = b""
    if sni is not None:
        entry = b"\x00" + struct.pack("!H", len(sni)) + sni
        exts += _extension(0, struct.pack("!H", len(entry)) + entry)
    protos = b"".join(bytes([len(p)]) + p for p in alpn)
    exts += _extension(16, struct.pack("!H", len(protos)) + protos)
    vers = b"".join(struct.pack("!H", v) for v in versions)
    exts += _extension(43, bytes([len(vers)]) + vers)
    exts += _extension(0x0A0A, b"")
    body = (b"\x03\x03" + bytes(32) + b"\x20" + bytes(32) + b"\x00\x04\x13\x01\x0a\x0a" + b"\x01\x00"
            + struct.pack("!H", len(exts)) + exts)
    msg = b"\x01" + len(body).to_bytes(3, "big") + body
    records = [msg[i:i + record_size] for i in range(0, len(msg), record_size)]
    return b"".join(b"\x16\x03\x01" + struct.pack("!H", len(r)) + r for r in records)


@pytest.mark.parametrize("record_size", [1, 3, 50, 1 << 14])
def test_client_hello_fragmented_over_records_is_joined(record_size: int) -> None:
    hello = build_hello(record_size=record_size)
    assert parse_client_hello(hello) == ClientHello("api.example.com", 0x0304, ("h2",))
    assert parse_client_hello(hello[:-1]) is NEED_MORE


@pytest.mark.parametrize(("kwargs", "expected"), [
    ({"sni": None}, ClientHello(None, 0x0304, ("h2",))),
    ({"sni": b"Mixed.Example.COM."}, ClientHello("mixed.example.com", 0x0304, ("h2",))),
    ({"versions": (0x0A0A,)}, ClientHello("api.example.com", 0x0303, ("h2",))),  # only GREASE: legacy
    ({"sni": "例子.cn".encode()}, ClientHello(None, 0x0304, ("h2",))),            # not an A-label
])
def test_client_hello_fields_table(kwargs: dict, expected: ClientHello) -> None:
    assert parse_client_hello(build_hello(**kwargs)) == expected


@pytest.mark.parametrize(("data", "expected"), [
    (b"", NEED_MORE),
    (b"\x16\x03", NEED_MORE),
    (b"GET / HTTP/1.1\r\n\r\n", None),
    (b"\x17\x03\x03\x00\x10" + bytes(16), None),                 # application data, not a handshake
    (b"\x16\x03\x03\x00\x04\x02\x00\x00\x00", None),             # a ServerHello
    (b"\x16\x03\x01\x00\x00", None),                             # empty handshake record
    (b"\x16\x03\x01\x00\x08\x01\x00\x00\x04\x03\x03\x00\x00", None),  # hello body too short
])
def test_what_is_not_a_client_hello(data: bytes, expected: object) -> None:
    assert parse_client_hello(data) is expected


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300))
def test_garbage_never_raises(data: bytes) -> None:
    result = parse_client_hello(data)
    assert result is None or result is NEED_MORE or isinstance(result, ClientHello)


@settings(max_examples=150, deadline=None)
@given(pos=st.integers(min_value=0, max_value=200), value=st.integers(min_value=0, max_value=255))
def test_corrupted_real_hello_never_raises(pos: int, value: int) -> None:
    hello = bytearray(build_hello())
    hello[pos % len(hello)] = value
    result = parse_client_hello(bytes(hello))
    assert result is None or result is NEED_MORE or isinstance(result, ClientHello)
