"""vin: 17 characters without I, O, Q and the ISO 3779 / GB 16735-2019 check digit at position 9
(python-stdnum has no VIN module: detectors.validators.vin_check_digit)."""

from __future__ import annotations

import pytest

from detectors.validators import validate_vin, vin_check_digit

from .helpers import found


def _vin(first8: str, rest8: str) -> str:
    return first8 + vin_check_digit(first8 + "0" + rest8) + rest8


VIN = _vin("LSVAU2A3", "N2183294")
WRONG = VIN[:8] + ("0" if VIN[8] != "0" else "1") + VIN[9:]


def test_known_check_digit():
    # The worked example of the North American VIN standard (49 CFR 565): 1M8GDM9A_KP042788 -> X.
    assert vin_check_digit("1M8GDM9AXKP042788") == "X"


@pytest.mark.parametrize(
    ("text", "key_path", "expected"),
    [
        (VIN, "$.vin", [("vin", VIN)]),
        (f"车架号：{VIN}", "text", [("vin", VIN)]),
        ("1M8GDM9AXKP042788", "form.cjh", [("vin", "1M8GDM9AXKP042788")]),
        # near misses
        (WRONG, "$.vin", []),                              # test_when_checksum_is_wrong_then_no_result
        (VIN, "$.remark", []),                             # no key, no context
        (VIN.replace("A", "I", 1), "$.vin", []),           # I is not allowed
        ("1234567890123456X", "$.vin", []),                # digits: an order number
        ("0A1B2C3D4E5F60718", "$.vin", []),                # hexadecimal id
        (VIN.lower(), "text", []),                         # lower-case token in free text
    ],
)
def test_vin_table(engine, text, key_path, expected):
    assert [(t, v) for t, v in found(engine, text, key_path) if t == "vin"] == expected


def test_validator_never_raises_on_odd_input():
    for odd in ["", "x" * 17, "ＬＳＶ" * 6, "1M8GDM9AXKP04278"]:
        assert validate_vin(odd, {}, True) is False
