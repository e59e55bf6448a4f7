"""device_id: IMEI (15 digits, Luhn via stdnum.imei), IMSI (ITU-T E.212: 460 + mainland MNC), ICCID (8986…),
MAC, IDFA/OAID UUIDs; free text needs IMEI/设备号 nearby."""

from __future__ import annotations

import pytest

from detectors.validators import validate_device_id, validate_imei

from .helpers import found

IMEI = "490154203237518"
IMEI_BAD = "490154203237519"
IDFA = "6D92078A-8246-4BA4-AE5B-76104861E7DC"


@pytest.mark.parametrize(
    ("text", "key_path", "expected"),
    [
        (IMEI, "$.imei", [("device_id", IMEI)]),
        (f"手机串号IMEI：{IMEI}", "text", [("device_id", IMEI)]),
        ("460001234567890", "$.imsi", [("device_id", "460001234567890")]),
        ("89860012345678901234", "$.iccid", [("device_id", "89860012345678901234")]),
        ("3C:22:FB:12:34:56", "$.macAddr", [("device_id", "3C:22:FB:12:34:56")]),
        (IDFA, "$.idfa", [("device_id", IDFA)]),
        ("a1b2c3d4e5f60718", "$.androidId", [("device_id", "a1b2c3d4e5f60718")]),
        # near misses
        (IMEI_BAD, "$.imei", []),                          # test_when_checksum_is_wrong_then_no_result
        (IMEI, "$.remark", []),                            # 15 digits: an order number as often
        ("461001234567890", "$.imsi", []),                 # MCC 461 is not China, and Luhn fails
        ("00:00:00:00:00:00", "$.mac", []),
        ("02:00:00:00:00:00", "$.mac", []),                # Android's fixed placeholder MAC
        ("00000000-0000-0000-0000-000000000000", "$.idfa", []),    # limited ad tracking
        (IDFA, "$.requestId", []),                         # a request id, not a device
        ("12:34:56", "$.mac", []),
    ],
)
def test_device_id_table(engine, text, key_path, expected):
    assert [(t, v) for t, v in found(engine, text, key_path) if t == "device_id"] == expected


@pytest.mark.parametrize(("text", "keyed", "valid"), [
    (IMEI, False, True),
    (IMEI_BAD, False, False),
    ("460001234567891", False, True),                      # IMSI: MCC 460, MNC 00; no Luhn digit to pass
    ("460111234567891", False, True),                      # MNC 11
    ("460991234567891", False, False),                     # MNC 99 is no mainland operator (and not Luhn)
    ("FF:FF:FF:FF:FF:FF", False, False),                   # broadcast
    ("ff-ff-ff-ff-ff-ff", False, False),
    ("3c-22-fb-12-34-56", False, True),
    ("a1b2c3d4e5f60718", True, True),                      # Android id: hexadecimal under a device key
    ("a1b2c3d4e5f60718", False, False),                    # ... and nowhere else
    ("0000000000000001", True, False),                     # two distinct characters: a placeholder
    ("0000000000000012", True, True),
], ids=["imei", "imei-bad", "imsi-00", "imsi-11", "imsi-99", "mac-broadcast", "mac-broadcast-lower",
        "mac-dashes", "hex-keyed", "hex-free", "hex-two-chars", "hex-three-chars"])
def test_device_id_validator(text: str, keyed: bool, valid: bool) -> None:
    assert validate_device_id(text, {}, keyed) is valid


@pytest.mark.parametrize(("text", "valid"), [(IMEI, True), (IMEI_BAD, False), ("4901542032375", False),
                                              ("not an imei", False)],
                         ids=["luhn", "bad-luhn", "13-digits", "letters"])
def test_imei_validator(text: str, valid: bool) -> None:
    # `validator: imei` for a catalog that wants IMEIs alone (stdnum.imei: 15 digits with Luhn).
    assert validate_imei(text, {}, False) is valid
