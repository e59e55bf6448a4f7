"""QUIC recognition, Initial decryption (SNI / ALPN with no secrets) and decryption with logged secrets:
real captures (v1 to Google, v2 on port 4443 with an embedded key log, checked against tshark), a real aioquic
connection in memory, hand-built Initial packets, and hostile input."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import replace
from functools import cache
from pathlib import Path

import pytest
from aioquic.buffer import Buffer
from aioquic.quic.crypto import CryptoPair
from aioquic.tls import CipherSuite
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.anomalies import AnomalySink
from agent.capture import open_capture
from agent.decode import Decoder
from agent.protocols.http import HttpRequest
from agent.protocols.quic import QuicFlow, QuicLimits, is_quic
from agent.protocols.quic_keys import initial_contexts
from agent.protocols.quic_wire import VERSION_1, VERSION_2
from agent.protocols.tls import parse_client_hello, parse_handshake_client_hello
from tests.agent.quic_harness import H3Session, KeyLog, pcapng_secrets
from tests.agent.test_tls import client_stream
from tests.conftest import REAL_PCAPS

V1_GOOGLE = REAL_PCAPS / "quic_v1-http3-curl-google.pcap"
V2_DSB = REAL_PCAPS / "quic_v2-sll-dsb.pcapng"
GET = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"api.example.com"), (b":path", b"/a")]


@cache
def udp_datagrams(path: Path) -> tuple[tuple[bool, int, bytes], ...]:
    """(from the client, destination port, payload) of a capture's UDP packets, through the agent's reader."""
    if not path.exists():
        pytest.skip(f"real captures not present in {REAL_PCAPS}")
    sink = AnomalySink()
    decoder = Decoder(sink)
    out, client = [], None
    for ts, linktype, frame in open_capture(path, sink):
        packet = decoder.decode(ts, linktype, frame)
        if packet is None or packet.proto != 17:
            continue
        if client is None:
            client = (packet.src, packet.sport)
        out.append(((packet.src, packet.sport) == client, packet.dport, packet.payload))
    return tuple(out)


def run(datagrams, keylog=None, sink=None, **kw) -> tuple[QuicFlow, list[HttpRequest]]:
    requests: list[HttpRequest] = []
    sink = sink or AnomalySink(strict=True)
    flow = QuicFlow(on_request=requests.append, anomalies=sink, keylog=keylog, **kw)
    for item in datagrams:
        flow.on_datagram(item[0], item[-1])
    flow.close()
    return flow, requests


# -- recognition ------------------------------------------------------------------------------------------

def long_header(version: int, first: int = 0xC3, dcid: bytes = b"\x01" * 8) -> bytes:
    scid = b"\x02" * 8
    cids = bytes([len(dcid)]) + dcid + bytes([len(scid)]) + scid
    return bytes([first]) + version.to_bytes(4, "big") + cids + b"\x00" * 40


@pytest.mark.parametrize("version", [VERSION_1, VERSION_2, 0xFF00001D, 0xFF000020])
def test_known_versions_are_quic(version: int) -> None:
    assert is_quic(long_header(version))
    assert is_quic(long_header(version, first=0x83))      # a greased fixed bit (RFC 9287)


def test_version_negotiation_is_quic_and_strangers_are_not() -> None:
    vn = b"\x80" + b"\0\0\0\0" + b"\x08" + b"\x01" * 8 + b"\x08" + b"\x02" * 8 + VERSION_1.to_bytes(4, "big")
    assert is_quic(vn)
    assert not is_quic(vn + b"\x01")                                    # versions come in 4 bytes
    assert not is_quic(long_header(0x0A0A0A0A))                           # unknown (greased) version
    assert not is_quic(long_header(VERSION_1, dcid=b"\x01" * 21))         # CID over 20 bytes
    assert not is_quic(b"\x40" + b"\x01" * 30)                            # short header: no version
    assert not is_quic(b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00")   # a DNS query
    assert not is_quic(b"\xc3\x00\x00")


def test_quic_v2_on_port_4443_is_recognised() -> None:
    outbound, port, payload = udp_datagrams(V2_DSB)[0]
    assert outbound and port == 4443 and is_quic(payload)


@pytest.mark.parametrize(("version", "client_secret"), [
    (VERSION_1, "c00cf151ca5be075ed0ebfb5c80323c42d6b7db67881289af4008f1f6c357aea"),    # RFC 9001 §A.1
    (VERSION_2, "14ec9d6eb9fd7af83bf5a668bc17a7e283766aade7ecd0891f70f9ff7f4bf47b"),    # RFC 9369 §A.1
    (0xFF00001D, "0088119288f1d866733ceeed15ff9d50902cf82952eee27e9d4d4918ea371d87"),   # draft-29 §A.1
])
def test_initial_secrets_match_the_published_vectors(version: int, client_secret: str) -> None:
    client, server = initial_contexts(bytes.fromhex("8394c8f03e515708"), version)
    assert client.secret == bytes.fromhex(client_secret)
    assert server.secret != client.secret and server.version == version


# -- real captures ----------------------------------------------------------------------------------------

def test_v1_google_names_the_server_without_secrets() -> None:
    flow, requests = run(udp_datagrams(V1_GOOGLE))
    assert flow.sni == "www.google.de"
    assert flow.alpn_offered == ("h3", "h3-29", "h3-28", "h3-27") and flow.alpn == "h3"
    assert flow.version == VERSION_1 and flow.handshake.cipher_suite == CipherSuite.AES_128_GCM_SHA256
    assert flow.client_random is not None and len(flow.client_random) == 32
    assert (flow.visibility, flow.reason, flow.decrypted, requests) == ("encrypted", "no_secrets", False, [])


def test_a_corrupted_server_initial_is_an_anomaly_but_no_verdict_on_secrets() -> None:
    datagrams = [list(d) for d in udp_datagrams(V1_GOOGLE)]
    assert not datagrams[1][0]
    datagrams[1][2] = datagrams[1][2][:200] + bytes([datagrams[1][2][200] ^ 1]) + datagrams[1][2][201:]
    sink = AnomalySink()
    flow, _ = run(datagrams, sink=sink)
    assert sink.counts["decrypt_failed"] == 1 and flow.failures == 0
    assert (flow.sni, flow.reason) == ("www.google.de", "no_secrets")


def test_v2_without_secrets_names_the_server() -> None:
    flow, requests = run(udp_datagrams(V2_DSB))
    assert (flow.sni, flow.alpn, flow.version) == ("test", "h3", VERSION_2)
    assert (flow.visibility, flow.reason, requests) == ("encrypted", "no_secrets", [])


def tshark_request_streams(path: Path, keylog: Path) -> set[int]:
    """Client-initiated bidirectional streams that carry an HTTP/3 HEADERS frame, as tshark decrypts them."""
    out = subprocess.run(
        ["tshark", "-r", str(path), "-o", f"tls.keylog_file:{keylog}", "-Y", "http3.frame_type == 1 && "
         "udp.dstport == 4443", "-T", "fields", "-e", "quic.stream.stream_id"],
        capture_output=True, text=True, check=True, timeout=120).stdout
    return {int(s) for line in out.split() for s in line.split(",") if int(s) % 4 == 0}


def test_v2_with_the_embedded_key_log_decrypts_http3_like_tshark(tmp_path: Path) -> None:
    keys = pcapng_secrets(V2_DSB)
    sink = AnomalySink(strict=True)
    flow, requests = run(udp_datagrams(V2_DSB), keylog=KeyLog(keys), sink=sink)
    assert (flow.decrypted, flow.reason, flow.visibility, flow.alpn) == (True, None, "decrypted", "h3")
    assert [(r.method, r.target, r.host, r.version, r.headers) for r in requests] == [
        ("GET", path, "test", "HTTP/3", (("user-agent", "H3Zero/1.0"),))
        for path in ("/index.html", "/test.html", "/1234567")]
    if shutil.which("tshark") is None:
        pytest.skip("tshark not available")
    (tmp_path / "keys.log").write_text(keys)
    assert len(requests) == len(tshark_request_streams(V2_DSB, tmp_path / "keys.log")) == 3


def test_a_key_log_for_another_connection_is_no_secrets() -> None:
    other = H3Session()
    flow, requests = run(udp_datagrams(V2_DSB), keylog=KeyLog(other.keylog_text))
    assert (flow.sni, flow.reason, flow.decrypted, requests) == ("test", "no_secrets", False, [])


# -- a real aioquic connection ----------------------------------------------------------------------------

def session_with_request(**kw) -> H3Session:
    session = H3Session(**kw)
    session.request(GET)
    session.pump()
    return session


def test_in_memory_connection_without_secrets_is_named_and_counted() -> None:
    session = session_with_request()
    flow, requests = run(session.datagrams)
    assert (flow.sni, flow.alpn, flow.reason, flow.visibility, requests) == (
        "api.example.com", "h3", "no_secrets", "encrypted", [])


@pytest.mark.parametrize("version", [VERSION_1, VERSION_2])
def test_after_a_retry_the_initial_keys_follow_the_new_connection_id(version: int) -> None:
    session = session_with_request(retry=True, version=version)
    assert session.datagrams[1][1][0] & 0xB0 in (0xB0, 0x80)            # the server's Retry (v1 / v2 type)
    flow, requests = run(session.datagrams, keylog=KeyLog(session.keylog_text))
    assert (flow.sni, flow.alpn, flow.decrypted, [r.target for r in requests]) == (
        "api.example.com", "h3", True, ["/a"])


def test_wrong_secret_values_are_decrypt_failed_anomalies_and_no_plaintext() -> None:
    session = session_with_request()
    keylog = KeyLog(session.keylog_text)
    keylog.secrets = {k: bytes(len(v)) for k, v in keylog.secrets.items()}   # right randoms, wrong secrets
    sink = AnomalySink()
    flow, requests = run(session.datagrams, keylog=keylog, sink=sink)
    assert (flow.sni, flow.decrypted, flow.reason) == ("api.example.com", False, "decrypt_failed")
    assert requests == []
    assert sink.counts["decrypt_failed"] > 0
    assert {r.layer for r in sink.records if r.name == "decrypt_failed"} == {"quic"}


def test_a_corrupted_packet_is_an_anomaly_and_the_rest_still_decrypts() -> None:
    session = H3Session()
    session.request(GET)
    session.pump()
    before = len(session.datagrams)
    session.request(replace_path(GET, b"/b"))
    session.pump()
    datagrams = list(session.datagrams)
    # The client's first datagram of the second request: flip a byte of its ciphertext.
    index = next(i for i in range(before, len(datagrams)) if datagrams[i][0])
    bad = bytearray(datagrams[index][1])
    bad[-3] ^= 0x55
    datagrams[index] = (True, bytes(bad))
    sink = AnomalySink()
    flow, requests = run(datagrams, keylog=KeyLog(session.keylog_text), sink=sink)
    assert sink.counts["decrypt_failed"] == 1
    assert flow.decrypted and [r.target for r in requests] == ["/a"]   # /b lost its only packet: no request


def replace_path(headers: list[tuple[bytes, bytes]], path: bytes) -> list[tuple[bytes, bytes]]:
    return [(n, path if n == b":path" else v) for n, v in headers]


def test_secrets_logged_late_are_waited_for_and_retry_decrypts() -> None:
    session = session_with_request()
    keylog = KeyLog()
    requests: list[HttpRequest] = []
    flow = QuicFlow(on_request=requests.append, anomalies=AnomalySink(strict=True), keylog=keylog)
    for outbound, data in session.datagrams:
        flow.on_datagram(outbound, data)
    assert requests == [] and not flow.decrypted and flow.sni == "api.example.com"
    keylog.secrets = KeyLog(session.keylog_text).secrets         # the key log file grew
    flow.retry()
    assert [r.target for r in requests] == ["/a"] and flow.decrypted and flow.reason is None


def test_key_wait_is_bounded_and_gives_up_with_no_secrets() -> None:
    session = H3Session()
    session.request(GET, body=bytes(range(256)) * 64)
    session.pump()
    sink = AnomalySink()
    limits = replace(QuicLimits(), max_pending_bytes=4000)
    flow, requests = run(session.datagrams, keylog=KeyLog(), sink=sink, limits=limits)
    assert (flow.reason, requests, sink.counts["key_wait_exceeded"]) == ("no_secrets", [], 1)


def test_a_bare_handshake_message_parses_like_the_record_it_came_in() -> None:
    # QUIC carries the ClientHello without the TLS record layer; tls.py reads it alike (a real 1.7 KB hello).
    stream = client_stream("tls13_chrome-x25519-kyber-big-hello.pcap")
    message = stream[5: 5 + int.from_bytes(stream[3:5], "big")]
    assert parse_handshake_client_hello(message) == parse_client_hello(stream)
    assert parse_handshake_client_hello(message).sni == "lh3.google.com"
    assert parse_handshake_client_hello(message[:-1]) is None
    assert parse_handshake_client_hello(b"\x02" + message[1:]) is None


# -- hand-built Initials: a ClientHello split over several packets, out of order ---------------------------

def client_hello(sni: bytes, padding: int) -> bytes:
    def ext(kind: int, body: bytes) -> bytes:
        return kind.to_bytes(2, "big") + len(body).to_bytes(2, "big") + body
    name = b"\x00" + len(sni).to_bytes(2, "big") + sni
    extensions = (ext(0, (len(name)).to_bytes(2, "big") + name) + ext(16, b"\x00\x03\x02h3")
                  + ext(43, b"\x02\x03\x04") + ext(21, bytes(padding)))
    body = (b"\x03\x03" + bytes(range(32)) + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00"
            + len(extensions).to_bytes(2, "big") + extensions)
    return b"\x01" + len(body).to_bytes(3, "big") + body


CLIENT_CID, SERVER_CID = b"\x0c" * 8, b"\x5e" * 8


def initial(dcid: bytes, pn: int, frames: bytes, version: int = VERSION_1, from_client: bool = True) -> bytes:
    """An Initial packet protected with aioquic's CryptoPair (keys from the public salt and `dcid`, the
    client's first Destination CID); the server's goes to the client's CID."""
    frames = frames + bytes(max(0, 1162 - len(frames)))              # PADDING to a full-size datagram
    header = Buffer(capacity=64)
    header.push_uint8(0xC3 if version == VERSION_1 else 0xD3)        # Initial, 4-byte packet number
    header.push_uint32(version)
    for cid in (dcid, CLIENT_CID) if from_client else (CLIENT_CID, SERVER_CID):
        header.push_uint8(len(cid))
        header.push_bytes(cid)
    header.push_uint_var(0)                                           # no token
    header.push_uint16(0x4000 | (4 + len(frames) + 16))
    header.push_uint32(pn)
    pair = CryptoPair()
    pair.setup_initial(dcid, is_client=from_client, version=version)
    return pair.encrypt_packet(header.data, frames, pn)


def crypto_frame(offset: int, data: bytes) -> bytes:
    b = Buffer(capacity=len(data) + 16)
    b.push_uint_var(6)
    b.push_uint_var(offset)
    b.push_uint_var(len(data))
    b.push_bytes(data)
    return b.data


@pytest.mark.parametrize("version", [VERSION_1, VERSION_2])
def test_a_big_client_hello_over_three_initials_in_any_order(version: int) -> None:
    hello = client_hello(b"split.example.com", padding=2500)
    dcid = b"\x83\x94\xc8\xf0\x3e\x51\x57\x08"
    parts = [(0, hello[:1000]), (1000, hello[1000:2000]), (2000, hello[2000:])]
    packets = [initial(dcid, pn, crypto_frame(off, data), version) for pn, (off, data) in enumerate(parts)]
    flow, _ = run([(True, packets[2]), (True, packets[0]), (True, packets[1])])
    assert (flow.sni, flow.alpn_offered) == ("split.example.com", ("h3",))
    assert flow.client_random == bytes(range(32))
    assert flow.version == version and flow.reason is None


def test_a_cipher_suite_quic_cannot_use_is_unsupported_cipher() -> None:
    dcid = b"\x83\x94\xc8\xf0\x3e\x51\x57\x08"
    body = b"\x03\x03" + bytes(32) + b"\x00" + b"\x13\x04" + b"\x00" + b"\x00\x00"   # TLS_AES_128_CCM_SHA256
    server_hello = b"\x02" + len(body).to_bytes(3, "big") + body
    keylog = KeyLog(f"CLIENT_TRAFFIC_SECRET_0 {bytes(range(32)).hex()} {bytes(32).hex()}")
    sink = AnomalySink()
    flow, requests = run([
        (True, initial(dcid, 0, crypto_frame(0, client_hello(b"ccm.example.com", 0)))),
        (False, initial(dcid, 0, crypto_frame(0, server_hello), from_client=False)),
        (True, b"\x43" + SERVER_CID + bytes(60)),                     # a 1-RTT packet of the client
    ], keylog=keylog, sink=sink)
    assert (flow.sni, flow.handshake.cipher_suite, flow.reason, requests) == (
        "ccm.example.com", 0x1304, "unsupported_cipher", [])
    assert sink.counts["unsupported_cipher"] == 1


# -- hostile input ----------------------------------------------------------------------------------------

@cache
def recorded() -> tuple[str, tuple[tuple[bool, bytes], ...]]:
    session = H3Session()
    session.request([*GET[:3], (b":path", b"/upload"), (b"content-type", b"application/json")],
                    body=b'{"phone": "13812345678"}')
    session.pump()
    return session.keylog_text, tuple(session.datagrams)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzzed_datagrams_never_raise(data: st.DataObject) -> None:
    keys, datagrams = recorded()
    sink = AnomalySink(max_per_flow=10_000)
    flow = QuicFlow(on_request=lambda r: None, anomalies=sink, keylog=KeyLog(keys))
    for outbound, payload in datagrams:
        if data.draw(st.booleans()):
            raw = bytearray(payload)
            for _ in range(data.draw(st.integers(1, 4))):
                raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
            payload = bytes(raw[: data.draw(st.integers(0, len(raw)))])
        flow.on_datagram(outbound, payload)
        if data.draw(st.integers(0, 9)) == 0:
            flow.on_datagram(data.draw(st.booleans()), data.draw(st.binary(max_size=1500)))
    flow.close()
    assert flow.reason in (None, "no_secrets", "decrypt_failed")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.binary(max_size=1400)), max_size=8))
def test_random_datagrams_never_raise(datagrams: list[tuple[bool, bytes]]) -> None:
    flow = QuicFlow(on_request=lambda r: None, anomalies=AnomalySink(), keylog=KeyLog())
    for outbound, payload in datagrams:
        flow.on_datagram(outbound, b"\xc3\x00\x00\x00\x01" + payload if payload[:1] == b"\x00" else payload)
    flow.close()
    assert flow.requests == 0
