"""mobile_cn: (+86)?1[3-9]\\d{9}, optional 3-4-4 separators, no \\b next to CJK, key paths as context."""

from __future__ import annotations

import pytest

from .helpers import found


@pytest.mark.parametrize(
    ("text", "key_path", "expected"),
    [
        ("13800138000", "$.mobile", [("mobile_cn", "13800138000")]),
        ("手机13800138000", "text", [("mobile_cn", "13800138000")]),                 # CJK-adjacent
        ("联系电话：139-1234-5678。", "text", [("mobile_cn", "139-1234-5678")]),
        ("+86 138 0013 8000", "$.sjh", [("mobile_cn", "+86 138 0013 8000")]),
        ("+8615912345678", "form.lxdh", [("mobile_cn", "+8615912345678")]),
        ("call 19912345678 now", "$.remark", [("mobile_cn", "19912345678")]),
        ("18612345678", "$.receiver.receiverPhone", [("mobile_cn", "18612345678")]),
        # near misses
        ("12800138000", "text", []),                      # 12x is not a mobile prefix
        ("138001380001", "text", []),                     # 12 digits
        ("9913800138000", "text", []),                    # embedded in a longer number
        ("138-0013 8000", "text", []),                    # mixed separators
        ("13800138000", "$.orderNo", []),                 # an order number shaped like a mobile
        ("13800138000", "$.trade.outTradeNo", []),
    ],
)
def test_mobile_table(engine, text, key_path, expected):
    assert [(t, v) for t, v in found(engine, text, key_path) if t == "mobile_cn"] == expected


def test_key_hint_raises_confidence(engine):
    free = engine.find_spans("13800138000", "$.remark")[0].score
    keyed = engine.find_spans("13800138000", "$.phone")[0].score
    context = engine.find_spans("手机13800138000", "text")[0].score
    assert keyed > free and context > free


def test_faker_mobiles(engine, fake):
    for _ in range(30):
        value = fake.phone_number()
        assert found(engine, f"手机{value}", "text") == [("mobile_cn", value)]
