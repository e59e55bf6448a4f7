"""vehicle_plate: GA 36-2018 — province abbreviation + issuing-office letter + 5 characters (at most two
letters), or 6 for new-energy vehicles (D/F + letter/digit + 4 digits, or 5 digits + D/F)."""

from __future__ import annotations

import pytest

from detectors.validators import validate_plate

from .helpers import found


@pytest.mark.parametrize(
    ("text", "key_path", "expected"),
    [
        ("浙A12345", "$.plateNo", [("vehicle_plate", "浙A12345")]),
        ("车牌号粤B8K2Q6，已登记", "text", [("vehicle_plate", "粤B8K2Q6")]),       # CJK-adjacent
        ("京AD12345", "$.cph", [("vehicle_plate", "京AD12345")]),                  # new energy, small car
        ("沪A12345F", "form.hphm", [("vehicle_plate", "沪A12345F")]),              # new energy, large car
        ("苏E1234挂", "text", []),                          # 4 characters + 挂: too short
        ("苏E12345挂", "text", [("vehicle_plate", "苏E12345挂")]),
        # near misses
        ("浙I12345", "text", []),                         # I is not an issuing-office letter
        ("浙AABC12", "text", []),                         # three letters in the serial
        ("京AX12345", "$.plateNo", []),                   # 6 characters without D/F
        ("京A123456", "text", []),                        # a longer number after the letter
        ("京东A12345", "text", []),                        # not a province abbreviation + letter
        ("浙A12345", "$.orderNo", []),
    ],
)
def test_vehicle_plate_table(engine, text, key_path, expected):
    assert [(t, v) for t, v in found(engine, text, key_path) if t == "vehicle_plate"] == expected


@pytest.mark.parametrize(("text", "valid"), [
    ("浙A12345", True),
    ("甲A12345", False),                                   # 甲 is no province abbreviation
    ("ABC", False),
], ids=["valid", "no-province", "no-plate-shape"])
def test_plate_validator(text: str, valid: bool) -> None:
    assert validate_plate(text, {}, False) is valid
