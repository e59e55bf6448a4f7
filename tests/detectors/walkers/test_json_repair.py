"""walkers.json_repair: a JSON body cut short (a HAR's truncated text, ICAP's max_body_bytes, the wire agent's
max_payload_bytes_per_flow) is walked as the document it was the start of, records numbered as uncut."""

from __future__ import annotations

import json
from collections.abc import Sequence

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detectors.walkers import Triple, walk
from detectors.walkers.json_repair import repair_cut

PEOPLE = [{"name": "张三", "idNo": "11010519491231002X", "mobile": "13812345678"},
          {"name": "李四", "idNo": "440301199003071230", "mobile": "13912345670"}]
RECORDS = "$.customers[*]"

# Keys as exports use them; never FHIR's family / given (a HumanName is joined from its parts, so a cut one
# would be a shorter name: see walk_json).
_KEYS = st.sampled_from(["name", "idNo", "mobile", "addr", "email", "note", "a\"b", "k\\", "中文", "tags"])
_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12) \
    | st.sampled_from(["11010519491231002X", "张三", 'a"b', "c\\d", "\u4e2d\u6587", "\\u4e2d", "", " "])
_SCALAR = _TEXT | st.integers(-10**12, 10**12) | st.floats(allow_nan=False, allow_infinity=False) \
    | st.booleans() | st.none()
_VALUE = st.recursive(_SCALAR, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(_KEYS, inner, max_size=3), max_leaves=8)
_RECORD = st.dictionaries(_KEYS, _VALUE, min_size=1, max_size=5)


def _export(meta: dict[str, object], records: Sequence[dict[str, object]], trailer: dict[str, object],
            compact: bool, ascii_only: bool) -> tuple[bytes, list[int]]:
    """The body and the byte offset at which each record's text ends."""
    seps = (",", ":") if compact else (", ", ": ")

    def dump(x: object) -> bytes:
        return json.dumps(x, ensure_ascii=ascii_only, separators=seps).encode()

    comma, colon = seps[0].encode(), seps[1].encode()
    head = dump(meta)[:-1] + (comma if meta else b"") + b'"customers"' + colon + b"["
    body, ends = bytearray(head), []
    for i, rec in enumerate(records):
        body += (comma if i else b"") + dump(rec)
        ends.append(len(body))
    body += b"]" + b"".join(comma + dump(k) + colon + dump(v) for k, v in trailer.items()) + b"}"
    json.loads(body)  # the uncut body is a document
    return bytes(body), ends


def _split(triples: Sequence[Triple]) -> tuple[dict[int, list[Triple]], list[tuple[str, str]]]:
    records: dict[int, list[Triple]] = {}
    envelope = []
    for t in triples:
        if t[0].startswith(RECORDS):
            records.setdefault(t[2], []).append(t)
        else:
            envelope.append(t[:2])
    return records, envelope


def _check_cut(body: bytes, ends: list[int], cut: int) -> None:
    full_records, full_envelope = _split(walk(body, "application/json").triples)
    walked = walk(body[:cut], "application/json")
    assert walked.kind == "json" or not walked.triples, (cut, walked.kind)
    records, envelope = _split(walked.triples)
    complete = sum(1 for end in ends if end <= cut)
    for index in range(complete):
        assert records.get(index, []) == full_records.get(index, []), (cut, index)
    # The cut record keeps its complete members only, in order: a prefix of what it holds uncut.
    assert set(records) <= set(range(complete + 1)), (cut, sorted(records))
    if complete in records:
        assert records[complete] == full_records[complete][:len(records[complete])], cut
    assert envelope == full_envelope[:len(envelope)], cut


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(meta=st.dictionaries(st.sampled_from(["code", "msg", "page"]), _SCALAR, max_size=2),
       records=st.lists(_RECORD, min_size=1, max_size=4),
       trailer=st.dictionaries(st.sampled_from(["total", "next"]), _SCALAR, max_size=2),
       compact=st.booleans(), ascii_only=st.booleans(), data=st.data())
def test_any_cut_keeps_the_complete_records_as_uncut(meta, records, trailer, compact, ascii_only, data):
    body, ends = _export(meta, records, trailer, compact, ascii_only)
    for cut in data.draw(st.lists(st.integers(0, len(body)), min_size=1, max_size=8), label="cuts"):
        _check_cut(body, ends, cut)


def test_every_cut_of_an_export_keeps_the_complete_records():
    people = [*PEOPLE, {"name": 'O"Brien \\ 王', "idNo": "\u4e2d", "n": -1.5e3, "ok": True, "x": None,
                        "addr": {"city": "杭州", "lines": ["a", "b"]}, "emoji": "\U0001f600"}]
    for compact in (True, False):
        for ascii_only in (True, False):
            body, ends = _export({"code": 0}, people, {"total": 3}, compact, ascii_only)
            for cut in range(len(body) + 1):
                _check_cut(body, ends, cut)


def test_a_cut_record_is_a_record_of_its_own_without_the_half_value():
    body = json.dumps({"customers": PEOPLE}, ensure_ascii=False).encode()
    cut = body[:body.index(b"440301") + 6]             # inside the second person's ID number
    walked = walk(cut, "application/json")
    assert walked.kind == "json"
    assert list(walked.triples) == [
        ("$.customers[*].name", "张三", 0), ("$.customers[*].idNo", "11010519491231002X", 0),
        ("$.customers[*].mobile", "13812345678", 0), ("$.customers[*].name", "李四", 1)]
    [(name, detail)] = walked.anomalies
    assert name == "json_truncated"
    assert "440301" not in detail and "李四" not in detail


def test_a_body_malformed_in_the_middle_is_still_text():
    body = json.dumps({"customers": PEOPLE}).replace('"mobile"', "mobile", 1).encode()
    walked = walk(body, "application/json")
    assert walked.kind == "text"
    assert [name for name, _ in walked.anomalies] == ["json_malformed"]


def test_junk_after_a_record_is_not_a_cut():
    walked = walk(b'[{"a": "x"}, 11010519491231002X', "application/json")
    assert walked.kind == "text"
    assert [name for name, _ in walked.anomalies] == ["json_malformed"]


def test_repair_closes_the_open_containers_after_the_last_complete_value():
    assert repair_cut('{"a": [1, {"b": "x", "c": "y') == '{"a": [1, {"b": "x"}]}'
    assert repair_cut('{"a": [1, 2') == '{"a": [1]}'                       # 2 may have been 23
    assert repair_cut('{"a": "x"') == '{"a": "x"}'
    assert repair_cut('{"a": "x\\u4e') == "{}"
    assert repair_cut('[["x", "y"], ["z"') == '[["x", "y"], ["z"]]'
    assert repair_cut('{"a": 1} x') is None                                # not a cut: junk
    assert repair_cut('{"a": 1, ]') is None                                 # broken, not cut
    assert repair_cut('"abc') is None                                       # nothing complete


def test_a_deep_cut_document_is_bounded():
    # Deeper than the walk budget: the closed document is walked like any other, the deep part skipped.
    walked = walk(b'{"a": "x", "b": ' + b"[" * 100 + b'"y", "z', "application/json")
    assert (walked.kind, walked.triples) == ("json", (("$.a", "x", 1),))   # after the one record, [[…
    assert [name for name, _ in walked.anomalies] == ["json_truncated", "depth_limit"]
    # Deeper than the parser goes: scanned as text, as an uncut one is.
    walked = walk(b'{"a": ' + b"[" * 50_000 + b'"y", "z', "application/json")
    assert walked.kind == "text"
    assert [name for name, _ in walked.anomalies] == ["json_too_deep"]


def test_long_hostile_tails_are_judged_in_linear_time():
    n = 2_000_000
    # json stops at the second digit of `[01…`: the tail is a long run of digits, then no cut after all.
    broken = (b"[0" + b"1" * n + b"x", b"[1.e" + b"5" * n + b"x", b'["a", "' + b" " * n + b'"x',
              b'["a", ' + b"[" * 500 + b"9" * n + b"x")
    for body in broken:
        assert walk(body, "application/json").anomalies[0][0] == "json_malformed"
    for body in (b'{"a": "' + b"\\" * n, b'[' + b'"x",' * n):
        assert walk(body, "application/json").anomalies[0][0] == "json_truncated"
