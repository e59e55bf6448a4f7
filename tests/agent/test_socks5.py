"""SOCKS5 (RFC 1928, RFC 1929): the handshake is followed, the destination names the flow, and the tunnelled
protocol is inspected as if it came without the proxy; a broken handshake is an anomaly and an opaque flow."""

from __future__ import annotations

import socket
import struct
from pathlib import Path

import dpkt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.protocols.registry import sniff
from agent.protocols.socks5 import Socks5Client, Socks5Server, Socks5Target
from fixtures.pcaps.craft import Capture, Host, IpIds, TcpConn, pcap_bytes, udp_frame
from tests.agent.test_http import run_agent
from tests.agent.test_session import build_hello, session
from tests.conftest import REAL_PCAPS

USER, PASSWORD = b"zhangsan", b"S3cret-13812345678"


def greeting(*methods: int) -> bytes:
    return bytes([5, len(methods), *methods])


def userpass(user: bytes = USER, password: bytes = PASSWORD) -> bytes:
    return bytes([1, len(user)]) + user + bytes([len(password)]) + password


def request(address: str | bytes, port: int, command: int = 1) -> bytes:
    if isinstance(address, bytes):
        addr = bytes([3, len(address)]) + address
    elif ":" in address:
        addr = b"\x04" + socket.inet_pton(socket.AF_INET6, address)
    else:
        addr = b"\x01" + socket.inet_aton(address)
    return bytes([5, command, 0]) + addr + struct.pack("!H", port)


GET = b"GET /orders?id=1 HTTP/1.1\r\nHost: inner.example:8080\r\n\r\n"


# -- the registry ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("first", "dport", "app"), [
    (greeting(0), 1080, "socks5"),                                  # on the SOCKS port a greeting will do
    (greeting(0, 2)[:3], 1080, "socks5"),
    (greeting(0), 21477, None),                                     # elsewhere: wait for the next message
    (greeting(0) + request(b"www.google.com", 80)[:4], 21477, "socks5"),
    (greeting(0) + request(b"www.google.com", 80)[:2], 21477, None),
    (greeting(0, 2) + userpass()[:2], 9999, "socks5"),
    (greeting(0) + userpass()[:2], 9999, "unknown"),                # no username/password method offered
    (greeting(0) + b"\x07", 21477, "unknown"),
    (greeting(0) + b"\x05\x09\x00\x01", 21477, "unknown"),          # command 9
    (greeting(0) + b"\x05\x01\x00\x02", 21477, "unknown"),          # address type 2
    (greeting(0x42) + request("10.0.0.1", 80), 9999, "unknown"),    # an unassigned method
    (greeting(0, 0) + request("10.0.0.1", 80), 9999, "unknown"),
    (b"\x05\x00", 1080, "unknown"),                                 # no method offered
    (greeting(0xFF), 1080, "unknown"),                              # the server's refusal, never offered
    (b"\x04\x01\x00\x50\x0a\x00\x00\x01\x00", 1080, "unknown"),     # SOCKS4 is not followed
    (b"\x05", 1080, None),
])
def test_sniff_table(first: bytes, dport: int, app: str | None) -> None:
    assert sniff(first, dport) == app


# -- crafted exchanges -------------------------------------------------------------------------------------

def test_a_domain_connect_names_the_flow_and_http_inside_is_inspected() -> None:
    s, rec, sink = session(dport=1080)
    s.on_data(greeting(0))
    s.on_data(request(b"API.Partner.example", 443) + GET)
    s.on_close()
    assert (s.app, s.host, s.target_ip, s.requests, s.inspected) == \
        ("http", "api.partner.example", None, 1, True)
    assert [r.host for r in rec.requests] == ["inner.example:8080"]   # the request as sent, for inspection
    assert not sink.records


@pytest.mark.parametrize("address", ["203.0.113.7", "2001:db8::7"])
def test_an_address_connect_is_named_by_the_tunnelled_protocol(address: str) -> None:
    s, rec, _ = session(dport=1080)
    s.on_data(greeting(0, 2) + userpass() + request(address, 80) + GET)
    s.on_close()
    # The proxy is the wire's destination (dst_ip); the SOCKS target is where a DNS name is looked up for.
    assert (s.app, s.host, s.target_ip, s.requests) == ("http", "inner.example:8080", address, 1)
    assert [r.target for r in rec.requests] == ["/orders?id=1"]


def test_tls_inside_gives_the_sni() -> None:
    s, _, _ = session(dport=1080)
    s.on_data(greeting(0) + request("2001:db8::9", 443))
    hello = build_hello(sni=b"upload.partner.example", record_size=100)
    for i in range(0, len(hello), 9):
        s.on_data(hello[i:i + 9])
    assert (s.app, s.sni, s.encrypted, s.target_ip, s.wants_data) == \
        ("tls", "upload.partner.example", True, "2001:db8::9", False)


def test_a_domain_that_is_an_address_is_an_address() -> None:
    s, _, _ = session(dport=1080)
    s.on_data(greeting(0) + request(b"198.51.100.4", 8080) + GET)
    assert (s.host, s.target_ip) == ("inner.example:8080", "198.51.100.4")


def test_the_same_exchange_a_byte_at_a_time_gives_the_same_result() -> None:
    stream = greeting(0, 2) + userpass() + request(b"api.partner.example", 80) + GET + GET
    s, rec, _ = session(dport=21477)
    for i in range(len(stream)):
        s.on_data(stream[i:i + 1])
    s.on_close()
    assert (s.app, s.host, s.requests, len(rec.requests)) == ("http", "api.partner.example", 2, 2)


@pytest.mark.parametrize("command", [2, 3])
def test_bind_and_udp_associate_leave_the_flow_opaque(command: int) -> None:
    s, _, sink = session(dport=1080)
    s.on_data(greeting(0) + request(b"api.partner.example", 80, command) + GET)
    assert (s.app, s.host, s.requests, s.wants_data) == ("socks5", None, 0, False)
    assert not sink.records


def test_an_opaque_protocol_inside_keeps_the_flow_socks5() -> None:
    s, _, _ = session(dport=1080)
    s.on_data(greeting(0) + request(b"db.partner.example", 5432) + b"\x00\x00\x00\x08\x04\xd2\x16\x2f")
    assert (s.app, s.host, s.wants_data) == ("socks5", "db.partner.example", False)


def test_socks5_inside_socks5_is_not_followed() -> None:
    s, _, _ = session(dport=1080)
    inner = greeting(0) + request(b"second.example", 80) + GET
    s.on_data(greeting(0) + request(b"first.example", 1080) + inner)
    assert (s.app, s.host, s.requests, s.wants_data) == ("socks5", "first.example", 0, False)


# -- hostile exchanges -------------------------------------------------------------------------------------

HOSTILE = [
    ("request_version_4", greeting(0) + b"\x04\x01\x00\x01" + bytes(6), "malformed_socks5"),
    ("request_command_9", greeting(0) + b"\x05\x09\x00\x01" + bytes(6), "malformed_socks5"),
    ("reserved_byte_set", greeting(0) + b"\x05\x01\x07\x01" + bytes(6), "malformed_socks5"),
    ("address_type_2", greeting(0) + b"\x05\x01\x00\x02" + bytes(6), "malformed_socks5"),
    ("empty_domain", greeting(0) + b"\x05\x01\x00\x03\x00\x00\x50", "malformed_socks5"),
    ("empty_username", greeting(2) + b"\x01\x00\x00", "malformed_socks5"),
    ("junk_after_greeting", greeting(0) + b"\x47ET / HTTP/1.1\r\n", "malformed_socks5"),
    ("gssapi", greeting(1) + b"\x01\x01\x00\x04abcd", "unsupported_socks5_auth"),
    ("private_method", greeting(0x80) + b"\x42" * 20, "unsupported_socks5_auth"),
    ("second_sub_negotiation", greeting(2) + userpass() + userpass(), "malformed_socks5"),
]


@pytest.mark.parametrize(("name", "stream", "anomaly"), HOSTILE, ids=[c[0] for c in HOSTILE])
def test_a_broken_handshake_is_an_anomaly_and_the_flow_opaque(name: str, stream: bytes, anomaly: str) -> None:
    s, _, sink = session(dport=1080, strict=False)
    s.on_data(stream)
    s.on_data(GET)
    s.on_close()
    assert (s.app, s.host, s.requests, s.wants_data) == ("socks5", None, 0, False)
    assert [(r.layer, r.name) for r in sink.records] == [("socks5", anomaly)]


def test_a_domain_that_is_no_host_name_names_nothing_and_the_tunnel_is_still_read() -> None:
    s, _, sink = session(dport=1080, strict=False)
    s.on_data(greeting(0) + request(b"138-1234-5678", 80) + GET)
    assert (s.app, s.host, s.requests) == ("http", "inner.example:8080", 1)
    (record,) = sink.records
    assert (record.layer, record.name) == ("socks5", "bad_host") and "digits+separators(13)" in record.detail


@pytest.mark.parametrize("cut", [2, 5, 40], ids=["greeting", "sub-negotiation", "request"])
def test_a_handshake_cut_by_the_close_or_a_gap_is_an_anomaly(cut: int) -> None:
    stream = greeting(0, 2) + userpass() + request(b"api.partner.example", 80)
    for end in ("close", "gap"):
        s, _, sink = session(dport=1080, strict=False)
        s.on_data(stream[:cut])
        if end == "gap":
            s.on_gap(100)
            s.on_data(GET)
        s.on_close()
        assert (s.app, s.host, s.requests, s.wants_data) == ("socks5", None, 0, False)
        assert [(r.layer, r.name) for r in sink.records] == [("socks5", "socks5_incomplete")]


def test_credentials_are_never_in_an_anomaly_or_a_result() -> None:
    broken = greeting(2) + userpass() + b"\x05\x01\x00\x09" + USER + PASSWORD
    s, _, sink = session(dport=1080, strict=False)
    s.on_data(broken)
    s.on_close()
    good, _, sink2 = session(dport=1080, strict=False)
    good.on_data(greeting(2) + userpass() + request(b"a.example", 80) + GET)
    good.on_close()
    for records in (sink.records, sink2.records):
        for r in records:
            assert not any(secret in r.detail for secret in ("zhangsan", "13812345678", "S3cret")), r
    texts = [repr(getattr(x, slot, None)) for x in (s, good) for slot in type(x).__slots__]
    assert not any("S3cret" in t or "zhangsan" in t for t in texts)


@settings(max_examples=150, deadline=None)
@given(tail=st.binary(max_size=700), methods=st.sampled_from([(0,), (2,), (0, 2), (1, 2), (0x80,)]),
       cut=st.integers(min_value=0, max_value=700))
def test_arbitrary_bytes_after_a_greeting_never_raise(tail: bytes, methods: tuple[int, ...],
                                                      cut: int) -> None:
    s, _, _ = session(dport=1080, strict=False)
    s.on_data(greeting(*methods) + tail[:cut])
    s.on_data(tail[cut:])
    s.on_close()
    assert s.app in ("socks5", "http", "tls")


def test_the_client_half_holds_at_most_one_message() -> None:
    client = Socks5Client()
    assert client.feed(greeting(0, 2)) is None
    assert client.feed(b"\x01\xff" + b"u" * 255 + b"\xff" + b"p" * 200) is None
    assert client.pending == 2 + 255 + 1 + 200          # the unfinished sub-negotiation, nothing else
    assert client.feed(b"p" * 55 + request("10.1.2.3", 443) + b"tail") == b"tail"
    assert client.target == Socks5Target(command=1, port=443, ip="10.1.2.3") and client.pending == 0


# -- the server's half -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("stream", "method", "reply", "refused"), [
    (b"\x05\x00" + b"\x05\x00\x00\x01\x0a\x00\x00\x02\x00\x50", 0, 0, False),       # the real capture's
    (b"\x05\x02\x01\x00" + b"\x05\x05\x00\x04" + bytes(16) + b"\x01\xbb", 2, 5, False),  # connection refused
    (b"\x05\x00\x05\x00\x00\x03\x09proxy.lan\x1f\x90", 0, 0, False),
    (b"\x05\xff", 0xFF, None, True),                                                # no acceptable method
    (b"\x05\x02\x01\x01", 2, None, True),                                           # credentials refused
])
def test_the_server_half_gives_the_method_and_the_reply(stream: bytes, method: int, reply: int | None,
                                                        refused: bool) -> None:
    for pieces in ([stream], [stream[i:i + 1] for i in range(len(stream))]):
        server = Socks5Server()
        done = [server.feed(p) for p in pieces]
        assert done[-1] and not any(done[:-1])
        assert (server.method, server.reply, server.refused, server.problem) == (method, reply, refused, None)


@pytest.mark.parametrize(("stream", "anomaly"), [
    (b"\x04\x5a", "malformed_socks5"), (b"\x05\x01", "unsupported_socks5_auth"),
    (b"\x05\x02\x05\x00", "malformed_socks5"), (b"\x05\x00\x04\x00\x00\x01" + bytes(6), "malformed_socks5"),
    (b"\x05\x00\x05\x00\x00\x07" + bytes(6), "malformed_socks5"),
])
def test_a_broken_server_half_is_a_problem(stream: bytes, anomaly: str) -> None:
    server = Socks5Server()
    assert not server.feed(stream)
    assert server.problem is not None and server.problem[0] == anomaly


# -- the real capture --------------------------------------------------------------------------------------

def test_the_real_socks5_capture_gives_its_http_request_with_the_host_tshark_shows(tmp_path: Path) -> None:
    # tshark 4.0 on l3_ipv4-frag-tcp-socks5-http.pcap (TCP in IPv4 fragments, SOCKS5 to 10.0.0.2:21477, a
    # domain-name CONNECT to www.google.com:80): one request, GET, Host www.google.com, in tcp.stream 0.
    flows = run_agent(REAL_PCAPS / "l3_ipv4-frag-tcp-socks5-http.pcap", tmp_path)
    assert flows == [(1637, 21477, "http", "www.google.com", 1)]


def dns_answers(*pairs: tuple[str, str]) -> bytes:
    msg = dpkt.dns.DNS(id=7)
    msg.qr = dpkt.dns.DNS_R
    msg.qd = [dpkt.dns.DNS.Q(name=pairs[0][0], type=dpkt.dns.DNS_A)]
    msg.an = []
    for name, ip in pairs:
        rr = dpkt.dns.DNS.RR(name=name, type=dpkt.dns.DNS_A, cls=dpkt.dns.DNS_IN, ttl=60)
        rr.ip = socket.inet_aton(ip)
        msg.an.append(rr)
    return bytes(msg)


def test_an_address_connect_is_named_by_the_dns_name_of_the_target_not_of_the_proxy(tmp_path: Path) -> None:
    # A client resolves both names, then asks the proxy (203.0.113.10:1080) for 198.51.100.7:5432 by address
    # and speaks an opaque protocol: the proxy's own DNS name must not become the flow's server_name.
    client, resolver = Host("10.1.0.5", "02:00:00:00:00:05"), Host("10.1.0.1", "02:00:00:00:00:01")
    proxy = Host("203.0.113.10", "02:00:00:00:00:0a")
    cap, ids = Capture(now_us=1_700_000_000_000_000), IpIds()
    answers = dns_answers(("proxy.example", proxy.ip), ("db.partner.example", "198.51.100.7"))
    cap.emit(udp_frame(ids, resolver, client, 53, 40001, answers))
    conn = TcpConn(cap, ids, client, proxy, 40002, 1080, isn_c=1000, isn_s=5000)
    conn.handshake()
    conn.send(greeting(0))
    conn.recv(b"\x05\x00")
    conn.send(request("198.51.100.7", 5432))
    conn.recv(b"\x05\x00\x00\x01" + bytes(6))
    conn.send(b"\x00\x00\x00\x08\x04\xd2\x16\x2f")
    conn.close()
    capture = tmp_path / "socks5-by-address.pcap"
    capture.write_bytes(pcap_bytes(cap.frames))
    flows = run_agent(capture, tmp_path)
    assert (40002, 1080, "socks5", "db.partner.example", 0) in flows
