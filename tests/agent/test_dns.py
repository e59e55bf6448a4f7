"""DNS answer extraction (RFC 1035 §4, RFC 3596, CNAME chains per RFC 1034 §3.6.2)."""

from __future__ import annotations

import socket

import dpkt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.protocols.dns import parse_answers


def rr(name: str, rtype: int, value: str) -> dpkt.dns.DNS.RR:
    record = dpkt.dns.DNS.RR(name=name, type=rtype, cls=dpkt.dns.DNS_IN, ttl=60)
    if rtype == dpkt.dns.DNS_A:
        record.ip = socket.inet_pton(socket.AF_INET, value)
    elif rtype == dpkt.dns.DNS_AAAA:
        record.ip6 = socket.inet_pton(socket.AF_INET6, value)
    else:
        record.cname = value
    return record


def response(qname: str, answers: list[dpkt.dns.DNS.RR], qtype: int = dpkt.dns.DNS_A) -> bytes:
    msg = dpkt.dns.DNS(id=7)
    msg.qr = dpkt.dns.DNS_R
    msg.rd = msg.ra = 1
    msg.qd = [dpkt.dns.DNS.Q(name=qname, type=qtype, cls=dpkt.dns.DNS_IN)]
    msg.an = answers
    return bytes(msg)  # dpkt packs names with compression pointers


A, AAAA, CNAME = dpkt.dns.DNS_A, dpkt.dns.DNS_AAAA, dpkt.dns.DNS_CNAME

CASES = [
    ("single_a", response("api.example.com", [rr("api.example.com", A, "93.184.216.34")]),
     [("api.example.com", "93.184.216.34")]),
    ("aaaa", response("v6.example.com", [rr("v6.example.com", AAAA, "2001:db8::1")], AAAA),
     [("v6.example.com", "2001:db8::1")]),
    ("cname_chain_maps_query_and_aliases_to_final_addresses",
     response("www.shop.example", [rr("www.shop.example", CNAME, "shop.cdn.example"),
                                   rr("shop.cdn.example", CNAME, "edge7.cdn.example"),
                                   rr("edge7.cdn.example", A, "203.116.1.1"),
                                   rr("edge7.cdn.example", A, "203.116.1.2")]),
     [("www.shop.example", "203.116.1.1"), ("www.shop.example", "203.116.1.2"),
      ("shop.cdn.example", "203.116.1.1"), ("shop.cdn.example", "203.116.1.2"),
      ("edge7.cdn.example", "203.116.1.1"), ("edge7.cdn.example", "203.116.1.2")]),
    ("cname_loop_terminates", response("a.example", [rr("a.example", CNAME, "b.example"),
                                                     rr("b.example", CNAME, "a.example")]), []),
    ("names_are_lower_cased", response("API.Example.COM", [rr("API.Example.COM", A, "1.2.3.4")]),
     [("api.example.com", "1.2.3.4")]),
]


@pytest.mark.parametrize(("name", "payload", "expected"), CASES, ids=[c[0] for c in CASES])
def test_answers_table(name: str, payload: bytes, expected: list[tuple[str, str]]) -> None:
    assert parse_answers(payload) == expected


def test_compression_pointers_are_followed() -> None:
    payload = response("www.shop.example", [rr("www.shop.example", CNAME, "cdn.shop.example"),
                                            rr("cdn.shop.example", A, "8.8.8.8")])
    assert b"\xc0\x0c" in payload  # the answer owner points back at the question
    assert ("www.shop.example", "8.8.8.8") in parse_answers(payload)


def test_a_query_is_not_an_answer() -> None:
    msg = dpkt.dns.DNS(id=1, qd=[dpkt.dns.DNS.Q(name="x.example", type=A)])
    assert parse_answers(bytes(msg)) == []


@pytest.mark.parametrize("payload", [
    b"", b"\x00", b"\xff" * 12,
    b"\x00\x07\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00" + b"\xc0\x0c" * 15,  # pointer loop
])
def test_malformed_messages_give_no_answers(payload: bytes) -> None:
    assert parse_answers(payload) == []


def test_truncated_real_response_gives_no_answers_rather_than_raising() -> None:
    payload = response("www.shop.example", [rr("www.shop.example", A, "8.8.8.8")])
    for cut in range(len(payload)):
        assert isinstance(parse_answers(payload[:cut]), list)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=200))
def test_garbage_never_raises(data: bytes) -> None:
    assert isinstance(parse_answers(data), list)
