"""HTTP/2 requests (RFC 9113) from real client byte streams (the `h2` library), whatever the segmentation,
and hostile frame streams that must stay bounded and never raise."""

from __future__ import annotations

import gzip
import random

import pytest
from hpack import Encoder
from hyperframe.frame import ContinuationFrame, DataFrame, HeadersFrame, SettingsFrame
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.anomalies import AnomalySink
from agent.protocols.http import HttpRequest, HttpRequestStream
from agent.protocols.http2 import (
    MAX_HELD_HEADERS,
    MAX_OPEN_STREAMS,
    PREFACE,
    Http2Connection,
    is_h2_preface,
)
from agent.protocols.http2_streams import MAX_HEADER_BLOCK
from tests.agent.h2pair import H2Pair, Sent

MB = 1 << 20


class Run:
    """An Http2Connection with its requests and anomalies."""

    def __init__(self, *, strict: bool = True, max_body: int = MB, max_decoded: int = MB,
                 upgraded: HttpRequest | None = None, expect_preface: bool = True) -> None:
        self.sink = AnomalySink(strict=strict, max_per_flow=10_000)
        self.requests: list[HttpRequest] = []
        self.conn = Http2Connection(flow_id="F1", anomalies=self.sink, max_body_bytes=max_body,
                                    max_decompressed_bytes=max_decoded, on_request=self.requests.append,
                                    expect_preface=expect_preface, upgraded_request=upgraded)

    def feed(self, transcript: list[tuple[bool, bytes]], cuts: random.Random | None = None) -> Run:
        for from_client, data in transcript:
            pos = 0
            while pos < len(data):
                n = len(data) - pos if cuts is None else cuts.randint(1, 40)
                self.conn.feed(data[pos: pos + n], from_client)
                pos += n
        return self

    def names(self) -> list[str]:
        return [r.name for r in self.sink.records]


def expected(sent: Sent) -> HttpRequest:
    headers = list(sent.headers) + list(sent.trailers)
    ct = next((v for n, v in sent.headers if n == "content-type"), None)
    return HttpRequest(method=sent.method, target=sent.path, version="HTTP/2", host=sent.authority.lower(),
                       headers=tuple(headers), content_type=ct, body=sent.body, body_truncated=False)


def send_all(pair: H2Pair, sents: list[Sent], order: random.Random | None = None,
             pad: bool = False) -> list[Sent]:
    """Open one stream per request, interleave their DATA in pieces, end them in a shuffled order; the
    requests in the order their END_STREAM was sent."""
    ids = []
    for sent in sents:
        sid = pair.client.get_next_available_stream_id()
        ids.append(sid)
        pair.client.send_headers(sid, sent.header_block(), end_stream=False)
    left = {i: s.wire_body() for i, s in enumerate(sents)}
    rnd = order or random.Random(0)
    while any(left.values()):
        i = rnd.choice([k for k, v in left.items() if v])
        n = rnd.randint(1, 5000)
        chunk, left[i] = left[i][:n], left[i][n:]
        pair.client.send_data(ids[i], chunk, pad_length=rnd.randint(0, 40) if pad else None)
        pair.exchange()
    ends = list(range(len(sents)))
    rnd.shuffle(ends)
    for i in ends:
        trailers = sents[i].trailers
        if trailers:
            pair.client.send_headers(ids[i], [(n.encode(), v.encode()) for n, v in trailers], end_stream=True)
        else:
            pair.client.end_stream(ids[i])
    pair.exchange()
    return [sents[i] for i in ends]


SENTS = [
    Sent("POST", "/api/users", "API.Example.com", [("content-type", "application/json"),
                                                  ("content-encoding", "gzip")],
         body=b'{"name": "x", "phone": "13812345678"}' * 300, gzip=True),
    Sent("PUT", "/upload?x=1", "api.example.com:8443", [("content-type", "text/plain")], body=b"a" * 70000,
         trailers=[("x-checksum", "abc")]),
    Sent("POST", "/three", "api.example.com", [("user-agent", "t"), ("cookie", "a=1"), ("cookie", "b=2")],
         body=bytes(range(256)) * 10),
]


def test_interleaved_streams_with_padding_gzip_and_trailers_are_the_requests_sent() -> None:
    pair = H2Pair()
    order = send_all(pair, SENTS, pad=True)
    run = Run().feed(pair.transcript)
    run.conn.close()
    assert run.requests == [expected(s) for s in order]
    assert run.conn.requests == 3 and run.conn.first_authority == order[0].authority.lower()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32), n=st.integers(1, 5), pad=st.booleans())
def test_any_segmentation_gives_exactly_the_requests_sent(seed: int, n: int, pad: bool) -> None:
    rnd = random.Random(seed)
    sents = [Sent(rnd.choice(["POST", "PUT", "PATCH"]), f"/p/{i}?q={rnd.randint(0, 9)}", "h.example.org",
                  [("content-type", "application/json"), ("x-n", str(i))] + ([("content-encoding", "gzip")]
                                                                             if i % 2 else []),
                  body=rnd.randbytes(rnd.randint(0, 9000)), gzip=bool(i % 2),
                  trailers=[("grpc-status", "0")] if rnd.random() < 0.3 else [])
             for i in range(n)]
    pair = H2Pair()
    order = send_all(pair, sents, random.Random(seed + 1), pad)
    run = Run().feed(pair.transcript, random.Random(seed + 2))
    assert run.requests == [expected(s) for s in order]
    run.conn.close()
    assert run.conn.done and len(run.requests) == n


def frame_types(wire: bytes) -> list[int]:
    """The frame types of a client byte stream (after its preface)."""
    types, pos = [], len(PREFACE)
    while pos + 9 <= len(wire):
        types.append(wire[pos + 3])
        pos += 9 + int.from_bytes(wire[pos: pos + 3], "big")
    return types


def test_headers_over_one_frame_use_continuation_and_the_dynamic_table_across_requests() -> None:
    pair = H2Pair()
    big = "v" * 40000   # over SETTINGS_MAX_FRAME_SIZE 16384: HEADERS + CONTINUATION frames
    token = "t0k3n-" * 50   # 300 bytes, indexed in the dynamic table by the first request
    sents = [Sent("GET", f"/r{i}", "cdn.example.net", [("x-token", token), ("accept", "*/*")])
             for i in range(20)]
    sents.insert(3, Sent("GET", "/big", "cdn.example.net", [("x-big", big)]))
    for s in sents:
        sid = pair.client.get_next_available_stream_id()
        pair.client.send_headers(sid, s.header_block(), end_stream=True)
    pair.exchange()
    wire = pair.client_bytes()
    assert ContinuationFrame.type in frame_types(wire)
    assert len(wire) < 40000 + 20 * 300   # the token travels once, then as an index
    run = Run().feed(pair.transcript, random.Random(3))
    assert run.requests == [expected(s) for s in sents]


def test_the_servers_max_frame_size_allows_larger_frames_without_an_anomaly() -> None:
    pair = H2Pair({h2_max_frame(): 1 << 20})
    sent = Sent("POST", "/big", "x.example.com", [], body=b"z" * 300000)
    pair.client.send_headers(1, sent.header_block())
    pair.client.send_data(1, sent.body, end_stream=True)   # one DATA frame: h2 refuses frames over the max
    pair.exchange()
    assert Run().feed(pair.transcript).requests == [expected(sent)]   # strict: no frame_too_large
    # Without the server's SETTINGS (its direction not captured) the large frames are noted and still read.
    run = Run(strict=False).feed([(c, d) for c, d in pair.transcript if c])
    assert run.requests == [expected(sent)] and run.names() == ["frame_too_large"]


def h2_max_frame() -> int:
    return int(SettingsFrame.MAX_FRAME_SIZE)


def test_a_reset_stream_is_handed_over_with_what_it_sent_marked_truncated() -> None:
    pair = H2Pair()
    pair.client.send_headers(1, Sent("POST", "/u", "a.example.com", []).header_block())
    pair.client.send_data(1, b"partial body")
    pair.client.reset_stream(1)
    pair.client.send_headers(3, Sent("GET", "/after", "a.example.com", []).header_block(), end_stream=True)
    pair.exchange()
    run = Run().feed(pair.transcript)
    assert [(r.target, r.body, r.body_truncated) for r in run.requests] == [
        ("/u", b"partial body", True), ("/after", b"", False)]


def test_the_flow_budget_is_shared_by_streams() -> None:
    pair = H2Pair()
    a = Sent("POST", "/a", "b.example.com", [], body=b"1" * 1000)
    b = Sent("POST", "/b", "b.example.com", [], body=b"2" * 1000)
    pair.client.send_headers(1, a.header_block())
    pair.client.send_headers(3, b.header_block())
    pair.client.send_data(3, b.body[:600])
    pair.client.send_data(1, a.body, end_stream=True)
    pair.client.send_data(3, b.body[600:], end_stream=True)
    pair.exchange()
    run = Run(max_body=1500).feed(pair.transcript)
    # The budget is the flow's, taken as DATA arrives: b keeps its first 600 bytes, a 900, nothing more.
    assert [(r.target, len(r.body), r.body_truncated) for r in run.requests] == [
        ("/a", 900, True), ("/b", 600, True)]


def test_a_gzip_bomb_stops_at_the_decoded_cap() -> None:
    pair = H2Pair()
    bomb = Sent("POST", "/bomb", "b.example.com", [("content-encoding", "gzip")], body=b"\0" * (8 * MB),
                gzip=True)
    pair.client.send_headers(1, bomb.header_block())
    pair.client.send_data(1, bomb.wire_body(), end_stream=True)
    pair.exchange()
    run = Run(strict=False, max_decoded=MB).feed(pair.transcript)
    assert [(r.body, r.body_truncated) for r in run.requests] == [(b"\0" * MB, True)]
    assert run.names() == ["decompression_limit"]


def test_a_gap_in_the_client_direction_ends_parsing_and_hands_over_open_streams() -> None:
    pair = H2Pair()
    pair.client.send_headers(1, Sent("POST", "/open", "c.example.com", []).header_block())
    pair.client.send_data(1, b"abc")
    pair.exchange()
    run = Run(strict=False).feed(pair.transcript)
    run.conn.gap(100, True)
    assert run.conn.done and run.names() == ["content_gap"]
    assert [(r.target, r.body, r.body_truncated) for r in run.requests] == [("/open", b"abc", True)]
    run.conn.feed(b"\0" * 100, True)   # ignored once done
    assert len(run.requests) == 1


def test_a_server_gap_only_stops_reading_server_settings() -> None:
    pair = H2Pair()
    sent = Sent("GET", "/", "d.example.com", [])
    pair.client.send_headers(1, sent.header_block(), end_stream=True)
    pair.exchange()
    run = Run()
    run.conn.gap(10, False)
    run.feed(pair.transcript)
    assert run.requests == [expected(sent)] and not run.conn.done


def test_an_authority_that_is_no_host_name_is_an_anomaly_without_its_value() -> None:
    pair = H2Pair()
    pair.client.send_headers(1, Sent("GET", "/", "13812345678", []).header_block(), end_stream=True)
    pair.exchange()
    run = Run(strict=False).feed(pair.transcript)
    assert run.requests[0].host is None and run.conn.first_authority is None
    (record,) = run.sink.records
    assert record.name == "bad_host" and "13812345678" not in record.detail and "digits(11)" in record.detail


def test_upgrade_h2c_the_upgrade_request_is_stream_1_and_not_counted_again() -> None:
    upgrade = (b"GET /start HTTP/1.1\r\nHost: up.example.com\r\nConnection: Upgrade, HTTP2-Settings\r\n"
               b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n")
    pair = H2Pair({int(SettingsFrame.MAX_FRAME_SIZE): 1 << 20}, upgrade=True)
    sent = Sent("POST", "/next", "up.example.com", [], body=b"after upgrade")
    assert send_all(pair, [sent]) == [sent]
    client = upgrade + pair.client_bytes()
    # The switch as the session makes it: HTTP/1 framing until it stops at the preface (a tunnel), then
    # HTTP/2 with the bytes from the preface on (`rest`) and every later byte.
    http1 = HttpRequestStream(MB, MB, AnomalySink(strict=True), "F1")
    pos, handed = 0, []
    while not http1.tunnel:
        handed += http1.feed(client[pos: pos + 7])
        pos += 7
    assert [r.target for r in handed] == ["/start"] and http1.done
    run = Run(upgraded=handed[0])
    run.conn.feed(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n", False)
    run.conn.feed(pair.server_bytes(), False)
    run.conn.feed(http1.rest, True)
    run.feed([(True, client[pos:])], random.Random(5))
    assert run.requests == [expected(sent)]
    assert run.conn.requests == 1 and run.conn.first_authority == "up.example.com"
    # The server's SETTINGS are read with or without the 101 head before them.
    for head in (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", b""):
        other = Run(upgraded=handed[0])
        other.conn.feed(head + pair.server_bytes(), False)
        assert other.conn.client.max_frame == 1 << 20


def test_prior_knowledge_on_an_http_port_hands_the_preface_over_as_well() -> None:
    pair = H2Pair()
    sent = Sent("GET", "/pk", "pk.example.com", [])
    pair.client.send_headers(1, sent.header_block(), end_stream=True)
    pair.exchange()
    http1 = HttpRequestStream(MB, MB, AnomalySink(), "F1")
    assert http1.feed(pair.client_bytes()) == [] and http1.done
    assert http1.tunnel and http1.rest == pair.client_bytes()
    run = Run()
    run.conn.feed(http1.rest, True)
    assert run.requests == [expected(sent)]


def test_prior_knowledge_sniff() -> None:
    assert is_h2_preface(PREFACE + b"\0\0") is True
    assert is_h2_preface(PREFACE[:10]) is None
    assert is_h2_preface(b"PRI * HTTP/1.1") is False and is_h2_preface(b"GET / HTTP/1.1\r\n") is False


def test_a_bad_preface_is_one_anomaly_and_the_end() -> None:
    run = Run(strict=False)
    run.conn.feed(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n", True)
    assert run.conn.done and run.names() == ["bad_preface"]


def test_streams_over_the_cap_are_not_followed_and_open_ones_are_handed_over_at_close() -> None:
    pair = H2Pair({int(SettingsFrame.MAX_CONCURRENT_STREAMS): 1000})
    for _ in range(MAX_OPEN_STREAMS + 10):
        sid = pair.client.get_next_available_stream_id()
        pair.client.send_headers(sid, Sent("POST", f"/{sid}", "e.example.com", []).header_block())
    pair.exchange()
    run = Run(strict=False).feed(pair.transcript)
    run.conn.close()
    assert len(run.requests) == MAX_OPEN_STREAMS and all(r.body_truncated for r in run.requests)
    assert run.names().count("too_many_streams") == 10 and run.names()[-1] == "message_incomplete"


def test_header_fields_held_by_open_streams_are_bounded_per_connection() -> None:
    pair = H2Pair({int(SettingsFrame.MAX_CONCURRENT_STREAMS): 1000})
    big = "h" * 60000    # larger than the dynamic table: sent in full on each stream
    for _ in range(20):
        sid = pair.client.get_next_available_stream_id()
        block = Sent("POST", f"/{sid}", "e.example.com", [("x-big", big)]).header_block()
        pair.client.send_headers(sid, block)
    pair.exchange()
    run = Run(strict=False).feed(pair.transcript)
    followed = MAX_HELD_HEADERS // (60000 + len("x-big") + 32 + sum(len(n) + len(v) + 32 for n, v in [
        (":method", "POST"), (":scheme", "http"), (":authority", "e.example.com"), (":path", "/1")]))
    assert run.names().count("too_many_streams") == 20 - followed > 0
    run.conn.close()
    assert [r.target for r in run.requests] == [f"/{2 * i + 1}" for i in range(followed)]


# -- hostile input ----------------------------------------------------------------------------------------

def frame_bytes(frame: HeadersFrame | ContinuationFrame | DataFrame) -> bytes:
    return bytes(frame.serialize())


def raw_header(length: int, ftype: int, flags: int, sid: int) -> bytes:
    return length.to_bytes(3, "big") + bytes([ftype, flags]) + sid.to_bytes(4, "big")


def test_a_continuation_flood_stops_at_the_cap() -> None:
    head = HeadersFrame(1)
    head.data = Encoder().encode([(b":method", b"GET")])
    flood = frame_bytes(head) + frame_bytes(ContinuationFrame(1)) * 10_000
    run = Run(strict=False)
    run.conn.feed(PREFACE + flood, True)
    assert run.conn.done and run.names() == ["header_block_too_long"] and not run.requests


def test_an_hpack_bomb_stops_at_the_header_list_cap() -> None:
    # One 4000-byte entry in the dynamic table, then 2000 one-byte references to it: 8 MB decoded.
    block = b"\x40\x01x" + _hpack_string(b"a" * 4000) + b"\xbe" * 2000
    frame = HeadersFrame(1, flags=["END_HEADERS", "END_STREAM"])
    frame.data = block
    run = Run(strict=False)
    run.conn.feed(PREFACE + frame_bytes(frame), True)
    assert run.conn.done and run.names() == ["hpack_error"] and not run.requests


def _hpack_string(value: bytes) -> bytes:
    from hpack.hpack import encode_integer

    return bytes(encode_integer(len(value), 7)) + value


def test_a_giant_data_frame_is_streamed_not_buffered() -> None:
    run = Run(strict=False, max_body=1000)
    head = HeadersFrame(1, flags=["END_HEADERS"])
    head.data = Encoder().encode([(b":method", b"POST"), (b":path", b"/"), (b":authority", b"g.example.com")])
    run.conn.feed(PREFACE + frame_bytes(head) + raw_header((1 << 24) - 1, 0, 1, 1), True)
    for _ in range(16):
        run.conn.feed(b"x" * MB, True)
        assert run.conn.client.held < 2 * 9
    assert [(len(r.body), r.body_truncated) for r in run.requests] == [(1000, True)]
    assert run.names() == ["frame_too_large"]


def test_a_giant_headers_frame_is_refused_at_once() -> None:
    run = Run(strict=False)
    run.conn.feed(PREFACE + raw_header(MAX_HEADER_BLOCK + 1, 1, 4, 1) + b"x" * 1000, True)
    assert run.conn.done and "frame_too_large" in run.names() and run.conn.client.held == 0


@settings(max_examples=200, deadline=None)
@given(junk=st.binary(max_size=3000), seed=st.integers(0, 1000))
def test_random_bytes_after_the_preface_never_raise_and_stay_bounded(junk: bytes, seed: int) -> None:
    run = Run(strict=False)
    run.feed([(True, PREFACE + junk), (False, junk)], random.Random(seed))
    assert run.conn.client.held <= len(junk)
    run.conn.close()
    assert run.conn.done


@settings(max_examples=100, deadline=None)
@given(flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=8))
def test_corrupted_real_streams_never_raise(flips: list[tuple[int, int]]) -> None:
    pair = H2Pair()
    send_all(pair, SENTS[1:], pad=True)
    wire = bytearray(pair.client_bytes())
    for pos, value in flips:
        wire[len(PREFACE) + pos % (len(wire) - len(PREFACE))] = value
    run = Run(strict=False)
    run.feed([(True, bytes(wire))], random.Random(len(flips)))
    run.conn.close()
    assert run.conn.done and all(len(r.body) <= MB for r in run.requests)


@pytest.mark.parametrize("payload", [gzip.compress(b"{}"), b""])
def test_data_on_a_stream_never_opened_is_an_anomaly(payload: bytes) -> None:
    run = Run(strict=False)
    data = DataFrame(7, flags=["END_STREAM"])
    data.data = payload
    run.conn.feed(PREFACE + frame_bytes(data), True)
    assert run.names() == ["data_on_idle_stream"] and not run.requests and not run.conn.done
