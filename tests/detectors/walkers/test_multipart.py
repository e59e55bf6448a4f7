"""walkers.multipart: each part by its own type, key paths under the field name, nesting bounded."""

from __future__ import annotations

import pytest

from detectors.walkers import walk


def _multipart(*parts: tuple[str, bytes]) -> bytes:
    out = b""
    for headers, content in parts:
        out += b"--BnD\r\n" + headers.encode() + b"\r\n\r\n" + content + b"\r\n"
    return out + b"--BnD--\r\n"


_MP = _multipart(
    ('Content-Disposition: form-data; name="sfzh"', b"11010519491231002X"),
    ('Content-Disposition: form-data; name="upload"; filename="orders.csv"\r\n'
     "Content-Type: application/octet-stream", b"idNo,xm\r\n1,A\r\n2,B"),
    ('Content-Disposition: form-data; name="meta"\r\nContent-Type: application/json; charset=gbk',
     '{"orders": [{"xm": "张三"}], "code": "ok"}'.encode("gbk")),
    ('Content-Disposition: form-data; name="pic"; filename="a.jpg"\r\nContent-Type: image/jpeg',
     b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01"),
)


@pytest.mark.parametrize("content_type",
                         ["multipart/form-data; boundary=BnD", 'multipart/form-data; boundary="BnD"', None])
def test_multipart_parts_by_their_own_types(content_type):
    walked = walk(_MP, content_type)
    assert walked.kind == "multipart"
    assert list(walked.triples) == [
        ("multipart.sfzh", "11010519491231002X", 4),          # plain fields: the envelope, last
        ("multipart.upload[*].idNo", "1", 0), ("multipart.upload[*].xm", "A", 0),
        ("multipart.upload[*].idNo", "2", 1), ("multipart.upload[*].xm", "B", 1),
        ("multipart.meta.orders[*].xm", "张三", 2), ("multipart.meta.code", "ok", 3),
    ]
    assert not any("orders.csv" in p for p, _, _ in walked.triples)   # a filename is data, not a key


def test_multipart_mixed_with_base64_part_and_truncation():
    body = (b"--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            + __import__("base64").b64encode("手机 13800138000\n".encode()) + b"\r\n--b\r\n"
            + b'Content-Type: application/json\r\n\r\n{"a": "x"')
    walked = walk(body, "multipart/mixed; boundary=b")
    assert walked.kind == "multipart"
    assert walked.triples[0] == ("multipart[*]", "手机 13800138000", 0)
    assert "multipart_unterminated" in {n for n, _ in walked.anomalies}


def test_nested_multipart_is_bounded():
    body = b"x"
    for i in range(10):
        head = b"--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n" % (i + 1, i)
        body = head + body + b"\r\n--b%d--\r\n" % (i + 1)
    walked = walk(body, "multipart/mixed; boundary=b10")
    assert walked.kind == "multipart" and "depth_limit" in {n for n, _ in walked.anomalies}
