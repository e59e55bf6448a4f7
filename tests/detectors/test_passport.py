"""passport_no: PRC E\\d{8}, E[A-HJ-NP-Z]\\d{7}, [GDSP]\\d{8} with a key or 护照 nearby; foreign [A-Z0-9]{6,9}
only under a passport key."""

from __future__ import annotations

import pytest

from detectors.validators import validate_passport

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


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("E12345678", True), ("EA1234567", True), ("G12345678", True), ("D12345678", True),
        ("S12345678", True), ("P12345678", True),
        # near misses without a passport key: the engine's PRC pattern never offers these, the validator
        # must refuse them on its own
        ("H12345678", False),                              # H: a home-return permit, not a passport
        ("M12345678", False),                              # M: a home-return permit (Macao)
        ("C12345678", False),                              # C: a travel permit
        ("EI1234567", False),                              # I is not used in E-series letters
        ("G1234567", False),                               # 7 digits
    ],
)
def test_prc_passport_validator_without_a_key(value, expected):
    assert validate_passport(value, {}, keyed=False) is expected


@pytest.mark.parametrize(("text", "keyed", "valid"), [
    ("E 1234 5678", False, True),                          # PRC passport written in groups
    ("A11111", True, False),                               # foreign: two distinct characters are filler
    ("AB1111", True, True),                                # three are a number
    ("AB1111", False, False),                              # a foreign shape needs its key
], ids=["grouped", "two-chars", "three-chars", "foreign-free"])
def test_passport_validator_bounds(text: str, keyed: bool, valid: bool) -> None:
    assert validate_passport(text, {}, keyed) is valid
