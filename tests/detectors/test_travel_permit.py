"""travel_permit: C\\d{8}, C[A-Z]\\d{7}, [HM]\\d{8}(\\d{2})?; residence permits for Hong Kong, Macao and
Taiwan residents (810000/820000/830000 + GB 11643 date + MOD 11-2), which beat resident_id_cn."""

from __future__ import annotations

import pytest

from detectors.validators import validate_travel_permit

from .helpers import found, rid

HK_PERMIT = rid("81000019900101123")
TW_PERMIT = rid("83000020000229456")
BAD_CHECK = HK_PERMIT[:-1] + ("0" if HK_PERMIT[-1] != "0" else "1")


@pytest.mark.parametrize(
    ("text", "key_path", "expected"),
    [
        ("C12345678", "$.txzh", [("travel_permit", "C12345678")]),
        ("CA1234567", "$.permitNo", [("travel_permit", "CA1234567")]),
        ("回乡证H1234567801", "text", [("travel_permit", "H1234567801")]),
        ("台胞证号码：M12345678", "text", [("travel_permit", "M12345678")]),
        (HK_PERMIT, "$.remark", [("travel_permit", HK_PERMIT)]),          # 810000 prefix: no context needed
        (f"居住证{TW_PERMIT}", "text", [("travel_permit", TW_PERMIT)]),
        (HK_PERMIT, "$.idNo", [("travel_permit", HK_PERMIT)]),            # one type: not a resident ID
        # near misses
        ("C12345678", "$.remark", []),                    # shape alone, no key or context
        ("H123456789", "$.txzh", []),                     # 9 digits after H
        (BAD_CHECK, "$.remark", []),                      # test_when_checksum_is_wrong_then_no_result
        (rid("84000019900101123"), "$.remark", []),       # 840000 is not a residence-permit prefix
    ],
)
def test_travel_permit_table(engine, text, key_path, expected):
    assert [(t, v) for t, v in found(engine, text, key_path)
            if t in ("travel_permit", "resident_id_cn")] == expected


def _permit_with_check_x() -> str:
    return next(v for n in range(1000) if (v := rid(f"81000019900101{n:03d}")).endswith("X"))


@pytest.mark.parametrize(("text", "valid"), [
    (HK_PERMIT, True),
    (f"{HK_PERMIT[:6]} {HK_PERMIT[6:14]} {HK_PERMIT[14:]}", True),   # written in groups
    (_permit_with_check_x(), True),                                  # check digit X
    (rid("81000019901020123"), True),                                # born 20 October (two-digit fields)
    (rid("81000019000101123"), True),                                # born 1 January 1900
    (rid("81000019901301123"), False),                               # month 13
    (rid("81000018991231123"), False),
    (BAD_CHECK, False),
    (rid("11010519900101123"), False),                               # a resident ID is no permit
    ("C12345678", True),                                             # travel permit to HK and Macao
    ("H1234567801", True),                                           # home-return permit
], ids=["hk", "grouped", "check-x", "october-20", "born-1900", "month-13", "born-1899", "bad-check",
        "resident-id", "c-permit", "h-permit"])
def test_travel_permit_validator(text: str, valid: bool) -> None:
    assert validate_travel_permit(text, {}, False) is valid
