"""Keyed hashing of PI values (DESIGN §3 `pi_values.value_key`, §5 counting people).

A value is normalized per field type (so `+86 138-0013-8000` and `13800138000` are one person's mobile),
then hashed with HMAC-SHA256 under the deployment key; the first 8 bytes, read big-endian as a signed
int64, are the `value_key`. Without the key nobody can test a guessed value against the collector's data.
"""

from __future__ import annotations

import hmac
import re
import unicodedata
from collections.abc import Callable

_MOBILE_SEPARATORS = re.compile(r"[\s\-()（）]")
_NON_DIGITS = re.compile(r"\D")


def normalize_plain(value: str) -> str:
    return value.strip()


def normalize_mobile(value: str) -> str:
    digits = _MOBILE_SEPARATORS.sub("", value.strip())
    for prefix in ("+86", "0086", "86"):
        if digits.startswith(prefix) and len(digits) - len(prefix) == 11:
            return digits[len(prefix):]
    return digits


def normalize_resident_id(value: str) -> str:
    return re.sub(r"\s", "", value).upper()


def normalize_email(value: str) -> str:
    return value.strip().lower()


def normalize_digits(value: str) -> str:
    return _NON_DIGITS.sub("", value)


def normalize_text(value: str) -> str:
    # Names and addresses: full-width forms folded (NFKC), whitespace runs folded, case folded for Latin.
    return " ".join(unicodedata.normalize("NFKC", value).split()).casefold()


def normalize_upper(value: str) -> str:
    return re.sub(r"\s", "", value).upper()


NORMALIZERS: dict[str, Callable[[str], str]] = {
    "plain": normalize_plain,
    "mobile": normalize_mobile,
    "resident_id": normalize_resident_id,
    "email": normalize_email,
    "digits": normalize_digits,
    "text": normalize_text,
    "upper": normalize_upper,
}


def normalize(normalizer: str, value: str) -> str:
    return NORMALIZERS.get(normalizer, normalize_plain)(value)


def value_key(key: bytes, field_type: str, normalized: str) -> int:
    """Signed int64 of the first 8 bytes (big-endian) of HMAC-SHA256(key, field_type + normalized)."""
    # hmac.digest is the one-shot C path: a third of the cost of building an HMAC object per value.
    digest = hmac.digest(key, (field_type + normalized).encode("utf-8"), "sha256")
    return int.from_bytes(digest[:8], "big", signed=True)
