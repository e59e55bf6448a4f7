"""structured.walk: key paths, record indexes, charsets and budgets."""

from __future__ import annotations

import json

import pytest

from detectors.structured import WalkBudget, declared_charset, walk


def _body(doc: object) -> bytes:
    return json.dumps(doc, ensure_ascii=False).encode()


@pytest.mark.parametrize(
    ("body", "content_type", "kind", "triples"),
    [
        (_body({"xm": "张三", "sjh": 13800138000}), "application/json", "json",
         [("$.xm", "张三", 0), ("$.sjh", "13800138000", 0)]),
        (_body([{"a": "x"}, {"a": "y"}]), None, "json", [("$[*].a", "x", 0), ("$[*].a", "y", 1)]),
        # records are the elements of the outermost array of objects; the envelope comes after them
        (_body({"code": "ok", "orders": [{"receiver": {"idNo": "1"}}, {"receiver": {"idNo": "2"}}]}),
         "application/json", "json",
         [("$.code", "ok", 2), ("$.orders[*].receiver.idNo", "1", 0), ("$.orders[*].receiver.idNo", "2", 1)]),
        # nested arrays stay inside their record
        (_body({"orders": [{"items": [{"n": "a"}, {"n": "b"}]}]}), "application/json", "json",
         [("$.orders[*].items[*].n", "a", 0), ("$.orders[*].items[*].n", "b", 0)]),
        # an array of scalars is one record
        (_body({"phones": ["1", "2"]}), "application/json", "json",
         [("$.phones[*]", "1", 0), ("$.phones[*]", "2", 0)]),
        # JSON Lines: one record per line
        (b'{"a":"x"}\n{"a":"y"}\n', "application/x-ndjson", "jsonl", [("$.a", "x", 0), ("$.a", "y", 1)]),
        (b'{"a":"x"}\n\n{"a":"y"}', None, "jsonl", [("$.a", "x", 0), ("$.a", "y", 1)]),
        # keys needing brackets; keys that are values become <value> so no raw value reaches a path
        (_body({"a.b": "v", "13800138000": {"n": "v"}, "z@x.cn": "v", "138-0013-8000": "v"}),
         "application/json", "json",
         [("$['a.b']", "v", 0), ("$.<value>.n", "v", 0), ("$.<value>", "v", 0), ("$.<value>", "v", 0)]),
        # form, UTF-8
        (b"sfzh=11010519491231002X&xm=%E5%BC%A0%E4%B8%89&x=a+b", "application/x-www-form-urlencoded",
         "form", [("form.sfzh", "11010519491231002X", 0), ("form.xm", "张三", 0), ("form.x", "a b", 0)]),
        # form, GBK percent-encoded: bytes first, then the declared charset
        (b"xm=%D5%C5%C8%FD&dz=%D5%E3%BD%AD%CA%A1", "application/x-www-form-urlencoded; charset=GBK", "form",
         [("form.xm", "张三", 0), ("form.dz", "浙江省", 0)]),
        # form, GBK without a declared charset: UTF-8 fails, GB18030 is tried
        (b"xm=%D5%C5%C8%FD", "application/x-www-form-urlencoded", "form", [("form.xm", "张三", 0)]),
        # GBK JSON body with charset
        ('{"xm":"张三"}'.encode("gbk"), "application/json;charset=gbk", "json", [("$.xm", "张三", 0)]),
        # GBK JSON body without charset: UTF-8 fails, GB18030 works
        ('{"xm":"李四"}'.encode("gbk"), "application/json", "json", [("$.xm", "李四", 0)]),
        # malformed JSON falls back to text, one record per line
        (b'{"xm": "a",\n "b": ', "application/json", "text",
         [("text", '{"xm": "a",', 0), ("text", ' "b": ', 1)]),
        (b"hello\n\nworld", "text/plain", "text", [("text", "hello", 0), ("text", "world", 2)]),
    ],
)
def test_walk_table(body, content_type, kind, triples):
    walked = walk(body, content_type)
    assert walked.kind == kind
    assert list(walked.triples) == triples


_MSH = "MSH|^~\\&|HIS|HZ|LIS|P|20260303||ORU^R01|M1|P|2.5.1"


@pytest.mark.parametrize(
    ("body", "content_type", "triples"),
    [
        # MSH fields numbered from MSH-3 (MSH-1 is the separator, MSH-2 the encoding characters);
        # components get their own paths; PID-5 family^given is one name; segments end in CR
        ((_MSH + "\rPID|1||110105^^^CHN||张^三||19850412|M\r").encode(), "application/hl7-v2",
         [("hl7.MSH[*].3", "HIS", 0), ("hl7.MSH[*].4", "HZ", 0), ("hl7.MSH[*].5", "LIS", 0),
          ("hl7.MSH[*].6", "P", 0), ("hl7.MSH[*].7", "20260303", 0), ("hl7.MSH[*].9.1", "ORU", 0),
          ("hl7.MSH[*].9.2", "R01", 0), ("hl7.MSH[*].10", "M1", 0), ("hl7.MSH[*].11", "P", 0),
          ("hl7.MSH[*].12", "2.5.1", 0), ("hl7.PID[*].1", "1", 0), ("hl7.PID[*].3.1", "110105", 0),
          ("hl7.PID[*].3.4", "CHN", 0), ("hl7.PID[*].5", "张三", 0), ("hl7.PID[*].7", "19850412", 0),
          ("hl7.PID[*].8", "M", 0)]),
        # LF segments, sniffed from text/plain; a Latin name given first; repetitions (~) share a path
        (b"MSH|^~\\&|A\nPID|1||||Smith^John^Q~Doe^Jane\n", "text/plain",
         [("hl7.MSH[*].3", "A", 0), ("hl7.PID[*].1", "1", 0), ("hl7.PID[*].5", "John Q Smith", 0),
          ("hl7.PID[*].5", "Jane Doe", 0)]),
        # records: one per message, and one more per further PID in a message; OBR follows its PID
        (b"MSH|^~\\&|A\rPID|1||||A^B\rOBR|1||||||||||||||||||||||||||||||E11.9^x^I10\r"
         b"PID|2||||C^D\rMSH|^~\\&|B\rPID|1||||E^F\r", None,
         [("hl7.MSH[*].3", "A", 0), ("hl7.PID[*].1", "1", 0), ("hl7.PID[*].5", "B A", 0),
          ("hl7.OBR[*].1", "1", 0), ("hl7.OBR[*].31.1", "E11.9", 0), ("hl7.OBR[*].31.2", "x", 0),
          ("hl7.OBR[*].31.3", "I10", 0), ("hl7.PID[*].1", "2", 1), ("hl7.PID[*].5", "D C", 1),
          ("hl7.MSH[*].3", "B", 2), ("hl7.PID[*].1", "1", 2), ("hl7.PID[*].5", "F E", 2)]),
        # escapes (\F\ is a literal |); other separators declared in MSH-2; MLLP framing bytes dropped
        (b"\x0bMSH#^~\\&#A\\F\\B\rNTE#1##x|y\r\x1c\r", "application/hl7-v2",
         [("hl7.MSH[*].3", "A|B", 0), ("hl7.NTE[*].1", "1", 0), ("hl7.NTE[*].3", "x|y", 0)]),
    ],
)
def test_hl7_walk_table(body, content_type, triples):
    walked = walk(body, content_type)
    assert walked.kind == "hl7"
    assert list(walked.triples) == triples


@pytest.mark.parametrize(
    ("body", "content_type", "kind"),
    [
        (b"MSH is a prefix\nof nothing", "text/plain", "text"),      # no field separator after MSH
        (b'{"a": "MSH|^~&|A"}', "application/json", "json"),
        (b"##fileformat=VCFv4.2\n#CHROM\tPOS\n", "text/plain", "vcf"),
        (b"##fileformat=VCFv4.2\n", "application/json", "text"),    # declared JSON that is not: text
    ],
)
def test_line_formats_are_recognised_only_by_their_signature(body, content_type, kind):
    assert walk(body, content_type).kind == kind


def test_vcf_walk_resolves_genotypes_and_keeps_sample_names_out_of_paths():
    body = (b"##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tZhangSan\n"
            b"chr1\t100\trs1801133\tG\tA,T\t50\tPASS\t.\tDP:GT\t30:1|2\n"
            b"chrX\t200\t.\tC\tT\t50\tPASS\t.\tGT\t./.\n")
    walked = walk(body, "text/plain")
    assert walked.triples[0] == ("vcf[*].genotype", "rs1801133:A|T", 0)
    assert [t for t in walked.triples if t[0] != "vcf.header"] == [walked.triples[0]]
    assert all("ZhangSan" not in path for path, _, _ in walked.triples)
    assert {r for p, _, r in walked.triples if p == "vcf.header"} == {1}


def test_malformed_json_reports_an_anomaly_without_payload():
    walked = walk(b'{"sfzh": "11010519491231002X",', "application/json")
    assert [name for name, _ in walked.anomalies] == ["json_malformed"]
    assert all("11010519491231002X" not in detail for _, detail in walked.anomalies)


def test_deep_nesting_stays_within_budget():
    doc: object = "deep"
    for _ in range(200):
        doc = {"a": doc}
    walked = walk(json.dumps(doc).encode(), "application/json", WalkBudget(max_depth=50))
    assert walked.triples == ()
    assert [name for name, _ in walked.anomalies] == ["depth_limit"]


def test_pathological_nesting_does_not_crash():
    walked = walk(b"[" * 200_000 + b"]" * 200_000, "application/json")
    assert walked.kind == "text"
    assert walked.anomalies == (("json_too_deep", "400000 chars; scanned as text"),)


def test_value_budget():
    body = _body([{"a": str(i)} for i in range(100)])
    walked = walk(body, "application/json", WalkBudget(max_values=10))
    assert len(walked.triples) == 10
    assert "walk_budget_exceeded" in {n for n, _ in walked.anomalies}


@pytest.mark.parametrize(
    ("content_type", "charset"),
    [("application/json; charset=UTF-8", "utf-8"), ("text/plain;charset=\"gbk\"", "gb18030"),
     ("application/x-www-form-urlencoded; charset=gb2312", "gb18030"), ("text/plain; charset=bogus", None),
     (None, None)],
)
def test_declared_charset(content_type, charset):
    assert declared_charset(content_type) == charset


# --- CSV / TSV, XML, multipart, charsets, binary, budgets -----------------------------------------------

_CSV_GBK = 'idNo,xm,dz\r\n11010519491231002X,"张三","浙江省,杭州市"\r\n2,"李""四",x\r\n'.encode("gbk")


@pytest.mark.parametrize(
    ("body", "content_type", "kind", "triples"),
    [
        # RFC 4180 quoting (comma and doubled quote inside), GBK without a declared charset
        (_CSV_GBK, "text/csv", "csv",
         [("csv[*].idNo", "11010519491231002X", 0), ("csv[*].xm", "张三", 0),
          ("csv[*].dz", "浙江省,杭州市", 0),
          ("csv[*].idNo", "2", 1), ("csv[*].xm", '李"四', 1), ("csv[*].dz", "x", 1)]),
        (b"a\tb\n1\t2\n\n3\t4\n", "text/tab-separated-values", "tsv",
         [("csv[*].a", "1", 0), ("csv[*].b", "2", 0), ("csv[*].a", "3", 1), ("csv[*].b", "4", 1)]),
        # delimiter sniffed; an untyped table is recognised by content
        (b"sjh;xm\n13800138000;A\n13900139000;B\n", None, "csv",
         [("csv[*].sjh", "13800138000", 0), ("csv[*].xm", "A", 0),
          ("csv[*].sjh", "13900139000", 1), ("csv[*].xm", "B", 1)]),
        # a value-like header cell never becomes a key; cells beyond the header are still scanned
        (b"13800138000,xm\n1,A,extra\n", "text/csv", "csv",
         [("csv[*].<value>", "1", 0), ("csv[*].xm", "A", 0), ("csv[*].*", "extra", 0)]),
    ],
)
def test_csv_table(body, content_type, kind, triples):
    walked = walk(body, content_type)
    assert (walked.kind, list(walked.triples)) == (kind, triples)


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


@pytest.mark.parametrize(
    ("body", "content_type", "kind", "triples"),
    [
        ('{"xm":"张三"}'.encode("utf-16"), "application/json", "json", [("$.xm", "张三", 0)]),
        (b"\xfe\xff" + '{"xm":"张三"}'.encode("utf-16-be"), None, "json", [("$.xm", "张三", 0)]),
        (b"\xef\xbb\xbfxm,sjh\n A,1\nB,2\n", "text/csv", "csv",
         [("csv[*].xm", " A", 0), ("csv[*].sjh", "1", 0), ("csv[*].xm", "B", 1), ("csv[*].sjh", "2", 1)]),
        (b"sfzh=11010519491231002X&xm=A", "text/plain", "form",
         [("form.sfzh", "11010519491231002X", 0), ("form.xm", "A", 0)]),
        (b"hello, world\nno table here", "text/plain", "text",
         [("text", "hello, world", 0), ("text", "no table here", 1)]),
    ],
)
def test_charsets_and_sniffing(body, content_type, kind, triples):
    walked = walk(body, content_type)
    assert (walked.kind, list(walked.triples)) == (kind, triples)


_JPEG = bytes.fromhex("ffd8ffe000104a46494600010100000100010000ffdb004300") + b"13800138000" * 10
_TLS = bytes.fromhex("1603010200010001fc0303") + b"\x00" * 40 + b"mobile=13800138000"


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (_JPEG, "image/jpeg"), (_JPEG, "application/json"), (_TLS, None),
        (__import__("gzip").compress(b'{"sjh": "13800138000"}' * 50), "application/json"),
        (b"PK\x03\x04" + b"sjh=13800138000" * 10, None),
        (b"%PDF-1.7\n13800138000", "application/octet-stream"),
        (b"\x08\x96\x01\x12\x0b13800138000\x1a\x03\x08\x01\x10" * 20, "application/x-protobuf"),
        (__import__("base64").b64encode(bytes(range(256)) * 8), "text/plain"),
    ],
)
def test_binary_bodies_yield_no_triples(body, content_type):
    walked = walk(body, content_type)
    assert (walked.kind, walked.triples) == ("binary", ())


def test_a_base64_value_in_json_stays_a_value():
    blob = __import__("base64").b64encode(bytes(range(256)) * 8).decode()
    assert walk(_body({"file": blob}), "application/json").triples == (("$.file", blob, 0),)


def test_total_chars_budget_keeps_what_was_walked():
    body = _body([{"a": "x" * 10} for i in range(10)])
    walked = walk(body, "application/json", WalkBudget(max_total_chars=35))
    assert len(walked.triples) == 3
    assert ("walk_budget_exceeded", "max_total_chars=35: stopped after 3 values") in walked.anomalies


def test_value_budget_bounds_csv_and_xml():
    csv_body = b"a\n" + b"x\n" * 100
    assert len(walk(csv_body, "text/csv", WalkBudget(max_values=5)).triples) == 5
    xml_body = b"<r>" + b"<a>x</a>" * 100 + b"</r>"
    walked = walk(xml_body, "application/xml", WalkBudget(max_values=5))
    assert len(walked.triples) <= 5 and "walk_budget_exceeded" in {n for n, _ in walked.anomalies}


def test_nested_multipart_is_bounded():
    body = b"x"
    for i in range(10):
        head = b"--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n" % (i + 1, i)
        body = head + body + b"\r\n--b%d--\r\n" % (i + 1)
    walked = walk(body, "multipart/mixed; boundary=b10")
    assert walked.kind == "multipart" and "depth_limit" in {n for n, _ in walked.anomalies}


hyp = pytest.importorskip("hypothesis")
st = pytest.importorskip("hypothesis.strategies")


@hyp.settings(max_examples=150, deadline=None)
@hyp.given(seed=st.integers(0, 2**32), size=st.integers(64, 4096),
           content_type=st.sampled_from([None, "text/plain", "application/json", "application/octet-stream"]))
def test_random_bytes_are_binary(seed, size, content_type):
    import random
    assert walk(random.Random(seed).randbytes(size), content_type).triples == ()


@hyp.settings(max_examples=300, deadline=None)
@hyp.given(body=st.binary(max_size=2048),
           content_type=st.sampled_from([
               None, "text/plain", "application/json", "text/csv", "application/xml",
               "multipart/form-data; boundary=b", "application/x-www-form-urlencoded",
               "application/x-ndjson", "text/plain; charset=utf-16"]))
def test_any_bytes_never_raise(body, content_type):
    walked = walk(body, content_type, WalkBudget(max_values=50, max_depth=8))
    assert len(walked.triples) <= 50
    assert all(isinstance(p, str) and isinstance(v, str) and r >= 0 for p, v, r in walked.triples)


@hyp.settings(max_examples=100, deadline=None)
@hyp.given(body=st.lists(st.sampled_from([b"--b\r\n", b"\r\n\r\n", b"Content-Type: text/csv\r\n",
                                          b"a,b\r\n", b"<x>", b"</x>", b"{", b'"k":', b"--b--", b"&", b"="]),
                         max_size=40))
def test_structured_fragments_never_raise(body):
    for ct in ("multipart/mixed; boundary=b", None, "application/xml"):
        walk(b"".join(body), ct)
