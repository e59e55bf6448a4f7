"""passport_no: PRC E\\d{8}, E[A-HJ-NP-Z]\\d{7}, [GDSP]\\d{8} with a key or 护照 nearby; foreign [A-Z0-9]{6,9}
only under a passport key."""

from __future__ import annotations

import pytest

from .helpers import found


@pytest.mark.parametrize(
    ("text", "key_path", "expected"),
    [
        ("E12345678", "$.passportNo", [("passport_no", "E12345678")]),
        ("EA1234567", "form.hzh", [("passport_no", "EA1234567")]),
        ("G12345678", "$.traveller.passport", [("passport_no", "G12345678")]),
        ("护照号码：E87654321，有效期", "text", [("passport_no", "E87654321")]),      # CJK-adjacent
        ("X1234567", "$.passportNumber", [("passport_no", "X1234567")]),             # foreign, keyed
        # near misses
        ("E12345678", "$.remark", []),                     # PRC shape but no key and no context
        ("护照E123456789", "text", []),                     # 9 digits: part of a longer number
        ("EI1234567", "$.remark", []),                     # I is not used in E-series letters, no key
        ("X1234567", "$.remark", []),                      # foreign shape only counts under a key
        ("ABCDEFG", "$.passportNo", []),                   # no digit: a word, not a number
        ("E12345678", "$.orderNo", []),                    # a business number
    ],
)
def test_passport_table(engine, text, key_path, expected):
    assert [(t, v) for t, v in found(engine, text, key_path) if t == "passport_no"] == expected
