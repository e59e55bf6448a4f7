"""HTTP/3 requests out of decrypted QUIC (RFC 9114, QPACK RFC 9204): a real aioquic client and server in
memory, the flow decrypted with the client's logged secrets, the requests compared with what was sent; and
the HTTP/3 reader fed by hand (blocked header blocks, FIN order, budgets, hostile bytes)."""

from __future__ import annotations

import gzip
import json
import random
import shutil
import socket
import subprocess
from pathlib import Path

import dpkt
import pylsqpack
import pytest
from aioquic.buffer import Buffer
from aioquic.tls import CipherSuite, Epoch
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.anomalies import AnomalySink
from agent.protocols.http import HttpRequest
from agent.protocols.http3 import Http3Requests
from agent.protocols.quic import QuicFlow
from agent.protocols.quic_wire import VERSION_1, VERSION_2
from tests.agent.quic_harness import CLIENT, SERVER, H3Session, Headers, KeyLog

AUTHORITY = b"api.example.com"


def base(method: bytes, path: bytes, *extra: tuple[bytes, bytes]) -> Headers:
    return [(b":method", method), (b":scheme", b"https"), (b":authority", AUTHORITY), (b":path", path),
            *extra]


def decrypt(session: H3Session, **kw) -> tuple[QuicFlow, list[HttpRequest], AnomalySink]:
    requests: list[HttpRequest] = []
    sink = AnomalySink(strict=True)
    flow = QuicFlow(on_request=requests.append, anomalies=sink, keylog=KeyLog(session.keylog_text),
                    max_body_bytes=kw.pop("max_body_bytes", 1 << 22),
                    max_decompressed_bytes=kw.pop("max_decompressed_bytes", 1 << 22), **kw)
    for outbound, payload in session.datagrams:
        flow.on_datagram(outbound, payload)
    flow.close()
    return flow, requests, sink


def expected(headers: Headers, body: bytes, trailers: Headers = ()) -> tuple:
    """What the agent must report for a request sent as `headers` + `body` (+ trailers)."""
    fields = [(n.decode(), v.decode()) for n, v in [*headers, *trailers] if not n.startswith(b":")]
    pseudo = {n: v.decode() for n, v in headers if n.startswith(b":")}
    coded = any(n == "content-encoding" and v == "gzip" for n, v in fields)
    content_type = next((v for n, v in fields if n == "content-type"), None)
    return (pseudo[b":method"], pseudo[b":path"], "HTTP/3", pseudo[b":authority"], tuple(fields),
            content_type, gzip.decompress(body) if coded else body, False, False)


def as_tuple(r: HttpRequest) -> tuple:
    return (r.method, r.target, r.version, r.host, r.headers, r.content_type, r.body, r.body_truncated,
            r.malformed)


PERSON = {"name": "Wang Fang", "id_card": "110101199003074514", "phone": "+86 138 1234 5678",
          "email": "wang.fang@example.cn", "address": "北京市朝阳区建国路 88 号"}


@pytest.mark.parametrize(("version", "suites"), [
    (VERSION_1, None),
    (VERSION_2, None),
    (VERSION_1, [CipherSuite.AES_256_GCM_SHA384]),
    (VERSION_2, [CipherSuite.CHACHA20_POLY1305_SHA256]),
])
def test_requests_equal_what_was_sent(version: int, suites: list[CipherSuite] | None) -> None:
    session = H3Session(version=version, cipher_suites=suites)
    rng = random.Random(7)
    big = bytes(rng.getrandbits(8) for _ in range(300_000))            # incompressible: ~250 packets
    people = json.dumps([{**PERSON, "seq": i} for i in range(50)], ensure_ascii=False).encode()
    sent = [
        (base(b"POST", b"/v1/users", (b"content-type", b"application/json"), (b"x-tenant", b"acme-cn")),
         json.dumps(PERSON, ensure_ascii=False).encode(), ()),
        (base(b"POST", b"/v1/bulk", (b"content-type", b"application/json"), (b"content-encoding", b"gzip"),
              (b"x-tenant", b"acme-cn")), gzip.compress(people), ()),
        (base(b"PUT", b"/blob/1", (b"content-type", b"application/octet-stream"), (b"x-tenant", b"acme-cn")),
         big, ()),
        (base(b"GET", b"/v1/users?phone=13812345678", (b"x-tenant", b"acme-cn")), b"", ()),
        (base(b"POST", b"/v1/events", (b"content-type", b"text/plain"), (b"x-tenant", b"acme-cn")),
         b"login ok", [(b"x-checksum", b"abc123")]),
    ]
    for headers, body, trailers in sent:
        session.request(headers, body, trailers=list(trailers) or None)
        session.pump()
    assert session.h3_client._encoder_bytes_sent > 0            # the client used QPACK's dynamic table
    assert len(session.received) == len(sent)                     # the server got them all
    flow, requests, _ = decrypt(session)
    assert (flow.decrypted, flow.reason, flow.alpn, flow.version) == (True, None, "h3", version)
    assert [as_tuple(r) for r in requests] == [expected(*s) for s in sent]


def test_several_streams_at_once_and_two_key_updates() -> None:
    session = H3Session()
    heads = [base(b"POST", f"/part/{i}".encode(), (b"content-type", b"application/json")) for i in range(9)]
    bodies = [json.dumps({**PERSON, "part": i}, ensure_ascii=False).encode() * 40 for i in range(9)]
    for phase in range(3):
        if phase:
            session.client.request_key_update()
        for i in range(3 * phase, 3 * phase + 3):
            session.request(heads[i], bodies[i])     # three streams interleaved in the same packets
        session.pump()
    # aioquic went phase 0 -> 1 -> 0: the third group needs the second generation of keys, not the first.
    assert session.client._cryptos[Epoch.ONE_RTT].key_phase == 0
    _, requests, _ = decrypt(session)
    assert sorted((r.target, r.body) for r in requests) == [(f"/part/{i}", bodies[i]) for i in range(9)]


def budgeted(requests: list[tuple[bytes, bytes, bytes]]) -> tuple[list[HttpRequest], AnomalySink]:
    session = H3Session()
    for path, body, coding in requests:
        session.request(base(b"POST", path, (b"content-encoding", coding)), body)
        session.pump()
    sink = AnomalySink()
    out: list[HttpRequest] = []
    flow = QuicFlow(on_request=out.append, anomalies=sink, keylog=KeyLog(session.keylog_text),
                    max_body_bytes=7000, max_decompressed_bytes=10_000)
    for outbound, payload in session.datagrams:
        flow.on_datagram(outbound, payload)
    return out, sink


def test_the_body_budget_is_per_flow() -> None:
    (a, b), _ = budgeted([(b"/a", b"x" * 5000, b"identity"), (b"/b", b"y" * 5000, b"identity")])
    assert (a.body, a.body_truncated) == (b"x" * 5000, False)
    assert (b.body, b.body_truncated) == (b"y" * 2000, True)          # the flow's budget ran out


def test_a_decompression_bomb_is_cut_at_the_message_limit() -> None:
    (bomb,), sink = budgeted([(b"/bomb", gzip.compress(bytes(2_000_000)), b"gzip")])
    assert bomb.body == bytes(10_000) and bomb.body_truncated
    assert sink.counts["decompression_limit"] == 1


# -- the HTTP/3 reader fed by hand ------------------------------------------------------------------------

def frame(kind: int, payload: bytes) -> bytes:
    b = Buffer(capacity=len(payload) + 16)
    b.push_uint_var(kind)
    b.push_uint_var(len(payload))
    b.push_bytes(payload)
    return b.data


def reader(sink: AnomalySink | None = None) -> tuple[Http3Requests, list[HttpRequest]]:
    out: list[HttpRequest] = []
    h3 = Http3Requests(out.append, max_body_bytes=1 << 20, max_decompressed_bytes=1 << 20,
                       anomalies=sink or AnomalySink(strict=True))
    settings_frame = frame(0x04, bytes([0x01, 0x50, 0x00, 0x07, 0x10]))   # QPACK capacity 4096, blocked 16
    h3.server_stream(3, b"\x00" + settings_frame, False)
    return h3, out


def test_a_blocked_header_block_waits_for_the_encoder_stream() -> None:
    h3, out = reader()
    encoder = pylsqpack.Encoder()
    h3.client_stream(2, b"\x02" + encoder.apply_settings(4096, 16), False)   # Set Dynamic Table Capacity
    headers = [(b":method", b"POST"), (b":scheme", b"https"), (b":authority", b"Blocked.Example.com"),
               (b":path", b"/x"), (b"x-custom-field", b"value-1")]
    _, first = encoder.encode(0, headers)
    inserts, second = encoder.encode(4, headers)   # lsqpack indexes what it saw before; this block uses it
    assert inserts
    h3.client_stream(0, frame(0x01, first), True)
    h3.client_stream(4, frame(0x01, second) + frame(0x00, b"hello"), True)
    assert [r.target for r in out] == ["/x"]                         # stream 4 is blocked until the inserts
    h3.client_stream(2, inserts, False)
    assert [(r.method, r.host, r.headers, r.body) for r in out[1:]] == [
        ("POST", "blocked.example.com", (("x-custom-field", "value-1"),), b"hello")]


def test_requests_are_handed_on_in_fin_order_and_retransmissions_are_not_requests() -> None:
    h3, out = reader()
    encoder = pylsqpack.Encoder()
    _, block0 = encoder.encode(0, [(b":method", b"GET"), (b":path", b"/zero"), (b":authority", b"a.example")])
    _, block4 = encoder.encode(4, [(b":method", b"GET"), (b":path", b"/four"), (b":authority", b"a.example")])
    h3.client_stream(0, frame(0x01, block0), False)
    h3.client_stream(4, frame(0x01, block4), True)
    h3.client_stream(0, b"", True)
    h3.client_stream(4, frame(0x01, block4), True)                  # a late duplicate of a finished stream
    assert [r.target for r in out] == ["/four", "/zero"]


def test_a_bad_authority_is_no_host_and_a_missing_method_is_malformed() -> None:
    sink = AnomalySink()
    h3, out = reader(sink)
    encoder = pylsqpack.Encoder()
    _, block = encoder.encode(0, [(b":path", b"/"), (b":authority", b"+86 138 1234 5678")])
    h3.client_stream(0, frame(0x01, block), True)
    (request,) = out
    assert (request.host, request.malformed, request.method) == (None, True, "")
    (record,) = [r for r in sink.records if r.name == "bad_host"]
    assert "1234" not in record.detail and "digits" in record.detail


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 15), st.binary(max_size=300), st.booleans()), max_size=12))
def test_hostile_stream_bytes_never_raise(chunks: list[tuple[int, bytes, bool]]) -> None:
    h3, _ = reader(AnomalySink(max_per_flow=10_000))
    for stream_id, data, fin in chunks:
        if stream_id & 1:
            h3.server_stream(stream_id | 3, data, fin)
        else:
            h3.client_stream(stream_id, data, fin)
    h3.close()


def test_a_packet_of_the_old_key_phase_reordered_behind_the_update_still_opens() -> None:
    session = H3Session()
    session.request(base(b"POST", b"/before", (b"content-type", b"text/plain")), b"old phase")
    session.pump()
    boundary = len(session.datagrams)
    session.client.request_key_update()
    session.request(base(b"POST", b"/after", (b"content-type", b"text/plain")), b"new phase")
    session.pump()
    datagrams = list(session.datagrams)
    old = max(i for i in range(boundary) if datagrams[i][0])               # the client's last old-phase one
    new = next(i for i in range(boundary, len(datagrams)) if datagrams[i][0])
    datagrams.insert(new, datagrams.pop(old))                               # arrives after the first new one
    session.datagrams = datagrams
    _, requests, sink = decrypt(session)                                    # strict: a failure would raise
    assert sorted(r.target for r in requests) == ["/after", "/before"] and not sink.counts


def test_a_request_cut_by_the_close_is_handed_on_truncated() -> None:
    sink = AnomalySink()
    h3, out = reader(sink)
    _, block = pylsqpack.Encoder().encode(0, base(b"POST", b"/upload"))
    h3.client_stream(0, frame(0x01, block) + frame(0x00, b"first half of it")[:-4], False)
    h3.client_stream(8, b"\x01", False)           # half a frame header: nothing to hand on
    h3.close()
    assert [(r.target, r.body, r.body_truncated) for r in out] == [("/upload", b"first half o", True)]
    assert sink.counts["request_incomplete"] == 2


def write_pcap(path: Path, datagrams: list[tuple[bool, bytes]]) -> None:
    """The session's datagrams as an Ethernet/IPv4/UDP capture, client 10.0.0.1:50000, server port 443."""
    with path.open("wb") as f:
        writer = dpkt.pcap.Writer(f)
        for i, (from_client, payload) in enumerate(datagrams):
            ports = (CLIENT[1], SERVER[1]) if from_client else (SERVER[1], CLIENT[1])
            hosts = (CLIENT[0], SERVER[0]) if from_client else (SERVER[0], CLIENT[0])
            udp = dpkt.udp.UDP(sport=ports[0], dport=ports[1], data=payload)
            udp.ulen = 8 + len(payload)
            ip = dpkt.ip.IP(src=socket.inet_aton(hosts[0]), dst=socket.inet_aton(hosts[1]), p=17, data=udp)
            ip.len = 20 + udp.ulen
            writer.writepkt(dpkt.ethernet.Ethernet(type=0x0800, data=ip), ts=1_700_000_000 + i / 1000)


def test_request_streams_agree_with_tshark(tmp_path: Path) -> None:
    if shutil.which("tshark") is None:
        pytest.skip("tshark not available")
    session = H3Session()
    for i in range(7):
        session.request(base(b"POST", f"/r/{i}".encode(), (b"content-type", b"application/json")),
                        json.dumps({**PERSON, "n": i}, ensure_ascii=False).encode() * (1 + 30 * (i % 2)))
        session.pump()
    write_pcap(tmp_path / "h3.pcap", session.datagrams)
    (tmp_path / "keys.log").write_text(session.keylog_text)
    out = subprocess.run(
        ["tshark", "-r", str(tmp_path / "h3.pcap"), "-o", f"tls.keylog_file:{tmp_path / 'keys.log'}",
         "-Y", "http3.frame_type == 1 && udp.dstport == 443", "-T", "fields", "-e", "quic.stream.stream_id"],
        capture_output=True, text=True, check=True, timeout=120).stdout
    tshark_streams = {int(s) for line in out.split() for s in line.split(",") if int(s) % 4 == 0}
    _, requests, _ = decrypt(session)
    assert len(requests) == len(tshark_streams) == 7
    assert sorted(r.target for r in requests) == [f"/r/{i}" for i in range(7)]
