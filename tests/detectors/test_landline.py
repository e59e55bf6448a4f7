"""landline_cn: 0 + area code (010, 02x, 0xxx) + 7-8 digit local number (+ extension); 400/800 service numbers
are not PI; free text needs 座机/电话 nearby."""

from __future__ import annotations

import pytest

from detectors.validators import validate_landline

from .helpers import found


@pytest.mark.parametrize(
    ("text", "key_path", "expected"),
    [
        ("0571-88888888", "$.gddh", [("landline_cn", "0571-88888888")]),
        ("010-62345678-8001", "$.officeTel", [("landline_cn", "010-62345678-8001")]),
        ("(021)63456789", "form.zjdh", [("landline_cn", "(021)63456789")]),
        ("座机0755-26781234转总机", "text", [("landline_cn", "0755-26781234")]),    # CJK-adjacent
        ("联系电话：0571 8765 4321", "text", []),          # 4-4 grouping: not a landline
        ("13800138000", "$.tel", []),                      # a mobile, reported as mobile
        # near misses
        ("0571-88888888", "$.remark", []),                 # no key, no context
        ("400-820-8820", "$.tel", []),                     # service number
        ("800-810-8888", "$.gddh", []),
        ("0571-08888888", "$.gddh", []),                   # a local number never starts with 0
        ("20230101123456", "$.tel", []),                   # a timestamp under a tel key
        ("电话0571888888889999", "text", []),               # too long without separators
    ],
)
def test_landline_table(engine, text, key_path, expected):
    assert [(t, v) for t, v in found(engine, text, key_path) if t == "landline_cn"] == expected


@pytest.mark.parametrize(("text", "valid"), [
    ("01062345678", True),
    ("010623456781", True),                                # 12 digits: number and a one-digit extension
    ("0106234567812", False),                              # 13 without separators: ambiguous
    ("010-62345678-12", True),                             # with separators the extension is plain
    ("12345678", False),                                   # no area code
], ids=["plain", "twelve-digits", "thirteen-digits", "separated-extension", "no-area-code"])
def test_landline_validator(text: str, valid: bool) -> None:
    assert validate_landline(text, {}, False) is valid
