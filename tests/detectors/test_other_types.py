"""Types beyond the first six that already have patterns: date_of_birth, landline_cn, org_credit_code."""

from __future__ import annotations

import pytest
from stdnum.cn import uscc

from .helpers import found, rid


def _gb11714(org8: str) -> str:
    """The organisation code's check character (GB 11714), written out here as the standard states it."""
    check = 11 - sum(int(c, 36) * w for c, w in zip(org8, (3, 7, 9, 10, 5, 8, 4, 2), strict=True)) % 11
    return {10: "X", 11: "0"}.get(check, str(check))


def _uscc(first8: str, org8: str, org_check: str | None = None) -> str:
    first17 = first8 + org8 + (org_check if org_check is not None else _gb11714(org8))
    return first17 + uscc.calc_check_digit(first17)


USCC = _uscc("91330106", "MA2A0000")                   # structure and both check characters right
BAD_ORG = _uscc("91330106", "MA2A0000", "X" if _gb11714("MA2A0000") != "X" else "1")
BAD_PROVINCE = _uscc("91990106", "MA2A0000")
BAD_AUTHORITY = _uscc("B1330106", "MA2A0000")
# Every position of the organisation code non-zero, the last one too: each GB 11714 weight counts.
USCC_FULL_ORG = _uscc("91330106", "MA2BT3K7")


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
        (USCC, "$.remark", [("org_credit_code", USCC)]),                 # structure vouches for it
        (f"供应商 {USCC} 已审核", "text", [("org_credit_code", USCC)]),
        (USCC_FULL_ORG, "$.remark", [("org_credit_code", USCC_FULL_ORG)]),   # all eight weights count
        (BAD_ORG, "$.remark", []),                 # stdnum's check passes, GB 11714's inside does not
        (BAD_ORG, "$.tyshxydm", [("org_credit_code", BAD_ORG)]),          # under its key: stdnum decides
        (BAD_PROVINCE, "$.remark", []),
        (BAD_AUTHORITY, "$.remark", []),
        (USCC[:-1] + ("0" if USCC[-1] != "0" else "1"), "$.uscc", []),  # wrong check character
        (rid("33010619900101123"), "$.uscc", []),                        # an ID is not an org code
    ],
)
def test_other_types_table(engine, text, key_path, expected):
    wanted = {"date_of_birth", "landline_cn", "org_credit_code"}
    assert [(t, v) for t, v in found(engine, text, key_path) if t in wanted] == expected
