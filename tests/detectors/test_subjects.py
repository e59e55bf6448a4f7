"""value_key: HMAC-SHA256 under the deployment key, first 8 bytes as signed int64; normalization per type."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from detectors.subjects import normalize, value_key

KEY = b"k" * 32


@pytest.mark.parametrize("key", [KEY, b"short", b"x" * 64, b"y" * 65, bytes(range(200))],
                         ids=["32 bytes", "5 bytes", "one block", "over a block", "200 bytes"])
def test_value_key_is_the_documented_hmac_for_any_key_length(key: bytes) -> None:
    # value_key keeps RFC 2104's padded states per key instead of calling hmac: it must stay the same HMAC.
    for value in ("13800138000", "张三", ""):
        digest = hmac.new(key, f"mobile_cn{value}".encode(), hashlib.sha256).digest()
        assert value_key(key, "mobile_cn", value) == int.from_bytes(digest[:8], "big", signed=True)


def test_value_key_is_signed_int64_and_depends_on_type_and_key():
    k = value_key(KEY, "mobile_cn", "13800138000")
    assert -(2**63) <= k < 2**63
    assert k != value_key(KEY, "bank_card", "13800138000")
    assert k != value_key(b"other", "mobile_cn", "13800138000")
    assert any(value_key(KEY, "email", f"u{i}@x.cn") < 0 for i in range(20))


@pytest.mark.parametrize(
    ("normalizer", "raw", "normalized"),
    [
        ("mobile", "+86 138-0013-8000", "13800138000"),
        ("mobile", "008613800138000", "13800138000"),
        ("mobile", "8613800138000", "13800138000"),
        ("mobile", "138 0013 8000", "13800138000"),
        ("resident_id", "11010519491231002x", "11010519491231002X"),
        ("email", " Zhang.San@Example.COM ", "zhang.san@example.com"),
        ("digits", "6222 0202-0011", "622202020011"),
        ("text", "  浙江省 杭州市\u3000西湖区 ", "浙江省 杭州市 西湖区"),
        ("text", "Zhang  San", "zhang san"),
        ("text", "张三", "张三"),
    ],
)
def test_normalize_table(normalizer, raw, normalized):
    assert normalize(normalizer, raw) == normalized
