"""walkers.xml: elements and attributes as keys, repeated elements as records; DTDs refused."""

from __future__ import annotations

import pytest

from detectors.walkers import walk

_XML = (b'<?xml version="1.0" encoding="UTF-8"?>\n<ns:orders xmlns:ns="urn:x"><code>ok</code>'
        b'<ns:order idNo="11010519491231002X"><name>A</name><tel>1</tel><tel>2</tel></ns:order>'
        b'<order idNo="2"><name>B</name></order></ns:orders>')


@pytest.mark.parametrize(
    ("body", "content_type", "triples"),
    [
        # attributes and elements are both keys; repeated elements with content are the records
        (_XML, "application/xml",
         [("xml.orders.code", "ok", 2), ("xml.orders.order[*].idNo", "11010519491231002X", 0),
          ("xml.orders.order[*].name", "A", 0), ("xml.orders.order[*].tel[*]", "1", 0),
          ("xml.orders.order[*].tel[*]", "2", 0), ("xml.orders.order[*].idNo", "2", 1),
          ("xml.orders.order[*].name", "B", 1)]),
        # sniffed when untyped; the declaration's encoding is used when HTTP names none
        ('<?xml version="1.0" encoding="GBK"?><r><xm>张三</xm></r>'.encode("gbk"), None,
         [("xml.r.xm", "张三", 0)]),
        (b"<r><a>1</a><a>2</a></r>", "text/xml", [("xml.r.a[*]", "1", 0), ("xml.r.a[*]", "2", 0)]),
    ],
)
def test_xml_table(body, content_type, triples):
    walked = walk(body, content_type)
    assert (walked.kind, list(walked.triples)) == ("xml", triples)


_LAUGHS = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol0 "lol">'
           + b"".join(b'<!ENTITY lol%d "%s">' % (i, b"&lol%d;" % (i - 1) * 10) for i in range(1, 10))
           + b"]><lolz>&lol9;</lolz>")


def test_when_xml_has_a_dtd_then_nothing_is_expanded():
    walked = walk(_LAUGHS, "application/xml")
    assert walked.kind == "text"
    assert "xml_dtd_forbidden" in {n for n, _ in walked.anomalies}
    assert sum(len(v) for _, v, _ in walked.triples) <= len(_LAUGHS)


def test_when_xml_is_malformed_then_it_is_scanned_as_text():
    walked = walk(b"<r><xm>11010519491231002X</r>", "application/xml")
    assert walked.kind == "text" and walked.triples == (("text", "<r><xm>11010519491231002X</r>", 0),)
    assert all("11010519491231002X" not in d for _, d in walked.anomalies)


def test_deep_xml_is_cut_not_crashed():
    walked = walk(b"<a>" * 100_000 + b"x" + b"</a>" * 100_000, "application/xml")
    assert walked.kind == "xml" and "depth_limit" in {n for n, _ in walked.anomalies}
