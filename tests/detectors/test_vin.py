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


def _hex_vin() -> str:
    """A hexadecimal 17-character id whose ninth character happens to be a right check digit."""
    return next(v for n in range(100) if (v := _vin(f"1A2B3C{n:02d}", "5E6F7890"))[8] != "X")


@pytest.mark.parametrize(("text", "keyed", "valid"), [
    (VIN, False, True),
    (VIN.lower(), True, True),                             # under a key, case does not matter
    (VIN.lower(), False, False),                           # in free text a lower-case token is no VIN
    (_vin("LSVAU2A3", "X2183294"), False, True),           # model year X (1999, 2029)
    (_vin("LSVAU2A3", "02183294"), False, False),          # 0, U and Z are no model years
    (_vin("LSVAU2A3", "U2183294"), False, False),
    (_vin("LSVAU2A3", "Z2183294"), False, False),
    (_vin("LSVAU2A3", "N21A3294"), False, True),           # only the last four characters must be digits
    (_vin("LSVAU2A3", "N2183A94"), False, False),
    (_vin("1234560L", "S0000000"), False, True),           # two letters are enough ...
    (_vin("1234567L", "10000000"), False, False),          # ... one is an order number
    (_hex_vin(), False, False),                            # hexadecimal, however many letters
], ids=["valid", "lower-keyed", "lower-free", "year-X", "year-0", "year-U", "year-Z", "letter-in-serial",
        "letter-in-last-four", "two-letters", "one-letter", "hexadecimal"])
def test_vin_validator(text: str, keyed: bool, valid: bool) -> None:
    assert validate_vin(text, {}, keyed) is valid
