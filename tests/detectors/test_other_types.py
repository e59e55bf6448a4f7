"""Types beyond the first six that already have patterns: date_of_birth, landline_cn, org_credit_code."""

from __future__ import annotations

import pytest
from stdnum.cn import uscc

from .helpers import found, rid

USCC = "91330106MA2AXXXX1"[:17].replace("X", "0")
USCC += uscc.calc_check_digit(USCC)


@pytest.mark.parametrize(
    ("text", "key_path", "expected"),
    [
        ("1990-01-01", "$.birthday", [("date_of_birth", "1990-01-01")]),
        ("1985年12月31日", "$.csrq", [("date_of_birth", "1985年12月31日")]),
        ("1990-13-01", "$.birthday", []),
        ("1990-01-01", "$.createTime", []),                              # dates need a birth key
        ("0571-88888888", "$.gddh", [("landline_cn", "0571-88888888")]),
        ("0571-88888888", "$.remark", []),
        (USCC, "$.tyshxydm", [("org_credit_code", USCC)]),
        (f"统一社会信用代码：{USCC}", "text", [("org_credit_code", USCC)]),
        (USCC, "$.remark", []),                                          # needs a key or context
        (USCC[:-1] + ("0" if USCC[-1] != "0" else "1"), "$.uscc", []),  # wrong check character
        (rid("33010619900101123"), "$.uscc", []),                        # an ID is not an org code
    ],
)
def test_other_types_table(engine, text, key_path, expected):
    wanted = {"date_of_birth", "landline_cn", "org_credit_code"}
    assert [(t, v) for t, v in found(engine, text, key_path) if t in wanted] == expected
