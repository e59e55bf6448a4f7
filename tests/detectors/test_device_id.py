"""device_id: IMEI (15 digits, Luhn via stdnum.imei), IMSI (ITU-T E.212: 460 + mainland MNC), ICCID (8986…),
MAC, IDFA/OAID UUIDs; free text needs IMEI/设备号 nearby."""

from __future__ import annotations

import pytest

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
