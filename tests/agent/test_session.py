"""AppSession: protocol choice through the registry, then HTTP / TLS / DNS / QUIC handling per flow."""

from __future__ import annotations

import socket
import struct

import dpkt
import pytest

from agent.anomalies import AnomalySink
from agent.protocols.http import HttpRequest
from agent.protocols.registry import datagram_app, sniff
from agent.protocols.session import AppSession


def build_hello(sni: bytes, record_size: int) -> bytes:
    """A minimal TLS 1.2 ClientHello carrying server_name, cut into handshake records (RFC 8446 §5.1)."""
    entry = b"\x00" + struct.pack("!H", len(sni)) + sni
    ext = struct.pack("!HHH", 0, len(entry) + 2, len(entry)) + entry
    body = b"\x03\x03" + bytes(32) + b"\x00\x00\x02\x13\x01\x01\x00" + struct.pack("!H", len(ext)) + ext
    msg = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"".join(b"\x16\x03\x01" + struct.pack("!H", len(msg[i:i + record_size])) + msg[i:i + record_size]
                    for i in range(0, len(msg), record_size))


GET = b"GET /search?q=1 HTTP/1.1\r\nHost: Shop.Example.com:8080\r\n\r\n"
POST = b"POST /api HTTP/1.1\r\nHost: other.example\r\nContent-Length: 4\r\n\r\nbody"


class Recorder:
    def __init__(self) -> None:
        self.requests: list[HttpRequest] = []
        self.dns: list[list[tuple[str, str]]] = []


def session(dport: int = 80, *, inspect: bool = True, strict: bool = True, naming_budget: int = 16384,
            sport: int = 40000, udp: bool = False) -> tuple[AppSession, Recorder, AnomalySink]:
    rec, sink = Recorder(), AnomalySink(strict=strict)
    s = AppSession("F1", dport, max_body_bytes=1 << 20, max_decompressed_bytes=1 << 20,
                   naming_budget=naming_budget, inspect=inspect, anomalies=sink,
                   on_request=rec.requests.append, on_dns=rec.dns.append, sport=sport, udp=udp)
    return s, rec, sink


# -- the registry ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("first", "dport", "app"), [
    (b"GET / HTTP/1.1", 80, "http"),
    (b"POST /x", 9999, "http"),                 # a known method on any port
    (b"CCM_POST /x", 80, "http"),               # any method token on an HTTP port
    (b"CCM_POST /x", 9999, "unknown"),
    (b"OPTIONS\r\nHost: a", 80, "http"),       # a registered method alone on its line: a malformed request
    (b"\r\nOPTIONS\nHost: a", 80, "http"),
    (b"OPTIONS\r", 80, None),
    (b"OPTIONS\r\nHost: a", 9999, "unknown"),
    (b"OPTIONSHTTP/1.1\r\n", 80, "unknown"),
    (b"\x16\x03\x01\x02\x00", 443, "tls"),
    (b"\x16\x03\x01\x02\x00", 80, "tls"),       # content wins over the port
    (b"EHLO mail.example", 25, "unknown"),
    (b"\x00\x00\x00\x10binary", 80, "unknown"),
    (b"", 80, None),
    (b"GE", 80, None),
    (b"\x16", 443, None),
])
def test_sniff_table(first: bytes, dport: int, app: str | None) -> None:
    assert sniff(first, dport) == app


@pytest.mark.parametrize(("payload", "ports", "app"), [
    (b"\x00\x01" + bytes(10), (53, 5000), "dns"),
    (b"\xc3\x00\x00\x00\x01" + bytes(20), (443, 5000), "quic"),
    (b"\x43" + bytes(20), (443, 5000), None),          # short header: not enough to tell
    (b"\xc3\x00\x00\x00\x01" + bytes(20), (5000, 6000), "quic"),        # by content on any port (v1)
    (b"\xc3\x6b\x33\x43\xcf" + bytes(20), (4443, 50000), "quic"),       # v2 (RFC 9369)
    (b"\xc3\x12\x34\x56\x78" + bytes(20), (5000, 6000), None),          # an unknown version is not QUIC
])
def test_datagram_app_table(payload: bytes, ports: tuple[int, int], app: str | None) -> None:
    assert datagram_app(payload, ports) == app


# -- HTTP --------------------------------------------------------------------------------------------------

def test_http_requests_are_handed_over_when_inspected() -> None:
    s, rec, _ = session()
    for byte in range(len(GET + POST)):
        s.on_data((GET + POST)[byte:byte + 1])   # even the sniff prefix arrives a byte at a time
    s.on_close()
    assert [r.target for r in rec.requests] == ["/search?q=1", "/api"]
    assert (s.app, s.host, s.requests, s.inspected, s.encrypted) == \
        ("http", "Shop.Example.com:8080", 2, True, False)


def test_uninspected_http_counts_requests_and_keeps_the_first_host_only() -> None:
    s, rec, _ = session(inspect=False)
    s.on_data(GET + POST + GET)
    s.on_close()
    assert rec.requests == []
    assert (s.app, s.host, s.requests, s.inspected) == ("http", "Shop.Example.com:8080", 3, False)


def test_uninspected_http_stops_wanting_data_after_the_naming_budget() -> None:
    s, _, _ = session(inspect=False, naming_budget=100)
    s.on_data(GET)
    assert s.wants_data
    s.on_data(GET + GET)
    assert not s.wants_data and s.requests == 3


def test_bodyless_request_without_query_does_not_count_as_inspected() -> None:
    s, rec, _ = session()
    s.on_data(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    s.on_close()
    assert len(rec.requests) == 1 and not s.inspected


def test_connect_turns_the_flow_into_a_tunnel_whose_protocol_is_read() -> None:
    # The tunnel's bytes go through the registry again, with the CONNECT authority's port for the port
    # hints: the TLS inside names the flow (app is the innermost protocol understood, DESIGN §3).
    s, rec, _ = session(dport=3128)
    s.on_data(b"CONNECT secure.example.com:443 HTTP/1.1\r\n\r\n" + build_hello(b"inner.example.net", 40)[:50])
    assert s.wants_data and (s.app, s.sni) == ("tls", None)     # the hello is not whole yet
    s.on_data(build_hello(b"inner.example.net", 40)[50:])
    assert not s.wants_data
    assert (s.app, s.host, s.sni, s.requests) == ("tls", "secure.example.com:443", "inner.example.net", 1)
    assert [r.method for r in rec.requests] == ["CONNECT"]


def test_http_inside_a_connect_tunnel_stays_opaque() -> None:
    # A tunnel in the same protocol is not followed (one level of each): the flow keeps what CONNECT said.
    s, rec, _ = session(dport=3128)
    s.on_data(b"CONNECT plain.example.com:80 HTTP/1.1\r\n\r\n" + GET)
    s.on_close()
    assert (s.app, s.host, s.requests, len(rec.requests)) == ("http", "plain.example.com:80", 1, 1)


def test_gap_at_the_start_of_an_http_port_flow_resyncs() -> None:
    s, rec, _ = session(strict=False)
    s.on_gap(500)
    s.on_data(b"ody tail\r\n" + GET)
    s.on_close()
    assert s.app == "http" and [r.target for r in rec.requests] == ["/search?q=1"]


# -- TLS and opaque ----------------------------------------------------------------------------------------

def test_tls_client_hello_over_several_segments_gives_the_sni() -> None:
    hello = build_hello(sni=b"api.partner-logistics.example", record_size=200)
    s, _, _ = session(dport=443)
    for i in range(0, len(hello), 7):
        s.on_data(hello[i:i + 7])
    assert (s.app, s.sni, s.encrypted, s.wants_data) == ("tls", "api.partner-logistics.example", True, False)


@pytest.mark.parametrize(("sni", "described"), [
    (b"13812345678", "digits(11)"), (b"api.example\x00", "text(12)"), (b"api example", "text(11)"),
    (b"\x1fapi.example", "text(12)"), ("张三.cn".encode(), "non-ascii("),
])
def test_a_server_name_that_is_no_host_name_is_an_anomaly(sni: bytes, described: str) -> None:
    s, _, sink = session(dport=443, strict=False)
    s.on_data(build_hello(sni=sni, record_size=512))
    assert (s.app, s.sni) == ("tls", None)
    (record,) = sink.records
    assert (record.layer, record.name) == ("tls", "bad_host") and described in record.detail
    assert "1381234" not in record.detail


def test_tls_that_is_not_a_client_hello_is_an_anomaly() -> None:
    s, _, sink = session(dport=443, strict=False)
    s.on_data(b"\x16\x03\x03\x00\x04\x02\x00\x00\x00")
    assert (s.app, s.sni, s.wants_data) == ("tls", None, False)
    assert sink.counts["malformed_client_hello"] == 1


def test_unknown_payload_is_opaque_at_once() -> None:
    s, _, _ = session(dport=5222)
    s.on_data(b"\x00\x00\x00\x20" + bytes(60))
    s.on_close()
    assert (s.app, s.wants_data, s.requests, s.inspected) == ("unknown", False, 0, False)


def test_flow_closed_before_the_sniff_decides_is_unknown() -> None:
    s, _, _ = session()
    s.on_data(b"GE")
    s.on_close()
    assert s.app == "unknown" and not s.wants_data


# -- UDP ---------------------------------------------------------------------------------------------------

def dns_response() -> bytes:
    msg = dpkt.dns.DNS(id=3)
    msg.qr = dpkt.dns.DNS_R
    msg.qd = [dpkt.dns.DNS.Q(name="api.example.com", type=dpkt.dns.DNS_A)]
    answer = dpkt.dns.DNS.RR(name="api.example.com", type=dpkt.dns.DNS_A, cls=dpkt.dns.DNS_IN, ttl=5)
    answer.ip = socket.inet_aton("203.116.1.1")
    msg.an = [answer]
    return bytes(msg)


def test_dns_responses_feed_on_dns_and_queries_count_as_requests() -> None:
    s, rec, _ = session(dport=53, udp=True)
    query = dpkt.dns.DNS(id=3, qd=[dpkt.dns.DNS.Q(name="api.example.com", type=dpkt.dns.DNS_A)])
    s.on_datagram(True, bytes(query))
    s.on_datagram(False, dns_response())
    s.on_datagram(False, b"\xff garbage")
    s.on_close()
    assert rec.dns == [[("api.example.com", "203.116.1.1")]]
    assert (s.app, s.requests, s.encrypted) == ("dns", 1, False)


def test_quic_initial_marks_the_flow_encrypted() -> None:
    # A long header of a known version is QUIC; this one's Initial does not open (zeros, no real keys): an
    # anomaly, and the flow is still QUIC, encrypted (real Initials: tests/agent/test_quic.py).
    s, _, sink = session(dport=443, udp=True, strict=False)
    s.on_datagram(True, b"\xc3" + struct.pack("!I", 1) + b"\x08" + bytes(1200))
    s.on_close()
    assert (s.app, s.encrypted, sink.counts["decrypt_failed"]) == ("quic", True, 1)


def test_other_udp_is_unknown() -> None:
    s, rec, _ = session(dport=5000, udp=True)
    s.on_datagram(True, b"hello")
    s.on_close()
    assert (s.app, s.encrypted, rec.dns) == ("unknown", False, [])
