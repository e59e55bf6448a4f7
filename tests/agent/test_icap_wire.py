"""The ICAP wire format (agent/icap_wire.py) on its own: a request split at any byte boundary reads the
same; garbled input never raises anything but `IcapError`; Encapsulated sections and offsets are checked."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.icap_wire import ChunkReader, IcapError, IcapRequest, WireReader, read_request
from tests.agent.icap_harness import BODY, chunked, icap_head, reqmod


async def _read(pieces: list[bytes], timeout_s: float = 5.0) -> tuple[IcapRequest, bytes, bool]:
    reader = asyncio.StreamReader()
    for p in pieces:
        reader.feed_data(p)
    reader.feed_eof()
    r = WireReader(reader, timeout_s)
    request = await read_request(r)
    chunks = ChunkReader(r)
    body = b""
    if request.has_body:
        while (piece := await chunks.next()) is not None:
            body += piece
    return request, body, chunks.ieof


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cuts=st.lists(st.integers(min_value=0), max_size=40), sizes=st.integers(min_value=1, max_value=300))
def test_a_request_split_anywhere_reads_the_same(cuts: list[int], sizes: int) -> None:
    wire = icap_head("REQMOD", [("req-hdr", b"POST /u HTTP/1.1\r\nHost: a.example\r\n\r\n")], "req-body",
                     meta={"X-Client-IP": "10.0.0.1"}) + chunked(BODY, sizes=sizes)
    request, body, ieof = asyncio.run(_read(_split(wire, cuts)))
    assert body == BODY and not ieof
    assert request.req_hdr is not None and request.req_hdr.value("host") == "a.example"
    assert request.value("x-client-ip") == "10.0.0.1" and request.allow_204


def test_every_single_split_point() -> None:
    wire = reqmod(BODY[:50])
    for i in range(len(wire) + 1):
        _, body, _ = asyncio.run(_read([wire[:i], wire[i:]]))
        assert body == BODY[:50], i


def test_ieof_and_chunk_extensions() -> None:
    wire = icap_head("REQMOD", [("req-hdr", b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")], "req-body", preview=10)
    _, body, ieof = asyncio.run(_read([wire + b"3;x=1\r\nabc\r\n0; ieof\r\n\r\n"]))
    assert (body, ieof) == (b"abc", True)


VALID = reqmod(BODY[:64])


@settings(max_examples=400, deadline=None)
@given(st.one_of(
    st.binary(max_size=300),
    st.tuples(st.integers(0, len(VALID) - 1), st.binary(min_size=1, max_size=8)).map(
        lambda t: VALID[:t[0]] + t[1] + VALID[t[0] + len(t[1]):]),
    st.integers(0, len(VALID)).map(lambda n: VALID[:n]),
))
def test_garbled_input_raises_only_icap_errors(data: bytes) -> None:
    try:
        asyncio.run(_read([data]))
    except IcapError as e:
        assert 400 <= e.status < 600 and "\n" not in e.reason and len(e.reason) < 200


@pytest.mark.parametrize(("encapsulated", "fragment"), [
    ("req-hdr=0, req-body=10", "does not end at the next offset"),         # the block is longer
    ("req-hdr=0, req-body=999", "connection closed"),                      # offset past the data
    ("req-hdr=5, req-body=60", "start at 0"),
    ("req-body=0, req-hdr=10", "not valid for REQMOD"),
    ("res-hdr=0, res-body=10", "not valid for REQMOD"),
    ("req-hdr=0", "not valid for REQMOD"),
    ("req-hdr=zero, req-body=1", "malformed"),
])
def test_bad_encapsulated_is_one_clear_error(encapsulated: str, fragment: str) -> None:
    hdr = b"POST /u HTTP/1.1\r\nHost: a.example\r\n\r\n"
    head = f"REQMOD icap://x/s ICAP/1.0\r\nEncapsulated: {encapsulated}\r\n\r\n".encode()
    wire = head + hdr + b"0\r\n\r\n"
    with pytest.raises(IcapError) as e:
        asyncio.run(_read([wire]))
    assert e.value.status == 400 and fragment in e.value.reason


def test_a_silent_peer_times_out_with_408() -> None:
    async def silent() -> None:
        reader = asyncio.StreamReader()
        reader.feed_data(b"REQMOD icap://x/s ICAP/1.0\r\n")
        await read_request(WireReader(reader, 0.05))

    with pytest.raises(IcapError) as e:
        asyncio.run(silent())
    assert e.value.status == 408 and e.value.anomaly == "idle_timeout"
