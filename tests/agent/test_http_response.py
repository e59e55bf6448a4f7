"""HTTP/1.x response framing (RFC 9112 §4–§7): tables of server streams, the requests they answer, and the
responses they must give — clean, split anywhere, coded, over budget, cut by holes, and hostile."""

from __future__ import annotations

import gzip
import itertools

import brotli
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.anomalies import AnomalySink
from agent.protocols.http_body import has_body
from agent.protocols.http_response import MAX_PENDING, HttpResponse, HttpResponseStream

MB = 1 << 20


def frame(segments: list[bytes] | bytes, requests: list[str] | None = None, *, strict: bool = False,
          max_body: int = MB, max_decoded: int = MB) -> tuple[list[HttpResponse], AnomalySink]:
    """Responses framed from `segments`, answering `requests` (methods, sent before the responses)."""
    sink = AnomalySink(strict=strict)
    stream = HttpResponseStream(max_body, max_decoded, sink, "F1")
    for n, method in enumerate(requests if requests is not None else ["GET"] * 8):
        stream.expect(method, f"/r{n}")
    out: list[HttpResponse] = []
    for seg in [segments] if isinstance(segments, bytes) else segments:
        out += stream.feed(seg)
    out += stream.close()
    return out, sink


def summary(responses: list[HttpResponse]) -> list[tuple]:
    return [(r.status, r.method, r.body, r.body_truncated) for r in responses]


def chunked(*parts: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


JSON = b'{"data":[{"xm":"\xe5\xbc\xa0\xe4\xb8\x89","sjh":"13812345678"}]}'
OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(JSON), JSON)
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found"
CHUNKED = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nX-T: 1\r\n\r\n")
PIPELINE = OK + NOT_FOUND + CHUNKED + OK

CLEAN = [
    ("content_length", OK, ["GET"], [(200, "GET", JSON, False)]),
    ("chunked_with_extension_and_trailer", CHUNKED, ["GET"], [(200, "GET", b"Wikipedia", False)]),
    ("pipelined_paired_in_order", PIPELINE, ["GET", "POST", "GET", "PUT"],
     [(200, "GET", JSON, False), (404, "POST", b"not found", False), (200, "GET", b"Wikipedia", False),
      (200, "PUT", JSON, False)]),
    ("head_has_a_length_but_no_content", b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n" + NOT_FOUND,
     ["HEAD", "GET"], [(200, "HEAD", b"", False), (404, "GET", b"not found", False)]),
    ("no_content_204_and_not_modified_304",
     b"HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n"
     b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n" + OK, ["DELETE", "GET", "GET"],
     [(204, "DELETE", b"", False), (304, "GET", b"", False), (200, "GET", JSON, False)]),
    ("interim_100_and_103_answer_no_request",
     b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n" + OK + NOT_FOUND,
     ["POST", "GET"], [(200, "POST", JSON, False), (404, "GET", b"not found", False)]),
    ("bare_lf_and_no_reason_phrase", b"HTTP/1.0 200\nContent-Length: 2\n\nok", ["GET"],
     [(200, "GET", b"ok", False)]),
    ("empty_lines_between_responses", OK + b"\r\n\r\n" + NOT_FOUND, ["GET", "GET"],
     [(200, "GET", JSON, False), (404, "GET", b"not found", False)]),
    ("content_length_zero", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n" + OK, ["GET", "GET"],
     [(200, "GET", b"", False), (200, "GET", JSON, False)]),
    ("body_delimited_by_the_close", b"HTTP/1.0 200 OK\r\nContent-Type: text/csv\r\n\r\nname,mobile\r\n",
     ["GET"], [(200, "GET", b"name,mobile\r\n", False)]),
    ("request_not_seen_is_framed_unpaired", OK, [], [(200, None, JSON, False)]),
]


@pytest.mark.parametrize(("name", "stream", "methods", "expected"), CLEAN, ids=[c[0] for c in CLEAN])
def test_clean_stream_is_framed_into_the_expected_responses(name: str, stream: bytes, methods: list[str],
                                                             expected: list) -> None:
    responses, _ = frame(stream, methods, strict=True)
    assert summary(responses) == expected
    assert [r.number for r in responses] == list(range(len(expected)))


@pytest.mark.parametrize(("name", "stream", "methods", "expected"), CLEAN, ids=[c[0] for c in CLEAN])
def test_feeding_one_byte_at_a_time_gives_the_same_responses(name: str, stream: bytes, methods: list[str],
                                                             expected: list) -> None:
    responses, _ = frame([stream[i:i + 1] for i in range(len(stream))], methods, strict=True)
    assert summary(responses) == expected


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cuts=st.lists(st.integers(min_value=0, max_value=len(PIPELINE)), max_size=12))
def test_any_split_of_the_same_stream_gives_the_same_responses(cuts: list[int]) -> None:
    points = [0, *sorted(cuts), len(PIPELINE)]
    segments = [PIPELINE[a:b] for a, b in itertools.pairwise(points)]
    assert frame(segments, strict=True)[0] == frame(PIPELINE, strict=True)[0]


def test_fields_and_content_type_are_reported_with_the_request_target() -> None:
    (response,), _ = frame(OK, ["GET"])
    assert response.content_type == "application/json" and response.target == "/r0"
    assert ("Content-Length", str(len(JSON))) in response.headers and response.version == "HTTP/1.1"


@pytest.mark.parametrize(("method", "status", "body"), [
    ("GET", 200, True), ("HEAD", 200, False), ("GET", 204, False), ("GET", 304, False), ("GET", 101, False),
    ("POST", 100, False), ("CONNECT", 200, False), ("CONNECT", 407, True), (None, 200, True),
    ("GET", 404, True), ("GET", 500, True),
])
def test_which_responses_carry_content(method: str | None, status: int, body: bool) -> None:
    assert has_body(method, status) is body


@pytest.mark.parametrize(("head", "method"), [
    (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", "GET"),
    (b"HTTP/1.1 200 Connection established\r\n\r\n", "CONNECT"),
])
def test_a_protocol_switch_or_tunnel_stops_framing(head: bytes, method: str) -> None:
    sink = AnomalySink(strict=True)
    stream = HttpResponseStream(MB, MB, sink, "F1")
    stream.expect(method, "/")
    (response,) = stream.feed(head + b"\x16\x03\x01 tunnelled bytes HTTP/1.1 200 OK\r\n\r\n")
    assert response.body == b"" and stream.tunnel and stream.done
    assert stream.feed(OK) == []


# -- codings and budgets -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("coding", "encode"), [("gzip", gzip.compress), ("br", brotli.compress)])
def test_content_coding_is_undone(coding: str, encode) -> None:
    coded = encode(JSON)
    head = b"HTTP/1.1 200 OK\r\nContent-Encoding: %s\r\nTransfer-Encoding: chunked\r\n\r\n" % coding.encode()
    stream = head + chunked(coded[:10], coded[10:])
    (response,), _ = frame(stream, ["GET"], strict=True)
    assert response.body == JSON and not response.body_truncated


def test_a_gzip_bomb_is_cut_at_the_decompression_cap_with_an_anomaly() -> None:
    bomb = gzip.compress(b"0" * (4 * MB))
    stream = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s" % (len(bomb), bomb)
    (response, after), sink = frame(stream + NOT_FOUND, ["GET", "GET"], max_decoded=1000)
    assert len(response.body) == 1000 and response.body_truncated and after.body == b"not found"
    assert sink.counts["decompression_limit"] == 1


def test_an_unknown_coding_keeps_the_raw_body_and_names_only_registered_codings() -> None:
    stream = b"HTTP/1.1 200 OK\r\nContent-Encoding: 13812345678\r\nContent-Length: 2\r\n\r\nab"
    (response,), sink = frame(stream, ["GET"])
    assert response.body == b"ab"
    assert [r.detail for r in sink.records if r.name == "unsupported_coding"] == ["digits(11)"]


def test_the_body_budget_is_the_flows_and_framing_goes_on_past_it() -> None:
    def ok(body: bytes) -> bytes:
        return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)

    responses, _ = frame(ok(b"a" * 60) + ok(b"b" * 60) + ok(b"c" * 60) + NOT_FOUND, max_body=100)
    assert [(r.body, r.body_truncated) for r in responses] == [
        (b"a" * 60, False), (b"b" * 40, True), (b"", True), (b"", True)]
    assert [r.status for r in responses] == [200, 200, 200, 404]


# -- holes and malformed input -----------------------------------------------------------------------------

def test_a_hole_in_a_body_truncates_it_and_the_next_response_is_framed() -> None:
    sink = AnomalySink()
    stream = HttpResponseStream(MB, MB, sink, "F1")
    for m in ("GET", "GET"):
        stream.expect(m, "/")
    head, rest = OK[:OK.index(b"\r\n\r\n") + 4], OK[OK.index(b"\r\n\r\n") + 4:]
    out = stream.feed(head + rest[:5])
    stream.gap(10)
    out += stream.feed(rest[15:] + NOT_FOUND) + stream.close()
    assert [(r.status, r.body_truncated) for r in out] == [(200, True), (404, False)]
    assert out[0].body == rest[:5] + rest[15:]
    assert sink.counts["content_gap"] == 1


def test_a_hole_in_a_header_section_resyncs_to_the_next_status_line() -> None:
    sink = AnomalySink()
    stream = HttpResponseStream(MB, MB, sink, "F1")
    out = stream.feed(b"HTTP/1.1 200 OK\r\nContent-Le")
    stream.gap(100)
    out += stream.feed(b"ngth: 5\r\n\r\nhello" + NOT_FOUND) + stream.close()
    assert [(r.status, r.body_truncated) for r in out] == [(200, True), (404, False)]
    assert out[1].method is None       # responses after a hole cannot be paired with their requests


MALFORMED = [
    ("garbage_before_a_response", b"\x00\x01 junk\r\n" + NOT_FOUND, "malformed_status_line"),
    ("status_without_a_code", b"HTTP/1.1 OK\r\n\r\n" + NOT_FOUND, "malformed_status_line"),
    ("overlong_status_line", b"HTTP/1.1 200 " + b"x" * 20000 + b"\r\n\r\n" + NOT_FOUND,
     "malformed_status_line"),
    ("bad_chunk_size", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n" + NOT_FOUND,
     "bad_chunk_size"),
    ("field_without_colon", b"HTTP/1.1 204 No Content\r\nNoColonHere\r\n\r\n" + NOT_FOUND,
     "malformed_field_line"),
    ("te_and_cl", b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
     + chunked(b"abc") + NOT_FOUND, "transfer_encoding_and_content_length"),
]


@pytest.mark.parametrize(("name", "stream", "anomaly"), MALFORMED, ids=[c[0] for c in MALFORMED])
def test_malformed_input_is_an_anomaly_and_framing_resumes(name: str, stream: bytes, anomaly: str) -> None:
    responses, sink = frame(stream)
    assert sink.counts[anomaly] >= 1
    assert (responses[-1].status, responses[-1].body) == (404, b"not found")


def test_conflicting_content_lengths_read_the_body_to_the_close() -> None:
    responses, sink = frame(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", ["GET"])
    assert summary(responses) == [(200, "GET", b"abcd", False)]
    assert sink.counts["bad_content_length"] == 1


def test_endless_garbage_stops_framing_within_its_budget() -> None:
    sink = AnomalySink()
    stream = HttpResponseStream(MB, MB, sink, "F1")
    for _ in range(100):
        assert stream.feed(bytes(range(256)) * 10) == []
    assert stream.done and sink.counts["resync_failed"] == 1


def test_an_http2_status_line_stops_framing() -> None:
    responses, sink = frame(b"HTTP/2.0 200 OK\r\n\r\n" + OK)
    assert responses == [] and sink.counts["unsupported_version"] == 1


def test_endless_interim_responses_stop_framing() -> None:
    responses, sink = frame(b"HTTP/1.1 100 Continue\r\n\r\n" * 100 + OK)
    assert responses == [] and sink.counts["too_many_interim_responses"] == 1


def test_requests_awaiting_responses_are_bounded() -> None:
    sink = AnomalySink()
    stream = HttpResponseStream(MB, MB, sink, "F1")
    for _ in range(MAX_PENDING + 500):
        stream.expect("GET", "/")
    assert len(stream._pending) == MAX_PENDING and sink.counts["pipeline_too_deep"] >= 1


def test_a_close_in_the_middle_of_a_body_reports_it_truncated() -> None:
    responses, sink = frame(OK[:-5], ["GET"])
    assert summary(responses) == [(200, "GET", JSON[:-5], True)]
    assert sink.counts["message_incomplete"] == 1


PHONE, RID = "13812345678", "110105194912310021"


def test_anomaly_details_never_carry_payload_bytes() -> None:
    stream = (f"{RID} {PHONE}\r\nHTTP/1.1 200 OK\r\nX{RID}\r\nContent-Length: {PHONE}-1\r\n"
              f"Transfer-Encoding: {RID}\r\n\r\n{PHONE}").encode()
    _, sink = frame(stream)
    assert sink.records
    assert all(PHONE not in r.detail and RID not in r.detail and "1234" not in r.detail for r in sink.records)


@settings(max_examples=80, deadline=None)
@given(data=st.binary(max_size=600), cut=st.integers(min_value=0, max_value=600))
def test_arbitrary_bytes_never_raise(data: bytes, cut: int) -> None:
    responses, _ = frame([OK + data[:cut], data[cut:]])
    assert responses and responses[0].body == JSON


def test_one_large_response_over_many_small_segments_is_framed_whole() -> None:
    body = b"y" * (2 * MB)
    stream = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    (response,), _ = frame([stream[i:i + 97] for i in range(0, len(stream), 97)], ["GET"], max_body=4 * MB)
    assert response.body == body and not response.body_truncated


def test_thousands_of_pipelined_responses_in_one_segment_are_all_framed() -> None:
    # Behaviour only; that each byte is looked at a bounded number of times (no copy of the whole buffer
    # per response) is what keeps this linear.
    n = 20_000
    responses, _ = frame(b"HTTP/1.1 204 No Content\r\n\r\n\r\n" * n, ["DELETE"] * 1000, strict=True)
    assert [(r.status, r.method) for r in responses] == [(204, "DELETE")] * 1000 + [(204, None)] * (n - 1000)
