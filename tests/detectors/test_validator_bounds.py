"""Validator boundaries that mutation testing (make mutate, mutmut) showed no test held: the USCC check
character and structure (authority, class, province, the GB 11714 check 11 -> "0" and 10 -> "X"),
eight-digit dates and the earliest year, keyed account numbers, bank-card length and brand prefixes,
resident IDs (earliest birth year, provinces, residence permits, groups), birth dates, e-mail addresses,
the once-a-minute clock, secrets, online accounts, IP addresses and how catalog params are prepared."""

from __future__ import annotations

import datetime as dt
import types

import pytest
from stdnum import luhn
from stdnum.cn import ric, uscc

from detectors import validators
from detectors.validators import (
    birth_date,
    prepare_params,
    validate_account,
    validate_date,
    validate_email,
    validate_ip,
    validate_luhn,
    validate_online_account,
    validate_ric,
    validate_secret,
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


class _Clock:
    """A monotonic clock and a calendar the test moves by hand (validators read both through `time`/`dt`)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, today: dt.date) -> None:
        self.now, self.today = 1000.0, today
        clock = self

        class _Date(dt.date):
            @classmethod
            def today(cls) -> dt.date:
                return clock.today

        monkeypatch.setattr(validators, "time", types.SimpleNamespace(monotonic=lambda: clock.now))
        monkeypatch.setattr(validators, "dt", types.SimpleNamespace(date=_Date))
        monkeypatch.setattr(validators, "_today_cache", [None, 0.0])


def test_today_is_asked_of_the_clock_at_most_once_a_minute(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = _Clock(monkeypatch, dt.date(2026, 3, 15))
    assert validators._today() == dt.date(2026, 3, 15)
    clock.today, clock.now = dt.date(2026, 3, 16), 1059.0
    assert validators._today() == dt.date(2026, 3, 15)       # within the minute: the cached day
    clock.now = 1060.0
    assert validators._today() == dt.date(2026, 3, 16)       # a long-running collector sees the new day


@pytest.mark.parametrize(("text", "valid"), [
    ("2026-03-15", True), ("2026-03-16", False), ("2026", False), ("20260315", True),
], ids=["born-today", "born-tomorrow", "year-only", "eight-digits"])
def test_a_date_of_birth_may_be_today_not_tomorrow(monkeypatch: pytest.MonkeyPatch, text: str,
                                                    valid: bool) -> None:
    _Clock(monkeypatch, dt.date(2026, 3, 15))
    assert validate_date(text, {}) is valid


def test_a_resident_id_written_in_groups() -> None:
    value = resident_id("11010519900307123")
    assert validate_ric(f"{value[:6]} {value[6:14]} {value[14:]}", {}) is True
    assert validate_ric(f"{value[:6]}-{value[6:14]}-{value[14:]}", {}) is True


@pytest.mark.parametrize(("value", "params", "valid"), [
    (code()[:17], {}, False),                                        # 17 characters
    (code()[:16] + "IO", {}, False),                                 # outside the GB 32100 alphabet
    (code(region="330100"), {"province_codes": frozenset({"31"})}, False),   # the configured provinces
    (code(region="310100"), {"province_codes": frozenset({"31"})}, True),
], ids=["short", "alphabet", "province-not-configured", "province-configured"])
def test_uscc_shape(value: str, params: dict, valid: bool) -> None:
    assert validate_uscc(value, params, False) is valid


@pytest.mark.parametrize(("text", "valid"), [
    ("a@" + ("x" * 63 + ".") * 3 + "x" * 57 + ".com", True),          # a 253-character domain
    ("a@" + ("x" * 63 + ".") * 3 + "x" * 58 + ".com", False),         # 254
    ("a@mail.example.c0m", False),                                   # the last label is the TLD
    ("a@mail.example.com", True),
], ids=["domain-253", "domain-254", "tld-not-letters", "three-labels"])
def test_email_domain(text: str, valid: bool) -> None:
    assert validate_email(text, {}) is valid


@pytest.mark.parametrize(("text", "params", "valid"), [
    ("abc", {}, True), ("ab", {}, False),
    ("12345", {"min_length": 6}, False), ("123456", {"min_length": 6}, True),
], ids=["three", "two", "below-configured", "configured"])
def test_secret_length(text: str, params: dict, valid: bool) -> None:
    assert validate_secret(text, params, keyed=True) is valid


@pytest.mark.parametrize(("text", "valid"), [
    ("zhangsan_88", True),
    ("138-0013-8000", False),                              # a mobile number, written in groups
    ("+86 138 0013 8000", False),
    ("zhangsan@example.com", False),                       # an e-mail address
    (resident_id("11010519900307123"), False),             # a resident ID
    ("12.50", False),                                      # a balance
], ids=["uid", "mobile-grouped", "mobile-international", "email", "resident-id", "balance"])
def test_online_account_is_not_another_identifier(text: str, valid: bool) -> None:
    assert validate_online_account(text, {}, keyed=True) is valid


@pytest.mark.parametrize(("text", "valid"), [
    ("203.0.113.7", True), ("2001:db8::1", True), ("not an address", False), ("0.0.0.0", False),
    ("127.0.0.1", False), ("239.1.1.1", False), ("169.254.1.1", False), ("240.0.0.1", False),
], ids=["public", "ipv6", "no-address", "unspecified", "loopback", "multicast", "link-local", "reserved"])
def test_ip_names_a_user(text: str, valid: bool) -> None:
    assert validate_ip(text, {}) is valid


@pytest.mark.parametrize(("params", "prepared"), [
    ({"brand_prefixes": ["62", 4]}, {"brand_prefixes": ("62", "4")}),     # str.startswith wants a tuple
    ({"reject_suffixes": ["市"]}, {"reject_suffixes": ("市",)}),
    ({"reject_words": ["Test", "NULL"]}, {"reject_words": frozenset({"test", "null"})}),   # any case
    ({"province_codes": ["AB", 31]}, {"province_codes": frozenset({"AB", "31"})}),          # case kept
    ({"min_length": 4}, {"min_length": 4}),
], ids=["prefixes", "suffixes", "reject-words", "other-lists", "scalars"])
def test_prepare_params(params: dict, prepared: dict) -> None:
    out = prepare_params(params)
    assert out == prepared
    assert {k: type(v) for k, v in out.items()} == {k: type(v) for k, v in prepared.items()}
