"""Key-only types: auth_secret (masked fully), transaction_record, other_biometric, religion, criminal_record,
communications, ip_address, online_account, demographic, date_of_birth — a value counts only under a key
hint of its type (English, camelCase, pinyin, pinyin initials, Chinese), and placeholders never do."""

from __future__ import annotations

import json

import pytest

from .helpers import found

TEMPLATE = "Rk1SACAyMAAAAAEwAAABPAFiAMUAxQEAAAAoN0CUAEJgAECqAE5fAEBpAFRjAEB5AGhqAIB" * 3


@pytest.mark.parametrize(
    ("value", "key_path", "expected"),
    [
        ("Passw0rd!", "$.password", ["auth_secret"]),
        ("123456", "form.yzm", ["auth_secret"]),
        ("737", "$.card.cvv", ["auth_secret"]),
        ("hunter22", "$.登录密码", ["auth_secret"]),
        ("本月消费 12 笔", "$.jyls", ["transaction_record"]),
        ("12000", "$.salary", ["transaction_record"]),
        ("星巴克 西湖店", "$.billList[*].merchant", ["transaction_record"]),     # parent key hint
        (TEMPLATE, "$.fingerprint", ["other_biometric"]),
        ("佛教", "$.zjxy", ["religion"]),
        ("2019年盗窃罪判处有期徒刑一年", "$.criminalRecord", ["criminal_record"]),
        ("晚上一起吃饭吗", "$.smsContent", ["communications"]),
        ("203.0.113.7", "$.loginIp", ["ip_address"]),
        ("2408:8207:1850:6d0::1", "$.clientIp", ["ip_address"]),
        ("zhangsan_88", "$.username", ["online_account"]),
        ("123456789", "$.qq", ["online_account"]),
        ("12345678901", "$.username", ["online_account"]),                 # 12…: no mobile prefix
        ("汉族", "$.mz", ["demographic"]),
        ("男", "$.xb", ["demographic"]),                                        # one character under a key
        ("1990-01-01", "$.csrq", ["date_of_birth"]),
        # near misses
        ("******", "$.password", []),                      # already masked
        ("Passw0rd!", "$.remark", []),                     # no key: nothing to say
        ("99.00", "$.jg", []),                             # jg is also 价格 (price)
        ("1", "$.xb", []),                                 # a code alone
        ("a3f5c9e1d2b4a6f8c0e2d4b6a8f0c2e4", "$.fingerprint", []),   # a browser fingerprint hash
        ("127.0.0.1", "$.clientIp", []),                   # loopback names no one
        ("13800138000", "$.username", ["mobile_cn"]),      # a mobile login is a mobile number
        ("active", "$.accountStatus", []),
        ("100.00", "$.accountBalance", []),
        ("VIP", "$.contacts[*].level", []),                # a CRM's customer list, not an address book
        ("null", "$.religion", []),
        ("2026-03-03 10:00:00", "$.timestamp", []),
    ],
)
def test_keyed_types_table(engine, value, key_path, expected):
    assert [t for t, _ in found(engine, value, key_path)] == expected


def test_secret_is_masked_fully(engine):
    hits = engine.inspect(json.dumps({"pwd": "Sup3rSecret"}).encode(), "application/json").hits
    assert [(h.field_type, h.masked) for h in hits] == [("auth_secret", "******")]
