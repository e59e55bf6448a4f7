"""walkers.grpc: gRPC length-prefixed messages walked as protobuf wire format, by field-number path.

The protobuf bytes are made by a small encoder here (the wire format of protobuf.dev's encoding guide):
the `protobuf` package is not a dependency of the project.
"""

from __future__ import annotations

import gzip
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.walkers import WalkBudget, walk

from .helpers import rid

ID = rid("33010619900101123")
PHONE = "13812345678"


def varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def f_int(number: int, value: int) -> bytes:
    return varint(number << 3) + varint(value)


def f_len(number: int, value: bytes | str) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return varint(number << 3 | 2) + varint(len(data)) + data


def f_fixed64(number: int, value: bytes) -> bytes:
    return varint(number << 3 | 1) + value


def grpc(*messages: bytes, compress: str | None = None) -> bytes:
    out = b""
    for m in messages:
        if compress == "gzip":
            m = gzip.compress(m)
        elif compress == "deflate":
            m = zlib.compress(m)
        out += bytes([1 if compress else 0]) + len(m).to_bytes(4, "big") + m
    return out


def person(name: str, id_no: str, phone: int) -> bytes:
    return f_len(1, name) + f_len(2, id_no) + f_int(3, phone) + f_len(4, f_len(1, "杭州市西湖区文三路1号"))


def test_fields_nested_messages_and_varints_by_field_number_path():
    msg = person("张三", ID, int(PHONE)) + f_fixed64(9, b"\x00" * 8) + f_len(10, b"\x00\xff\x10")
    walked = walk(grpc(msg), "application/grpc")
    assert walked.kind == "grpc" and walked.anomalies == ()
    assert walked.triples == (("grpc.1", "张三", 0), ("grpc.2", ID, 0), ("grpc.3", PHONE, 0),
                              ("grpc.4.1", "杭州市西湖区文三路1号", 0))


def test_a_digit_string_that_also_parses_as_a_message_is_kept_as_a_string():
    # "110105194912310021": 0x31 = field 6, wire type 1 (fixed64), twice: a valid message of two fields.
    value = "110105194912310021"
    walked = walk(grpc(f_len(2, value)), "application/grpc+proto")
    assert walked.triples == (("grpc.2", value, 0),)


def test_negative_int64_is_read_signed():
    assert walk(grpc(f_int(5, -42)), "application/grpc").triples == (("grpc.5", "-42", 0),)


def test_a_streamed_body_keeps_paths_and_makes_each_message_a_record():
    body = grpc(person("张三", ID, 13800000001), person("李四", rid("11010519800101123"), 13800000002))
    walked = walk(body, "application/grpc")
    assert [(p, r) for p, _, r in walked.triples if p == "grpc.2"] == [("grpc.2", 0), ("grpc.2", 1)]


def test_one_message_with_repeated_people_makes_each_element_a_record_and_the_envelope_last():
    people = [person(f"王{i}", rid(f"3301061990010112{i}"), 13900000000 + i) for i in range(3)]
    msg = f_len(2, "batch-7") + b"".join(f_len(1, p) for p in people)
    walked = walk(grpc(msg), "application/grpc")
    ids = [(p, v, r) for p, v, r in walked.triples if p == "grpc.1.2"]
    assert [r for _, _, r in ids] == [0, 1, 2]
    assert ("grpc.2", "batch-7", 3) in walked.triples


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
def test_compressed_messages_are_decoded(coding):
    walked = walk(grpc(person("张三", ID, 1), compress=coding), "application/grpc")
    assert ("grpc.2", ID, 0) in walked.triples and walked.anomalies == ()


def test_an_unsupported_compression_is_an_anomaly_and_the_message_is_skipped():
    snappy = b"\xff\x06\x00\x00sNaPpY"   # a snappy stream identifier: neither gzip nor zlib
    body = bytes([1]) + len(snappy).to_bytes(4, "big") + snappy + grpc(f_len(1, "next"))
    walked = walk(body, "application/grpc")
    assert walked.triples == (("grpc.1", "next", 0),)
    assert [n for n, _ in walked.anomalies] == ["grpc_compression_unsupported"]


def test_a_compressed_bomb_stops_at_the_budget():
    bomb = grpc(f_len(1, "x" * (8 << 20)), compress="gzip")
    walked = walk(bomb, "application/grpc", WalkBudget(max_total_chars=1 << 20))
    assert "decompression_limit" in [n for n, _ in walked.anomalies]
    assert sum(len(v) for _, v, _ in walked.triples) <= 1 << 20


def test_a_body_cut_by_the_flow_budget_still_gives_the_fields_before_the_cut():
    body = grpc(person("张三", ID, 1) + f_len(7, "y" * 1000))[:120]
    walked = walk(body, "application/grpc")
    assert ("grpc.2", ID, 0) in walked.triples
    assert {n for n, _ in walked.anomalies} == {"grpc_truncated", "protobuf_malformed"}


def test_deep_nesting_is_bounded():
    msg = f_len(1, "deep")
    for _ in range(500):
        msg = f_len(1, msg)
    walked = walk(grpc(msg), "application/grpc")
    assert "depth_limit" in [n for n, _ in walked.anomalies] and walked.triples == ()


def test_a_body_that_is_not_grpc_framed_goes_to_the_other_walkers():
    walked = walk(b'{"a": "b"}', "application/grpc")
    assert walked.kind == "json" and ("grpc_malformed" in [n for n, _ in walked.anomalies])


def test_grpc_web_trailer_frames_are_skipped():
    body = grpc(f_len(1, "x")) + b"\x80" + (15).to_bytes(4, "big") + b"grpc-status:0\r\n"
    assert walk(body, "application/grpc-web+proto").triples == (("grpc.1", "x", 0),)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=2000), flag=st.sampled_from([0, 1, 0x80]))
def test_random_bytes_never_raise_and_stay_bounded(data, flag):
    body = bytes([flag]) + len(data).to_bytes(4, "big") + data
    walked = walk(body, "application/grpc", WalkBudget(max_values=1000))
    assert len(walked.triples) <= 1000


# -- through the detector engine --------------------------------------------------------------------------

def test_pi_in_a_protobuf_message_is_found_by_the_engine_with_its_key_path(engine):
    msg = f_len(1, person("张三", ID, 1) + f_len(5, f"联系电话{PHONE}"))
    hits = engine.inspect(grpc(msg), "application/grpc").hits
    found = {(h.field_type, h.key_path, h.record_index) for h in hits}
    assert ("resident_id_cn", "grpc.1.2", 0) in found
    assert ("mobile_cn", "grpc.1.5", 0) in found
    assert all(ID not in h.masked and PHONE not in h.masked for h in hits)


def test_field_number_paths_neither_help_nor_hinder_the_key_rules(engine):
    # A numeric segment is no key hint and no business-number key: the value decides, as under `text`;
    # and no redaction takes a field number for a value.
    assert engine.safe_path("grpc.1.3") == "grpc.1.3" and engine.safe_path("grpc.12.7.1") == "grpc.12.7.1"
    for value in (ID, PHONE, "20240101123456789012", "订单号12345"):
        spans = [(c.field_type, c.start, c.end) for c in engine.find_spans(value, "grpc.1.3")]
        assert spans == [(c.field_type, c.start, c.end) for c in engine.find_spans(value, "text")]


@pytest.mark.parametrize(("values", "expected"), [
    (["全基因组测序", "AG"], {"27": "keywords"}),
    (["诊断：高血压", "处方：一日一次"], {"28": "keywords"}),
    (["儿童基因科学实验玩具"], {}),                      # one stray keyword is no candidate, as in JSON
])
def test_important_data_words_in_protobuf_strings_are_read_as_text(engine, values, expected):
    # The body has NUL bytes (the gRPC prefix) but is no binary payload: its strings are read like JSON's.
    msg = b"".join(f_len(i + 1, v) for i, v in enumerate(values))
    important = engine.inspect(grpc(f_len(1, msg)), "application/grpc").important
    assert {h.subcategory: h.evidence for h in important} == expected
