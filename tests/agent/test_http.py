"""HTTP/1.x request framing (RFC 9112): tables of streams and the requests they must give."""

from __future__ import annotations

import gzip
import itertools
import zlib
from pathlib import Path

import brotli
import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from agent.anomalies import AnomalySink
from agent.cli import app
from agent.protocols.http import HttpRequest, HttpRequestStream
from tests.conftest import REAL_PCAPS

MB = 1 << 20


def frame(segments: list[bytes] | bytes, *, strict: bool = False, max_body: int = MB,
          max_decoded: int = MB) -> tuple[list[HttpRequest], AnomalySink]:
    sink = AnomalySink(strict=strict)
    stream = HttpRequestStream(max_body, max_decoded, sink, "F1")
    if isinstance(segments, bytes):
        segments = [segments]
    out: list[HttpRequest] = []
    for seg in segments:
        out += stream.feed(seg)
    out += stream.close()
    return out, sink


def summary(requests: list[HttpRequest]) -> list[tuple[str, str, bytes, bool]]:
    return [(r.method, r.target, r.body, r.body_truncated) for r in requests]


def chunked(*parts: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


def raw_deflate(data: bytes) -> bytes:
    c = zlib.compressobj(wbits=-15)
    return c.compress(data) + c.flush()


GET = b"GET /a?q=1 HTTP/1.1\r\nHost: api.example.com\r\n\r\n"
POST = (b"POST /b HTTP/1.1\r\nHost: api.example.com\r\nContent-Type: application/json\r\n"
        b'Content-Length: 11\r\n\r\n{"a":"xyz"}')
CHUNKED = (b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"4;name=value\r\nWiki\r\n5\r\npedia\r\n0\r\nX-Checksum: 1\r\n\r\n")
PIPELINE = GET + POST + CHUNKED + GET

CLEAN_STREAMS = [
    ("get_without_length_has_no_body", GET, [("GET", "/a?q=1", b"", False)]),
    ("content_length_body", POST, [("POST", "/b", b'{"a":"xyz"}', False)]),
    ("chunked_with_extension_and_trailer", CHUNKED, [("POST", "/c", b"Wikipedia", False)]),
    ("pipelined_requests", PIPELINE, [("GET", "/a?q=1", b"", False), ("POST", "/b", b'{"a":"xyz"}', False),
                                      ("POST", "/c", b"Wikipedia", False), ("GET", "/a?q=1", b"", False)]),
    ("bare_lf_line_endings", b"PUT /x HTTP/1.0\nContent-Length: 2\n\nokHEAD / HTTP/1.0\n\n",
     [("PUT", "/x", b"ok", False), ("HEAD", "/", b"", False)]),
    ("empty_lines_before_request_line", b"\r\n\r\n" + GET, [("GET", "/a?q=1", b"", False)]),
    ("odd_method_token", b"CCM_POST /cgi HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
     [("CCM_POST", "/cgi", b"abc", False)]),
    ("repeated_equal_content_length", b"POST / HTTP/1.1\r\nContent-Length: 2, 2\r\n\r\nhi",
     [("POST", "/", b"hi", False)]),
    ("content_length_zero", b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n" + GET,
     [("POST", "/", b"", False), ("GET", "/a?q=1", b"", False)]),
    ("get_with_content_length_body", b"GET / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc" + GET,
     [("GET", "/", b"abc", False), ("GET", "/a?q=1", b"", False)]),
    ("bodyless_post_followed_by_request", b"POST /p HTTP/1.1\r\nHost: h\r\n\r\n" + GET,
     [("POST", "/p", b"", False), ("GET", "/a?q=1", b"", False)]),
    ("body_ended_by_close_http10_style", b"POST /p HTTP/1.0\r\n\r\nname=value&x=1",
     [("POST", "/p", b"name=value&x=1", False)]),
    ("chunked_bare_lf_and_size_whitespace", b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"3 \nabc\n0\n\n", [("POST", "/", b"abc", False)]),
    ("upgrade_declined_then_next_request",
     b"GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n" + GET,
     [("GET", "/ws", b"", False), ("GET", "/a?q=1", b"", False)]),
]


@pytest.mark.parametrize(("name", "stream", "expected"), CLEAN_STREAMS, ids=[c[0] for c in CLEAN_STREAMS])
def test_clean_stream_is_framed_into_the_expected_requests(name: str, stream: bytes, expected: list) -> None:
    requests, _ = frame(stream, strict=name not in ("body_ended_by_close_http10_style",))
    assert summary(requests) == expected


@pytest.mark.parametrize(("name", "stream", "expected"), CLEAN_STREAMS, ids=[c[0] for c in CLEAN_STREAMS])
def test_feeding_one_byte_at_a_time_gives_the_same_requests(name: str, stream: bytes, expected: list) -> None:
    requests, _ = frame([stream[i:i + 1] for i in range(len(stream))])
    assert summary(requests) == expected


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cuts=st.lists(st.integers(min_value=0, max_value=len(PIPELINE)), max_size=12))
def test_any_split_of_the_same_stream_gives_the_same_requests(cuts: list[int]) -> None:
    points = [0, *sorted(cuts), len(PIPELINE)]
    segments = [PIPELINE[a:b] for a, b in itertools.pairwise(points)]
    assert frame(segments, strict=True)[0] == frame(PIPELINE, strict=True)[0]


def test_pipelined_requests_in_one_segment_are_all_framed() -> None:
    requests, _ = frame(GET * 50, strict=True)
    assert len(requests) == 50


def test_request_fields_are_reported_with_host_and_content_type() -> None:
    (request,), _ = frame(POST, strict=True)
    assert request.host == "api.example.com"
    assert request.content_type == "application/json"
    assert request.version == "HTTP/1.1"
    assert ("Content-Length", "11") in request.headers


def test_trailer_fields_are_appended_to_the_headers() -> None:
    (request,), _ = frame(CHUNKED, strict=True)
    assert request.headers[-1] == ("X-Checksum", "1")


def test_absolute_form_target_gives_the_host() -> None:
    (request,), _ = frame(b"GET http://proxy.example.org:8080/x HTTP/1.1\r\nHost: other\r\n\r\n", strict=True)
    assert request.host == "proxy.example.org:8080"


def test_obs_fold_is_joined_to_the_previous_field_with_an_anomaly() -> None:
    (request,), sink = frame(b"GET / HTTP/1.1\r\nX-Long: a\r\n  b\r\nHost: h\r\n\r\n")
    assert ("X-Long", "a b") in request.headers
    assert sink.counts["obs_fold"] == 1


# -- content codings ---------------------------------------------------------------------------------------

BODY = '{"name":"张三","mobile":"13800138000"}'.encode() * 20


def coded_post(coding: str, payload: bytes, *, chunks: int = 0) -> bytes:
    if chunks:
        size = max(1, len(payload) // chunks)
        parts = [payload[i:i + size] for i in range(0, len(payload), size)]
        return (f"POST /u HTTP/1.1\r\nContent-Encoding: {coding}\r\nTransfer-Encoding: chunked\r\n\r\n"
                .encode() + chunked(*parts))
    head = f"POST /u HTTP/1.1\r\nContent-Encoding: {coding}\r\nContent-Length: {len(payload)}\r\n\r\n"
    return head.encode() + payload


CODED = [
    ("gzip", gzip.compress(BODY), 0),
    ("gzip_chunked", gzip.compress(BODY), 7),
    ("x-gzip", gzip.compress(BODY), 0),
    ("deflate_zlib", zlib.compress(BODY), 0),
    ("deflate_raw", raw_deflate(BODY), 3),
    ("br", brotli.compress(BODY), 0),
    ("br_chunked", brotli.compress(BODY), 5),
    ("gzip_two_members", gzip.compress(BODY[:100]) + gzip.compress(BODY[100:]), 0),
]


@pytest.mark.parametrize(("case", "payload", "chunks"), CODED, ids=[c[0] for c in CODED])
def test_coded_body_is_decoded(case: str, payload: bytes, chunks: int) -> None:
    coding = {"deflate_zlib": "deflate", "deflate_raw": "deflate"}.get(case, case.split("_")[0])
    stream = coded_post(coding, payload, chunks=chunks) + GET
    for segments in ([stream], [stream[i:i + 3] for i in range(0, len(stream), 3)]):
        requests, _ = frame(segments, strict=True)
        assert summary(requests) == [("POST", "/u", BODY, False), ("GET", "/a?q=1", b"", False)]


def test_transfer_coding_gzip_before_chunked_is_decoded() -> None:
    stream = b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n" + chunked(gzip.compress(BODY))
    (request,), _ = frame(stream, strict=True)
    assert request.body == BODY


def test_gzip_bomb_is_cut_at_the_cap_with_an_anomaly() -> None:
    bomb = gzip.compress(b"\0" * (50 * MB))
    requests, sink = frame(coded_post("gzip", bomb) + GET, max_decoded=64 * 1024)
    assert [len(r.body) for r in requests] == [64 * 1024, 0]
    assert requests[0].body_truncated
    assert sink.counts["decompression_limit"] == 1


def test_brotli_bomb_is_cut_at_the_cap_with_an_anomaly() -> None:
    bomb = brotli.compress(b"a" * (20 * MB), quality=1)
    requests, sink = frame(coded_post("br", bomb), max_decoded=1000)
    assert requests[0].body == b"a" * 1000 and requests[0].body_truncated
    assert sink.counts["decompression_limit"] == 1


def test_body_labelled_gzip_that_is_not_gzip_is_kept_raw_with_an_anomaly() -> None:
    (request,), sink = frame(coded_post("gzip", b"plain=text"))
    assert request.body == b"plain=text"
    assert sink.counts["decompression_error"] == 1


def test_unknown_coding_keeps_the_raw_body_with_an_anomaly() -> None:
    (request,), sink = frame(coded_post("zstd", b"\x28\xb5\x2f\xfd"))
    assert request.body == b"\x28\xb5\x2f\xfd"
    assert sink.counts["unsupported_coding"] == 1


def test_gbk_body_bytes_are_left_untouched() -> None:
    body = "姓名=张三&身份证=330102199001011234".encode("gbk")
    stream = (b"POST / HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded; charset=GBK\r\n"
              b"Content-Length: %d\r\n\r\n" % len(body)) + body
    (request,), _ = frame(stream, strict=True)
    assert request.body == body
    assert request.content_type == "application/x-www-form-urlencoded; charset=GBK"


# -- budgets, gaps, truncation -----------------------------------------------------------------------------

def test_body_over_the_budget_is_truncated_and_the_next_request_still_framed() -> None:
    body = b"x" * 10_000
    stream = b"POST / HTTP/1.1\r\nContent-Length: 10000\r\n\r\n" + body + GET
    requests, _ = frame([stream[i:i + 1000] for i in range(0, len(stream), 1000)], strict=True, max_body=100)
    assert summary(requests) == [("POST", "/", b"x" * 100, True), ("GET", "/a?q=1", b"", False)]


def test_chunked_body_over_the_budget_keeps_framing() -> None:
    stream = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(b"a" * 50, b"b" * 50) + GET
    requests, _ = frame(stream, strict=True, max_body=60)
    assert summary(requests) == [("POST", "/", b"a" * 50 + b"b" * 10, True), ("GET", "/a?q=1", b"", False)]


def test_gap_in_a_body_truncates_it_and_framing_continues() -> None:
    sink = AnomalySink()
    stream = HttpRequestStream(MB, MB, sink, "F1")
    head = b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n"
    out = stream.feed(head + b"abc")
    stream.gap(4)
    out += stream.feed(b"hij" + GET)
    out += stream.close()
    assert summary(out) == [("POST", "/", b"abchij", True), ("GET", "/a?q=1", b"", False)]
    assert sink.counts["content_gap"] == 1


def test_gap_in_headers_resyncs_to_the_next_request_line() -> None:
    sink = AnomalySink()
    stream = HttpRequestStream(MB, MB, sink, "F1")
    out = stream.feed(b"GET /lost HTTP/1.1\r\nHo")
    stream.gap(100)
    out += stream.feed(b"st-tail: x\r\n\r\n" + POST)
    out += stream.close()
    assert [(r.target, r.body_truncated) for r in out] == [("/lost", True), ("/b", False)]


def test_gap_running_past_a_body_resyncs() -> None:
    sink = AnomalySink()
    stream = HttpRequestStream(MB, MB, sink, "F1")
    out = stream.feed(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nab")
    stream.gap(50)
    out += stream.feed(b"partial garbage\r\n" + GET)
    out += stream.close()
    assert summary(out) == [("POST", "/", b"ab", True), ("GET", "/a?q=1", b"", False)]


def test_close_in_the_middle_of_a_body_reports_it_truncated() -> None:
    requests, sink = frame(b"POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\nonly this")
    assert summary(requests) == [("POST", "/", b"only this", True)]
    assert sink.counts["message_incomplete"] == 1


# -- tunnels and the end of HTTP ---------------------------------------------------------------------------

TLS_BYTES = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(40))


@pytest.mark.parametrize(("head", "method"), [
    (b"CONNECT secure.example.com:443 HTTP/1.1\r\nHost: secure.example.com:443\r\n\r\n", "CONNECT"),
    (b"GET /chat HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n",
     "GET"),
])
def test_connect_and_upgrade_stop_framing_the_tunnel(head: bytes, method: str) -> None:
    sink = AnomalySink(strict=True)
    stream = HttpRequestStream(MB, MB, sink, "F1")
    requests = stream.feed(head + TLS_BYTES + GET)
    requests += stream.close()
    assert [r.method for r in requests] == [method]
    assert stream.tunnel and stream.done


def test_connect_reports_the_authority_as_host() -> None:
    (request,), _ = frame(b"CONNECT secure.example.com:443 HTTP/1.1\r\n\r\n", strict=True)
    assert request.host == "secure.example.com:443"


def test_http2_preface_ends_http1_framing_and_is_handed_on_whole() -> None:
    # After `Upgrade: h2c` the client sends the HTTP/2 preface: a tunnel whose first bytes are the preface.
    sink = AnomalySink(strict=True)
    stream = HttpRequestStream(MB, MB, sink, "F1")
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    assert stream.feed(preface + GET) == []
    assert stream.done and stream.tunnel and stream.rest == preface + GET


# -- malformed input ---------------------------------------------------------------------------------------

MALFORMED = [
    ("garbage_line_then_request", b"\x00\x01\x02 binary junk\r\n" + GET, "malformed_request_line"),
    ("request_line_without_version", b"GET /index.html\r\n" + GET, "malformed_request_line"),
    ("bad_chunk_size", b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n" + GET,
     "bad_chunk_size"),
    ("header_without_colon", b"GET /x HTTP/1.1\r\nNoColonHere\r\n\r\n" + GET, "malformed_field_line"),
    ("te_and_cl", b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
     + chunked(b"abc") + GET, "transfer_encoding_and_content_length"),
]


@pytest.mark.parametrize(("name", "stream", "anomaly"), MALFORMED, ids=[c[0] for c in MALFORMED])
def test_malformed_input_is_an_anomaly_and_framing_resumes(name: str, stream: bytes, anomaly: str) -> None:
    requests, sink = frame(stream)
    assert sink.counts[anomaly] >= 1
    assert summary(requests)[-1] == ("GET", "/a?q=1", b"", False)


def test_conflicting_content_lengths_read_the_body_to_the_close() -> None:
    requests, sink = frame(b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd")
    assert summary(requests) == [("POST", "/", b"abcd", False)]
    assert sink.counts["bad_content_length"] == 1


def test_endless_garbage_stops_framing() -> None:
    sink = AnomalySink()
    stream = HttpRequestStream(MB, MB, sink, "F1")
    junk = bytes(range(256)) * 400
    assert stream.feed(junk) == []
    assert stream.done and sink.counts["resync_failed"] == 1


def test_anomaly_details_never_carry_payload_bytes() -> None:
    secret = "330102199001011234"
    stream = f"{secret} {secret} HTTP/9.9\r\nGET /x HTTP/1.1\r\nX{secret}\r\n\r\n".encode()
    _, sink = frame(stream)
    assert sink.records
    assert all(secret not in r.detail and secret[:6] not in r.detail for r in sink.records)


PHONE, RID = "13812345678", "110105194912310021"


@pytest.mark.parametrize(("head", "anomaly", "described"), [
    (f"Content-Encoding: {PHONE}\r\nContent-Length: 1\r\n", "unsupported_coding", "digits(11)"),
    (f"Content-Encoding: gzip, {PHONE}, compress\r\nContent-Length: 1\r\n", "unsupported_coding",
     "digits(11),compress"),
    (f"Transfer-Encoding: {RID}\r\n", "bad_transfer_encoding", "final coding digits(18) is not chunked"),
    (f"Transfer-Encoding: {RID}\r\n", "unsupported_coding", "digits(18)"),
    ("Content-Length: 138-1234-5678\r\n", "bad_content_length", "digits+separators(13)"),
    (f"Content-Length: 5\r\nContent-Length: {PHONE}\r\n", "bad_content_length", "digits(11), digits(1)"),
    (f"{PHONE}: a\r\n {PHONE}\r\n", "obs_fold", "continuation of field digits(11)"),
    ("Accept: a\r\n b\r\n", "obs_fold", "continuation of field Accept"),     # a registered name is quoted
    ("X-Trace-Id: a\r\n b\r\n", "obs_fold", "continuation of field text(10)"),
    ("Host: 138-1234-5678\r\n", "bad_host", "digits+separators(13) is no host name"),
    ("Host: 张三\r\n", "bad_host", "non-ascii("),
])
def test_a_header_value_in_an_anomaly_is_described_never_quoted(head: str, anomaly: str,
                                                                described: str) -> None:
    requests, sink = frame(b"POST /x HTTP/1.1\r\n" + head.encode() + b"\r\nx")
    details = [r.detail for r in sink.records if r.name == anomaly]
    assert details and any(described in d for d in details), [(r.name, r.detail) for r in sink.records]
    for r in sink.records:
        assert PHONE not in r.detail and RID not in r.detail and "1234" not in r.detail, r
    if anomaly == "bad_host":
        assert requests and requests[0].host is None    # not a server name: no flow is named after it


@pytest.mark.parametrize("host", ["api.example.com", "api.example.com:8443", "10.0.0.1:80",
                                  "[2001:db8::1]:443", "localhost", "13812345678.example"])
def test_a_host_that_names_a_server_is_kept_without_an_anomaly(host: str) -> None:
    (request,), sink = frame(f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode(), strict=True)
    assert request.host == host and not sink.records


# -- naming: CONNECT targets, Host values, malformed request lines (issue 10 §2) -----------------------------

HOST_AFTER = b"Host: www.google.com\r\n\r\n"


@pytest.mark.parametrize(("target", "host", "tunnel"), [
    (b"secure.example.com:443", "secure.example.com:443", True),
    (b"10.0.0.1:8443", "10.0.0.1:8443", True),
    (b"[2001:db8::1]:443", "[2001:db8::1]:443", True),
    (b"/", "www.google.com", False),                         # origin-form: no authority, Host names it
    (b"secure.example.com", "www.google.com", False),        # authority-form needs the port (RFC 9112 §3.2.3)
    (b"user@secure.example.com:443", "www.google.com", False),
    (b"13812345678:443", "www.google.com", False),           # a phone number is no host
    (b"a.example\x01:443", "www.google.com", False),
])
def test_only_an_authority_names_a_connect_and_anything_else_falls_back_to_host(
        target: bytes, host: str, tunnel: bool) -> None:
    sink = AnomalySink()
    stream = HttpRequestStream(MB, MB, sink, "F1")
    requests = stream.feed(b"CONNECT " + target + b" HTTP/1.1\r\n" + HOST_AFTER + GET)
    requests += stream.close()
    assert requests[0].host == host
    assert stream.tunnel is tunnel
    if not tunnel:
        # No tunnel opens for a target that is no authority (the server must refuse it): framing goes on.
        assert [r.method for r in requests] == ["CONNECT", "GET"]
        assert sink.counts["bad_host"] == 1


def test_an_absolute_form_authority_that_is_no_host_falls_back_to_host() -> None:
    (request,), sink = frame(b"GET http://a.example\x00/x HTTP/1.1\r\n" + HOST_AFTER)
    assert request.host == "www.google.com" and sink.counts["bad_host"] == 1


@pytest.mark.parametrize("value", [
    b"a.example\x00", b"a.example\x00evil.example", b"\x00", b"a.example\x1f", b"\x1fa.example",
    b"a.example\x0b", b"a.example:80\x0c", b"a.example\x85", b"a.example\xa0", b"a.exa\x7fmple",
    b"a.example:8\x000", b"[2001:db8::1\x00]:443", b"a.example\r", b"a.example:\xd9\xa1",
])
def test_a_host_with_control_bytes_names_no_server_and_is_an_anomaly(value: bytes) -> None:
    (request,), sink = frame(b"GET / HTTP/1.1\r\nHost: " + value + b"\r\n\r\n")
    assert request.host is None
    assert sink.counts["bad_host"] == 1


@pytest.mark.parametrize(("value", "host"), [
    (b" \ta.example \t", "a.example"),          # OWS around a field value is not part of it (RFC 9110 §5.5)
    (b"A.Example.:8080", "A.Example.:8080"),
])
def test_optional_whitespace_around_a_host_is_not_part_of_it(value: bytes, host: str) -> None:
    (request,), _ = frame(b"GET / HTTP/1.1\r\nHost: " + value + b"\r\n\r\n", strict=True)
    assert request.host == host


# Request lines of http_methods-put-delete-odd.pcap that tshark reads as requests: a registered method alone
# or followed by anything, or any method token with an "HTTP/" version attempt after it.
SALVAGED = [
    (b"OPTIONS HTTP/1.1", "OPTIONS", "", "HTTP/1.1"),
    (b"OPTIONS", "OPTIONS", "", ""),
    (b"TRACE /HTTP/1.1", "TRACE", "/HTTP/1.1", ""),
    (b"GET / HTTP/1.", "GET", "/", "HTTP/1."),
    (b"CCM_POST /HTTP/1.1", "CCM_POST", "/HTTP/1.1", ""),
    (b"CCM_POST / HTTP/1.", "CCM_POST", "/", "HTTP/1."),
    (b"CONNECT / HTTP/1.", "CONNECT", "/", "HTTP/1."),
    (b"DELETE  /x  HTTP/1.x ", "DELETE", "/x", "HTTP/1.x"),
    (b"GET /index.html", "GET", "/index.html", ""),          # an HTTP/0.9 simple request (RFC 1945 §4.1)
]


@pytest.mark.parametrize(("line", "method", "target", "version"), SALVAGED,
                         ids=[c[0].decode() for c in SALVAGED])
@pytest.mark.parametrize("eol", [b"\n", b"\r\n"])
def test_a_malformed_request_line_is_counted_and_its_host_kept(line: bytes, method: str, target: str,
                                                              version: str, eol: bytes) -> None:
    stream = line + eol + HOST_AFTER.replace(b"\r\n", eol) + GET
    for segments in ([stream], [stream[i:i + 1] for i in range(len(stream))]):
        requests, sink = frame(segments)
        assert [(r.method, r.target, r.version, r.host, r.malformed) for r in requests] == [
            (method, target, version, "www.google.com", True),
            ("GET", "/a?q=1", "HTTP/1.1", "api.example.com", False)]
        # CONNECT's "/" is no authority as well: the Host field names it, with its own anomaly.
        assert dict(sink.counts) == {"malformed_request_line": 1} | ({"bad_host": 1} if target == "/" and
                                                                     method == "CONNECT" else {})


@pytest.mark.parametrize("line", [b"OPTIONS", b"GET /index.html", b"OPTIONS HTTP/1.1"])
def test_a_malformed_request_line_directly_followed_by_a_request_ends_there(line: bytes) -> None:
    requests, sink = frame(line + b"\r\n" + GET)
    assert [(r.method, r.host, r.malformed) for r in requests] == [
        (line.split()[0].decode(), None, True), ("GET", "api.example.com", False)]
    assert dict(sink.counts) == {"malformed_request_line": 1}


@pytest.mark.parametrize("line", [
    b"GET/ HTTP/1.1", b"OPTIONSHTTP/1.1", b"\xc3\x83\xc3\x82\xc3\x83 / HTTP/1.", b"FOO", b"FOO /x",
    b"\x00\x01\x02 binary junk", b"OPTIONS\x00",
])
def test_a_line_that_is_no_request_is_skipped_with_its_fields(line: bytes) -> None:
    requests, sink = frame(line + b"\r\n" + HOST_AFTER + GET)
    assert [(r.target, r.host) for r in requests] == [("/a?q=1", "api.example.com")]
    assert sink.counts["malformed_request_line"] == 1


def test_a_salvaged_request_with_a_body_is_framed_by_its_fields() -> None:
    requests, _ = frame(b"POST /x HTTP/1.\r\nHost: h.example\r\nContent-Length: 5\r\n\r\nhello" + GET)
    assert [(r.method, r.body, r.malformed) for r in requests] == [("POST", b"hello", True),
                                                                   ("GET", b"", False)]


def test_a_malformed_connect_opens_no_tunnel() -> None:
    sink = AnomalySink()
    stream = HttpRequestStream(MB, MB, sink, "F1")
    requests = stream.feed(b"CONNECT a.example:443 HTTP/1.\r\n" + HOST_AFTER + GET) + stream.close()
    assert [r.method for r in requests] == ["CONNECT", "GET"] and not stream.tunnel


def run_agent(capture: Path, tmp_path: Path) -> list[tuple]:
    """The flows `egress-agent run --pcap` writes for a real capture: (src_port, dst_port, app, server_name,
    requests), ordered by the client port."""
    if not capture.is_file():
        pytest.skip(f"{capture} is absent")
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(f"agent_id: naming\nsubject_key_file: {tmp_path / 'test.key'}\n")
    out = tmp_path / "spool"
    result = CliRunner().invoke(app, ["run", "--pcap", str(capture), "--config", str(cfg), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return duckdb.sql(f"SELECT src_port, dst_port, app, server_name, requests "
                      f"FROM read_parquet('{out}/flows/*.parquet') ORDER BY src_port").fetchall()


def test_the_odd_methods_capture_names_every_flow_tshark_names(tmp_path: Path) -> None:
    # tshark 4.0 (`-Y http.request -T fields -e tcp.stream -e http.host -e http.request.method`): 27 requests
    # on 27 connections, each with Host www.google.com; 19 of them have a malformed request line (`OPTIONS`,
    # `OPTIONS HTTP/1.1`, `GET / HTTP/1.`, `TRACE /HTTP/1.1`, `CONNECT / HTTP/1.1`...).
    flows = run_agent(REAL_PCAPS / "http_methods-put-delete-odd.pcap", tmp_path)
    named = [f for f in flows if f[3] is not None]
    assert len(named) == 27 and {f[3] for f in named} == {"www.google.com"}
    assert sum(f[4] for f in flows) == 27 and all(f[2] == "http" for f in named)


@settings(max_examples=80, deadline=None)
@given(data=st.binary(max_size=600), cut=st.integers(min_value=0, max_value=600))
def test_arbitrary_bytes_never_raise(data: bytes, cut: int) -> None:
    requests, _ = frame([GET + data[:cut], data[cut:]])
    assert all(isinstance(r, HttpRequest) for r in requests)


# -- efficiency --------------------------------------------------------------------------------------------

def test_one_large_request_over_many_small_segments_is_framed_whole() -> None:
    # Tests assert behaviour, not wall-clock time; the scan-offset design that keeps this linear is measured
    # by bench/throughput.py.
    body = b"y" * (2 * MB)
    headers = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 100) for i in range(300))
    stream = b"POST / HTTP/1.1\r\n" + headers + b"Content-Length: %d\r\n\r\n" % len(body) + body
    segments = [stream[i:i + 97] for i in range(0, len(stream), 97)]
    (request,), _ = frame(segments, max_body=4 * MB)
    assert request.body == body
    assert not request.body_truncated


def test_the_body_budget_is_the_flows_and_shared_by_keep_alive_requests() -> None:
    def post(body: bytes) -> bytes:
        return b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)

    requests, _ = frame(post(b"a" * 60) + post(b"b" * 60) + post(b"c" * 60), max_body=100)
    assert [(r.body, r.body_truncated) for r in requests] == [
        (b"a" * 60, False), (b"b" * 40, True), (b"", True)]   # framing goes on past the budget
