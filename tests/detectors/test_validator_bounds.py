"""Validator boundaries that mutation testing (make mutate, mutmut) showed no test held: the USCC check
character and structure (authority, class, province, the GB 11714 check 11 -> "0" and 10 -> "X"),
eight-digit dates and the earliest year, keyed account numbers, bank-card length and brand prefixes,
resident IDs (earliest birth year, provinces, residence permits), birth dates and e-mail addresses."""

from __future__ import annotations

import datetime as dt

import pytest
from stdnum import luhn
from stdnum.cn import ric, uscc

from detectors.validators import (
    birth_date,
    validate_account,
    validate_date,
    validate_email,
    validate_luhn,
    validate_ric,
    validate_uscc,
)

WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)


def org_code(prefix: str) -> str:
    """An 8-character GB 11714 body with its check character."""
    check = 11 - sum(int(c, 36) * w for c, w in zip(prefix, WEIGHTS, strict=True)) % 11
    return prefix + {10: "X", 11: "0"}.get(check, str(check))


def org_with_check(char: str) -> str:
    return next(org_code(f"{n:08d}") for n in range(1, 10_000) if org_code(f"{n:08d}")[-1] == char)


def code(authority: str = "9", klass: str = "1", region: str = "330100", org: str | None = None) -> str:
    body = authority + klass + region + (org or org_code("MA2H3K5P"))
    return body + uscc.calc_check_digit(body)


def wrong_check(value: str) -> str:
    return value[:17] + ("1" if value[17] != "1" else "2")


@pytest.mark.parametrize(("value", "keyed", "valid"), [
    (code(), False, True),
    (wrong_check(code()), False, False),
    (wrong_check(code()), True, False),                    # a key never excuses a wrong check character
    (code(authority="B"), False, False),
    (code(authority="B"), True, True),                     # the structure is only asked of a free match
    (code(klass="4"), False, False),
    (code(region="990100"), False, False),                 # 99 is no province
    (code(region="33A100"), False, False),
    (code(org=org_with_check("0")), False, True),          # GB 11714 check 11 is written 0
    (code(org=org_with_check("X")), False, True),          # and 10 is X
    (code(org=org_with_check("0")[:8] + "1"), False, False),
], ids=["valid", "wrong-check", "wrong-check-keyed", "authority", "authority-keyed", "class", "province",
        "region-not-digits", "org-check-0", "org-check-X", "org-check-wrong"])
def test_uscc(value: str, keyed: bool, valid: bool) -> None:
    assert validate_uscc(value, {}, keyed) is valid


@pytest.mark.parametrize(("text", "valid"), [
    ("20260315", True), ("20261305", False), ("20260231", False), ("2026-02-28", True),
    ("1900-01-01", True), ("1899-12-31", False),
])
def test_date(text: str, valid: bool) -> None:
    assert validate_date(text, {}) is valid


@pytest.mark.parametrize(("text", "valid"), [
    ("12345678", True), ("1234567", False), ("1" * 28 + "23", True), ("1" * 29 + "23", False),
    ("11111123", True), ("11111112", False),
])
def test_keyed_account_number(text: str, valid: bool) -> None:
    assert validate_account(text, {}, keyed=True) is valid
    assert validate_account(text, {}, keyed=False) is False


def luhn_number(body: str) -> str:
    return body + luhn.calc_check_digit(body)


def resident_id(body17: str) -> str:
    return body17 + ric.calc_check_digit(body17 + "0")


@pytest.mark.parametrize(("text", "params", "valid"), [
    (luhn_number("622202100012345"), {}, True),                          # 16 digits
    (luhn_number("62220210001234567"), {}, True),                        # 18 digits, no resident ID
    (luhn_number("622202100012345678"), {}, True),                       # 19 digits
    (luhn_number("6222021000123456789"), {}, False),                     # 20 digits
    (luhn_number("552202100012345"), {"brand_prefixes": ("62",)}, False),  # not a card brand's prefix
    (luhn_number("552202100012345"), {"brand_prefixes": ("62", "55")}, True),
])
def test_bank_card(text: str, params: dict, valid: bool) -> None:
    assert validate_luhn(text, params) is valid


def test_a_resident_id_that_also_passes_luhn_is_no_bank_card() -> None:
    both = next(v for n in range(1000) if luhn.is_valid(v := resident_id(f"11010519900307{n:03d}")))
    assert validate_ric(both, {}) and not validate_luhn(both, {})


@pytest.mark.parametrize(("text", "params", "valid"), [
    (resident_id("11010519000101123"), {}, True),                        # born 1 January 1900
    (resident_id("11010518991231123"), {}, False),
    (resident_id("11010519500101123"), {"min_birth_year": 1960}, False),
    (resident_id("99010519900307123"), {}, False),                       # 99 is no province
    (resident_id("11010519900307123"), {"province_codes": frozenset({"31"})}, False),
    (resident_id("81000019900307123"), {}, False),                       # a residence permit: travel_permit
])
def test_resident_id(text: str, params: dict, valid: bool) -> None:
    assert validate_ric(text, params) is valid


@pytest.mark.parametrize(("field_type", "text", "born"), [
    ("resident_id_cn", "110105201512251234", dt.date(2015, 12, 25)),
    ("resident_id_cn", "110105-20151225-1234", dt.date(2015, 12, 25)),
    ("date_of_birth", "20151225", dt.date(2015, 12, 25)),
    ("date_of_birth", "2015-12-25", dt.date(2015, 12, 25)),
    ("date_of_birth", "2015年12月25日", dt.date(2015, 12, 25)),
    ("date_of_birth", "20151325", None),
    ("date_of_birth", "2015-12", None),
    ("mobile_cn", "13800138000", None),
])
def test_birth_date(field_type: str, text: str, born: dt.date | None) -> None:
    # The age of a person decides whether a record is a minor's (sensitive PI).
    assert birth_date(field_type, text) == born


@pytest.mark.parametrize(("text", "valid"), [
    ("x" * 64 + "@example.com", True), ("x" * 65 + "@example.com", False), ("a..b@example.com", False),
    ("a@localhost", False), ("@example.com", False), ("a.example.com", False), ("a@example.com", True),
])
def test_email(text: str, valid: bool) -> None:
    assert validate_email(text, {}) is valid
