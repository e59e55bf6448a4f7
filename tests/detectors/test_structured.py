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
        # keys needing brackets; keys that are values are wildcarded so no raw value reaches a path
        (_body({"a.b": "v", "13800138000": {"n": "v"}, "z@x.cn": "v"}), "application/json", "json",
         [("$['a.b']", "v", 0), ("$.*.n", "v", 0), ("$.*", "v", 0)]),
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
    assert ("json_too_deep" in {n for n, _ in walked.anomalies}) or walked.anomalies


def test_value_budget():
    body = _body([{"a": str(i)} for i in range(100)])
    walked = walk(body, "application/json", WalkBudget(max_values=10))
    assert len(walked.triples) == 10
    assert "value_budget_exhausted" in {n for n, _ in walked.anomalies}


@pytest.mark.parametrize(
    ("content_type", "charset"),
    [("application/json; charset=UTF-8", "utf-8"), ("text/plain;charset=\"gbk\"", "gb18030"),
     ("application/x-www-form-urlencoded; charset=gb2312", "gb18030"), ("text/plain; charset=bogus", None),
     (None, None)],
)
def test_declared_charset(content_type, charset):
    assert declared_charset(content_type) == charset
