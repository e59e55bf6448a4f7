"""bank_account: account numbers under account keys, Alipay user ids (2088 + 12 digits), WeChat openids
(o + 27) under openid keys."""

from __future__ import annotations

import pytest

from .helpers import found

OPENID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"


@pytest.mark.parametrize(
    ("text", "key_path", "expected"),
    [
        ("6230 5828 0001 2345 678", "$.bankAccount", [("bank_account", "6230 5828 0001 2345 678")]),
        ("1202020409900012345", "form.yhzh", [("bank_account", "1202020409900012345")]),
        ("2088102146225135", "$.alipayUserId", [("bank_account", "2088102146225135")]),
        ("支付宝账号2088102146225135", "text", [("bank_account", "2088102146225135")]),
        (OPENID, "$.user.openid", [("bank_account", OPENID)]),
        # near misses
        ("2088102146225135", "$.remark", []),              # Alipay shape, no key or context
        # 17 digits under an Alipay key: not an Alipay id, still an account number under an account key
        ("20881021462251351", "$.alipayUserId", [("bank_account", "20881021462251351")]),
        (OPENID, "$.remark", []),                          # openid shape only under its key
        (OPENID[:-1], "$.openid", []),                     # 27 characters
        ("0000000000", "$.accountNo", []),                 # placeholder zeros
        ("12345", "$.accountNo", []),                      # too short for an account
        ("2088102146225135", "$.orderNo", []),
    ],
)
def test_bank_account_table(engine, text, key_path, expected):
    assert [(t, v) for t, v in found(engine, text, key_path) if t == "bank_account"] == expected
