"""Validators of content types: health, genetic, biometric and location values (catalog `validator:` names
`health`, `genetic`, `face`, `biometric_template`, `position`, `track`).

Same contract as detectors/validators.py, which registers them: the matched text, the type's params and
whether the value sat under a key hint in; True lifts the score, False drops the match. Standards: ICD-10
code shapes; NMEA 0183 sentence checksums (XOR of the characters between `$` and `*`); China's bounding box
(lat 3.8-53.6, lon 73.5-135.1) for precise positions. Never raise, never log the value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# Shared with detectors/validators.py (which imports them: this module depends on nothing of its own).
_PLACEHOLDERS = frozenset({"", "null", "none", "nil", "undefined", "n/a", "na", "-", "--", "/", "0", "无",
                           "暂无", "未知", "不详", "空", "true", "false", "unknown", "default"})
_HEX = re.compile(r"^[0-9A-F]+$")
_ICD10 = re.compile(r"^[A-Z]\d{2}(?:\.[0-9A-Z]{1,4})?$")


def _placeholder(value: str, params: Mapping[str, Any]) -> bool:
    folded = value.strip().casefold()
    return (folded in _PLACEHOLDERS or folded in params.get("reject_words", ())
            or set(folded) <= set("*•·x#-_ .0"))


def validate_health(text: str, params: Mapping[str, Any], keyed: bool = False) -> bool:
    """ICD-10 codes (A00-Z99 with an optional subdivision), HL7 v2 / FHIR markers, labelled diagnoses;
    free-text values under a medical key."""
    value = text.strip()
    if _ICD10.match(value.upper()):
        return value[0].isupper()     # "a12" in a product code is not a diagnosis code
    return not _placeholder(value, params)


def validate_genetic(text: str, params: Mapping[str, Any], keyed: bool = False) -> bool:
    """A nucleotide run looks like DNA: at least three of A, C, G, T each make up 10 % of it and N (unknown)
    less than half. Runs of one letter (AAAA… in base64 of zero bytes) are not sequences. rsIDs, genotypes
    and file headers are specific enough in their pattern."""
    value = text.strip().upper()
    if len(value) < 50 or not _BASES.fullmatch(value):
        return True
    counts = [value.count(b) for b in "ACGT"]
    return sum(c >= 0.1 * len(value) for c in counts) >= 3 and value.count("N") < len(value) / 2


_BASES = re.compile(r"[ACGTN]+")
_IMAGE_HEAD = re.compile(r"^(?:data:image/(?:jpeg|jpg|png);base64,)?(/9j/|iVBOR)")
_FLOAT = re.compile(r"^-?\d+(?:\.\d+)?(?:[eE]-?\d+)?$")


def validate_face(text: str, params: Mapping[str, Any], keyed: bool = False) -> bool:
    """A base64 JPEG or PNG, or a face-feature vector of 128, 256 or 512 numbers, under a face key."""
    value = text.strip()
    if not keyed:
        return False
    if _IMAGE_HEAD.match(value):
        return len(value) >= 100
    parts = [p for p in re.split(r"[,\s\[\]]+", value) if p]
    return len(parts) in (128, 256, 512) and all(_FLOAT.match(p) for p in parts)


def validate_biometric_template(text: str, params: Mapping[str, Any], keyed: bool = False) -> bool:
    """A fingerprint, voiceprint or iris template is a long encoded blob (ISO/IEC 19794 records are
    hundreds of bytes). A browser 'fingerprint' is a short hash: pure hex up to 64 characters is not."""
    value = "".join(text.split())
    return keyed and len(value) >= int(params.get("min_length", 128)) and not (
        len(value) <= 64 and _HEX.match(value.upper()))


# -- location ------------------------------------------------------------------------------------------

_PAIR = re.compile(r"(-?\d{1,3}\.\d+)\s*[,，/ ]\s*(-?\d{1,3}\.\d+)")


def china_position(a: str, b: str, min_decimals: int = 4) -> tuple[float, float] | None:
    """(lat, lon) when the two numbers are a position with at least `min_decimals` decimals (about 11 m)
    inside China's bounding box (lat 3.8-53.6, lon 73.5-135.1). The ranges do not overlap, so "lat,lon"
    and GeoJSON's "lon,lat" are both read unambiguously."""
    if min(len(a.partition(".")[2]), len(b.partition(".")[2])) < min_decimals:
        return None
    try:
        x, y = float(a), float(b)
    except ValueError:
        return None
    for lat, lon in ((x, y), (y, x)):
        if 3.8 <= lat <= 53.6 and 73.5 <= lon <= 135.1:
            return lat, lon
    return None


def validate_position(text: str, params: Mapping[str, Any], keyed: bool = False) -> bool:
    m = _PAIR.fullmatch(text.strip())
    return m is not None and china_position(m.group(1), m.group(2), int(params.get("min_decimals", 4))) \
        is not None


def validate_track(text: str, params: Mapping[str, Any], keyed: bool = False) -> bool:
    """A track: NMEA 0183 sentences with a correct checksum, or two or more precise positions in China."""
    value = text.strip()
    if value.startswith("$"):
        body, star, check = value[1:].partition("*")
        if not star or len(check) < 2:
            return False
        xor = 0
        for ch in body:
            xor ^= ord(ch)
        return f"{xor:02X}" == check[:2].upper()
    pairs = _PAIR.findall(value)
    decimals = int(params.get("min_decimals", 4))
    return len(pairs) >= 2 and all(china_position(a, b, decimals) is not None for a, b in pairs)


# -- derived: birth dates --------------------------------------------------------------------------------
