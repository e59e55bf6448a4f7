"""resident_id_cn: 18 characters, MOD 11-2 check digit, birth date and province prefix (GB 11643-1999)."""

from __future__ import annotations

import pytest

from detectors.recognizers import validate_ric

from .helpers import found, rid

VALID = "11010519491231002X"          # the GB 11643-1999 example
VALID_ZJ = rid("33010619900101123")    # Hangzhou prefix


def _wrong_check(value: str) -> str:
    bad = "0" if value[-1] != "0" else "1"
    return value[:-1] + bad


@pytest.mark.parametrize(
    ("text", "key_path", "expected"),
    [
        (VALID, "$.idNo", [("resident_id_cn", VALID)]),
        (VALID.lower(), "form.sfzh", [("resident_id_cn", VALID.lower())]),
        (f"身份证号{VALID_ZJ}，请核对", "text", [("resident_id_cn", VALID_ZJ)]),     # CJK-adjacent digits
        (f"证件号码：{VALID}", "text", [("resident_id_cn", VALID)]),
        (f"id={VALID_ZJ}&x=1", "text", [("resident_id_cn", VALID_ZJ)]),
        (VALID_ZJ, "$.remark", [("resident_id_cn", VALID_ZJ)]),                      # free, no key needed
        (VALID_ZJ, "$.data.idCard.number", [("resident_id_cn", VALID_ZJ)]),          # parent key hint
        # near misses
        ("1" + VALID_ZJ, "text", []),                                    # 19 digits: part of a longer number
        (VALID_ZJ[:-1], "text", []),                                     # 17 digits
        (rid("99010619900101123"), "text", []),                         # no province 99
        (rid("33010619901301123"), "text", []),                         # month 13
        (rid("33010620990101123"), "text", []),                         # born in the future
        (VALID_ZJ, "$.orderNo", []),                                     # a business number, not an ID
    ],
)
def test_resident_id_table(engine, text, key_path, expected):
    assert [(t, v) for t, v in found(engine, text, key_path) if t == "resident_id_cn"] == expected


@pytest.mark.parametrize("value", [VALID, VALID_ZJ])
@pytest.mark.parametrize("key_path", ["$.idNo", "text"])
def test_when_checksum_is_wrong_then_no_result(engine, value, key_path):
    bad = _wrong_check(value)
    assert not validate_ric(bad, {})
    assert all(t != "resident_id_cn" for t, _ in found(engine, f"身份证{bad}", key_path))


def test_faker_ids_are_found_and_beat_bank_card(engine, fake):
    for _ in range(30):
        value = fake.ssn()
        assert found(engine, f"卡号{value}", "text") == [("resident_id_cn", value)]


def test_validator_never_raises_on_odd_input():
    odd_inputs = ["", "X" * 18, "33010619900230123X", "３３０１０６１９９００１０１１２３５", "abc"]
    for odd in odd_inputs:
        assert validate_ric(odd, {}) is False
