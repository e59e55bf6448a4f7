"""bank_card: 16-19 digits, brand prefix, Luhn (stdnum.luhn); free matches need a key, context or BIN;
never a valid resident ID (priority + validator)."""

from __future__ import annotations

import pytest
from stdnum import luhn

from .helpers import card, found, rid

CARD_ICBC = card("622202", 19)          # a known BIN
CARD_VISA = card("4763170", 16)         # Visa, no BIN in the list
RID = "11010519491231002X"
RID_DIGITS = next(r for r in (rid(f"33010619900101{i:03d}") for i in range(200))
                  if r.isdigit() and luhn.is_valid(r))   # an ID that also passes Luhn


def _wrong(number: str) -> str:
    return number[:-1] + str((int(number[-1]) + 1) % 10)


@pytest.mark.parametrize(
    ("text", "key_path", "expected"),
    [
        (CARD_VISA, "$.payment.cardNo", [("bank_card", CARD_VISA)]),
        (f"卡号{CARD_VISA}", "text", [("bank_card", CARD_VISA)]),         # CJK-adjacent + context
        (f"银行卡：{CARD_VISA[:4]} {CARD_VISA[4:8]} {CARD_VISA[8:12]} {CARD_VISA[12:]}", "text",
         [("bank_card", f"{CARD_VISA[:4]} {CARD_VISA[4:8]} {CARD_VISA[8:12]} {CARD_VISA[12:]}")]),
        (CARD_ICBC, "$.remark", [("bank_card", CARD_ICBC)]),                              # known BIN, no key
        (CARD_VISA, "form.yhkh", [("bank_card", CARD_VISA)]),
        # near misses
        (CARD_VISA, "$.remark", []),              # Luhn-valid but no key, no context, no known BIN
        (CARD_VISA, "$.orderNo", []),             # order numbers pass Luhn too
        ("1" + CARD_VISA[1:], "$.cardNo", []),   # no card brand starts with 1
        (f"卡号{CARD_VISA}1", "text", []),         # 17 digits, Luhn fails
    ],
)
def test_bank_card_table(engine, text, key_path, expected):
    assert [(t, v) for t, v in found(engine, text, key_path) if t == "bank_card"] == expected


@pytest.mark.parametrize("number", [CARD_VISA, CARD_ICBC])
def test_when_checksum_is_wrong_then_no_result(engine, number):
    assert not luhn.is_valid(_wrong(number))
    assert found(engine, f"卡号{_wrong(number)}", "$.cardNo") == []


def test_resident_id_under_card_key_is_a_resident_id(engine):
    assert [t for t, _ in found(engine, RID_DIGITS, "$.cardNo")] == ["resident_id_cn"]
    assert [t for t, _ in found(engine, f"卡号{RID}", "text")] == ["resident_id_cn"]


def test_faker_cards_with_context(engine, fake):
    for _ in range(20):
        value = fake.credit_card_number()
        assert found(engine, f"信用卡{value}", "text") == [("bank_card", value)]
