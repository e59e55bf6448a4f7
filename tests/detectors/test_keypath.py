"""Key paths never carry a raw value (DESIGN §3, detections.key_paths; issue 9 finding 1): a key segment that
holds PI-shaped content becomes `<value>`, catalog key hints stay."""

from __future__ import annotations

import json
import re

import pytest

from detectors.engine import Engine
from detectors.keypath import VALUE, KeyRules, redact_key_path, redact_paths, redact_segment

from .conftest import CONFIGS
from .helpers import rid

RID = rid("11010519491231002")


@pytest.fixture(scope="module")
def rules() -> KeyRules:
    return KeyRules.from_configs(CONFIGS)


@pytest.mark.parametrize("segment", [
    # catalog key hints: English, pinyin initials, Chinese
    "idNo", "id_no", "sfzh", "xm", "sjh", "姓名", "手机号", "收件人", "mobile", "receiverMobile", "cardNo",
    # ordinary keys, also Chinese ones that start with a surname character (金, 时, 明, 单)
    "orders", "receiver", "data", "items", "金额", "时间", "明细", "单价", "商品名称", "备注",
    # few digits are versions, counters, short codes
    "v2", "2024", "item_1234", "PID", "5", "a1b2", "http/1.1",
    # placeholders already in paths
    "*", VALUE,
])
def test_when_a_segment_is_a_key_hint_or_an_ordinary_key_then_it_stays(rules: KeyRules, segment: str) -> None:
    assert redact_segment(segment, rules) == segment


@pytest.mark.parametrize("segment", [
    # digits with separators or spaces: mobile, resident ID, bank card, landline, IP address
    "138-1234-5678", "138 1234 5678", "1101-0519-4912-3100-2X", "6222 0212 3456 7890", "0571-8888 6666",
    "192.168.10.20", "13812345678", "１３８１２３４５６７８",
    # a hint with a value glued on is still a value
    "mobile13812345678", "手机号:138-1234-5678",
    # e-mail, device ids
    "zhang.san@example.com", "550e8400-e29b-41d4-a716-446655440000", "AA:BB:CC:DD:EE:FF",
    # a person's name used as a key: Han (single and compound surname), minority, Latin
    "张三", "王小明", "欧阳娜娜", "买买提·艾力", "John Smith",
])
def test_when_a_segment_holds_a_value_then_it_becomes_value(rules: KeyRules, segment: str) -> None:
    assert redact_segment(segment, rules) == VALUE


@pytest.mark.parametrize(("path", "expected"), [
    ("$.orders[*].receiver.idNo", "$.orders[*].receiver.idNo"),
    ("form.sfzh", "form.sfzh"),
    ("text", "text"),
    ("hl7.PID[*].5", "hl7.PID[*].5"),
    ("csv[*].姓名", "csv[*].姓名"),
    ("$.users.138-1234-5678.idNo", f"$.users.{VALUE}.idNo"),
    ("$['6222 0212 3456 7890'].xm", f"$.{VALUE}.xm"),
    ("$['1101-0519-4912-3100-2X']", f"$.{VALUE}"),
    ("$.张三.手机号", f"$.{VALUE}.手机号"),
    ("csv[*].王小明", f"csv[*].{VALUE}"),
    ("xml.orders.order[*].张三", f"xml.orders.order[*].{VALUE}"),
    ("$['a.b']", "$['a.b']"),
    ("$['it\\'s']", "$['it\\'s']"),
    # The walkers' own formats (detectors/walkers: common.path_key, hl7, vcf, multipart; derived
    # pairs and containers, the inspector's `query.` prefix) come out as they went in.
    ("$", "$"),
    ("form", "form"),
    ("csv[*].*", "csv[*].*"),
    ("tsv[*].idNo", "tsv[*].idNo"),
    ("xml.orders.order[*].idNo", "xml.orders.order[*].idNo"),
    ("hl7.OBR[*].31.1", "hl7.OBR[*].31.1"),
    ("vcf[*].genotype", "vcf[*].genotype"),
    ("vcf.header", "vcf.header"),
    ("multipart.upload[*].idNo", "multipart.upload[*].idNo"),
    ("multipart[*].sfzh", "multipart[*].sfzh"),
    ("query.form.sfzh", "query.form.sfzh"),
    ("$.points[*].{lat,lng}", "$.points[*].{lat,lng}"),
    ("$[*][*].mobile", "$[*][*].mobile"),
    ("$.orders[*].receiver.<value>.idNo", "$.orders[*].receiver.<value>.idNo"),
    ("$['order no'].x", "$['order no'].x"),
    # index steps an older agent may send: short numbers are indexes, not values
    ("$.orders[0].idNo", "$.orders[0].idNo"),
    ("$[12].mobile", "$[12].mobile"),
    # Found by review with a hostile agent uploading rows directly: the root segment.
    ("13812345678.idNo", f"{VALUE}.idNo"),
    ("张三", VALUE),
    ("张三.mobile", f"{VALUE}.mobile"),
    ("138-1234-5678", VALUE),
    ("zhang.san@example.com", VALUE),
    # ... and a value with dots written as plain steps (an older agent did not quote such keys)
    ("$.hosts.192.168.10.20.mobile", f"$.hosts.{VALUE}.mobile"),
    ("138.1234.5678.idNo", f"{VALUE}.idNo"),
    ("$.users.zhang.san@example.com", f"$.{VALUE}"),
    ("$.a[*].110.105.194.912.310.021[*].xm", f"$.a[*].{VALUE}[*].xm"),
    # ... unquoted bracket steps
    ("$[13812345678]", f"$.{VALUE}"),
    ("$.x[110105194912310021]", f"$.x.{VALUE}"),
    ("$.x[ 138 1234 5678 ].idNo", f"$.x.{VALUE}.idNo"),
    ("$[张三].xm", f"$.{VALUE}.xm"),
    # ... double-quoted bracket steps
    ('$["110105194912310021"]', f"$.{VALUE}"),
    ('$["张三"].sjh', f"$.{VALUE}.sjh"),
    ('$["a\\"b"]', '$["a\\"b"]'),
    ('$["idNo"]', '$["idNo"]'),
    # A path that does not parse is one segment: anything PI-shaped anywhere in it makes it <value>.
    ("$.a['13812345678", VALUE),
    ("$.a[13812345678", VALUE),
    ("$..张三", VALUE),
    ("$[[13812345678]]", VALUE),
    ('$.a["110105194912310021', VALUE),
    ("$.a['unterminated", "$.a['unterminated"),
])
def test_redact_key_path(rules: KeyRules, path: str, expected: str) -> None:
    assert redact_key_path(path, rules) == expected


def test_redaction_without_a_catalog_still_folds_shapes_and_names() -> None:
    """The collector may call it with the bundled catalog's rules (the default): same answers."""
    assert redact_key_path("$.张三.138-1234-5678.idNo") == f"$.{VALUE}.{VALUE}.idNo"
    assert redact_key_path("$.姓名") == "$.姓名"


def test_redact_paths_keeps_order_and_removes_the_duplicates_redaction_made(rules: KeyRules) -> None:
    paths = ["$.a.13812345678", "$.b", "$.a.13912345678", "$.b", "$.a['138 1234 5678']"]
    assert redact_paths(paths, rules) == [f"$.a.{VALUE}", "$.b"]


def test_redact_paths_is_linear(rules: KeyRules) -> None:
    """A hostile upload of many distinct paths: the dedup is a set lookup, not a scan of the list."""
    import time

    def timed(n: int) -> float:
        # letters only: `k12345` would be a value (five digits)
        paths = ["$.k" + "".join("abcdefghij"[int(d)] for d in str(i)) for i in range(n)]
        redact_paths(paths, rules)        # warm the value_shaped cache for these segments
        start = time.thread_time()       # this thread's CPU time: other processes on the box don't count
        assert len(redact_paths(paths, rules)) == n
        return time.thread_time() - start

    small, large = timed(2_000), timed(20_000)
    # 10x the paths: ~10x the CPU when linear, ~100x when quadratic.
    assert large < small * 30, (small, large)


@pytest.mark.parametrize("path", [
    "$" + "['" * 20_000,                       # unterminated quoted steps
    '$["' + "a" * 100_000,
    "$.@" + ".a" * 20_000 + "[x]",             # an @ and a long dot-joined run after it
    "$.1.2.3.4.5" + ".a" * 20_000 + "[x]",     # digits and a long run
    "$" + ".1.2.3.4.5.x" * 5_000,
    "$" + "[1]" * 30_000,
    "$." + "a" * 200_000,
], ids=["quotes", "dquote", "at-run", "digits-run", "many-runs", "brackets", "long-key"])
def test_a_hostile_long_path_takes_linear_time(rules: KeyRules, path: str) -> None:
    """The collector redacts whatever an agent uploads: no regex backtracking, no scan per match."""
    import time

    start = time.thread_time()                      # CPU time of this thread, not wall-clock
    out = redact_key_path(path, rules)
    assert time.thread_time() - start < 1.0         # ~0.05 s of CPU each; quadratic was 6.6 s for 40 kB
    assert not re.search(r"\d(?:[.\s]*\d){4}", out)


def test_the_engine_keeps_every_root_the_walkers_make(engine: Engine) -> None:
    """Roots go through the same redaction as keys, with the engine's recognizers: none of ours is PI."""
    for root in ("$", "form", "text", "csv", "tsv", "xml", "hl7", "vcf", "grpc", "multipart", "query"):
        assert engine.safe_path(f"{root}.idNo") == f"{root}.idNo"
        assert engine.safe_path(root) == root


_DIGITS_WITH_SEPARATORS = re.compile(r"\d(?:[\s\-.]*\d){4,}")
_RAW_KEYS = ("138-1234-5678", "1101-0519-4912-3100-2X", "6222 0212 3456 7890", "张三", "王小明")


def _body() -> bytes:
    return json.dumps({
        "byPhone": {"138-1234-5678": {"姓名": "李四", "idNo": RID}},
        "byId": {"1101-0519-4912-3100-2X": {"手机号": "13912345678"}},
        "cards": {"6222 0212 3456 7890": {"xm": "赵六", "sfzh": RID}},
        "张三": {"mobile": "13812345678", "sfzh": RID},
        "王小明": {"sjh": "13712345678", "idNo": RID},
    }, ensure_ascii=False).encode()


def test_a_body_keyed_by_values_gives_key_paths_without_them(engine: Engine) -> None:
    inspection = engine.inspect(_body(), "application/json")
    paths = {h.key_path for h in inspection.hits} | {e.key_path for e in inspection.evidence} \
        | {i.key_path for i in inspection.important}
    assert inspection.hits, "the values under the keys are still found"
    for path in paths:
        assert not _DIGITS_WITH_SEPARATORS.search(path), path
        for raw in _RAW_KEYS:
            assert raw not in path, path
    # The hint keys below the redacted ones stay: the paths still say what the value is.
    assert {"$.byPhone.<value>.姓名", "$.byPhone.<value>.idNo", "$.byId.<value>.手机号", "$.cards.<value>.xm",
            "$.cards.<value>.sfzh", "$.<value>.mobile", "$.<value>.sjh"} <= paths
    types = {(h.key_path, h.field_type) for h in inspection.hits}
    assert ("$.<value>.mobile", "mobile_cn") in types
    assert ("$.byPhone.<value>.idNo", "resident_id_cn") in types
