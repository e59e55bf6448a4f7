"""Validators: the check behind each catalog pattern (`validator:` in configs/field_types.yaml).

A validator gets the matched text, the type's `params` and whether the value sat under a key hint of the
type; True lifts the score to 1.0, False drops the match (presidio's `validate_result` contract). Where a
standard defines a check digit it is used, from python-stdnum where stdnum has it:
- GB 11643-1999 resident ID and the residence permits for Hong Kong, Macao and Taiwan residents (MOD 11-2,
  `cn.ric.calc_check_digit` — never `cn.ric.is_valid`, see reference/engineering-notes.md);
- GB 32100-2015 unified social credit code (`cn.uscc.calc_check_digit`); ISO/IEC 7812 Luhn (cards, IMEI);
- ISO 3779 / GB 16735-2019 VIN check digit (stdnum has no VIN module: implemented here);
- ITU-T E.212 IMSI (MCC 460 and the mainland MNCs); GA 36-2018 licence plates.
Health, genetic, biometric and location values are checked in detectors/validators_content.py and
registered here. Validators never raise and never log the value they were given.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

from stdnum import imei, luhn
from stdnum.cn import ric, uscc

from detectors.validators_content import (  # noqa: F401  (china_position: re-exported for derived.py)
    _HEX,
    _placeholder,
    china_position,
    validate_biometric_template,
    validate_face,
    validate_genetic,
    validate_health,
    validate_position,
    validate_track,
)

_DEFAULT_PROVINCES = frozenset(str(c) for c in (11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37,
                                                 41, 42, 43, 44, 45, 46, 50, 51, 52, 53, 54, 61, 62, 63, 64,
                                                 65, 71, 81, 82))
_SEPARATORS = re.compile(r"[\s\-]")
_HAN = re.compile(r"^[\u4e00-\u9fa5]+$")
_HAN_CHAR = re.compile(r"[\u4e00-\u9fa5]")
_LATIN_NAME = re.compile(r"^[A-Za-z][A-Za-z'.\-]*(?:[ ,]+[A-Za-z][A-Za-z'.\-]*){1,3}$")
_EMAIL_TLD = re.compile(r"^[A-Za-z]{2,24}$")
_NUMBERS = re.compile(r"\d+")
_RESIDENCE_PERMIT_PREFIXES = ("810000", "820000", "830000")

Validator = Callable[[str, Mapping[str, Any], bool], bool]


_today_cache: list[Any] = [None, 0.0]


def _today() -> dt.date:
    """Today's date, asked of the clock at most once a minute: a birth-date check runs per resident ID."""
    now = time.monotonic()
    if _today_cache[0] is None or now >= _today_cache[1]:
        _today_cache[0], _today_cache[1] = dt.date.today(), now + 60.0
    return _today_cache[0]


def _plausible_date(year: int, month: int, day: int, min_year: int) -> bool:
    try:
        born = dt.date(year, month, day)
    except ValueError:
        return False
    return min_year <= year and born <= _today()


def validate_ric(text: str, params: Mapping[str, Any], keyed: bool = False) -> bool:
    """18-char resident ID: province prefix, birth date, MOD 11-2 check digit (GB 11643-1999)."""
    value = _SEPARATORS.sub("", text).upper()
    if len(value) != 18 or not value[:17].isdigit():
        return False
    provinces = params.get("province_codes") or _DEFAULT_PROVINCES
    if value[:2] not in provinces:
        return False
    if value.startswith(_RESIDENCE_PERMIT_PREFIXES):
        return False     # a residence permit for HK/Macao/Taiwan residents: travel_permit, one span one type
    if not _plausible_date(int(value[6:10]), int(value[10:12]), int(value[12:14]),
                           int(params.get("min_birth_year", 1900))):
        return False
    try:
        # calc_check_digit wants the whole 18 characters: it drops the last one itself.
        return ric.calc_check_digit(value) == value[17]
    except Exception:  # stdnum raising on odd input must not lose the rest of the body
        return False


def prepare_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Lists in a catalog entry's params become frozensets of text once, not per validated value."""
    out: dict[str, Any] = {}
    for name, value in params.items():
        if isinstance(value, list | tuple):
            items = (str(v) for v in value)
            if name.endswith(("_prefixes", "_suffixes")):
                out[name] = tuple(items)      # for str.startswith / endswith, which want a tuple
            else:
                out[name] = frozenset(v.casefold() for v in items) if name == "reject_words" \
                    else frozenset(items)
        else:
            out[name] = value
    return out


def validate_luhn(text: str, params: Mapping[str, Any], keyed: bool = False) -> bool:
    """Bank card: 16-19 digits, a card-brand prefix, Luhn — and not a valid resident ID."""
    digits = _SEPARATORS.sub("", text)
    if not (16 <= len(digits) <= 19 and digits.isdigit()):
        return False
    prefixes = params.get("brand_prefixes") or ()
    if prefixes and not digits.startswith(prefixes):
        return False
    if len(digits) == 18 and validate_ric(digits, {}):
        return False
    return luhn.is_valid(digits)


def validate_email(text: str, params: Mapping[str, Any], keyed: bool = False) -> bool:
    # Offline: no public-suffix lookup (presidio's EmailRecognizer uses tldextract, which may fetch).
    local, sep, domain = text.strip().rpartition("@")
    if not sep or not local or len(local) > 64 or len(domain) > 253 or ".." in text:
        return False
    labels = domain.split(".")
    return len(labels) >= 2 and all(labels) and bool(_EMAIL_TLD.match(labels[-1]))


def validate_person_name(text: str, params: Mapping[str, Any], keyed: bool = False) -> bool:
    """Han names by surname dictionary (compound surnames first); Latin names only under a name key."""
    name = " ".join(text.split())
    rejected = params.get("reject_words", ())
    if not name or name.casefold() in rejected or any(w in rejected for w in name.casefold().split()):
        return False
    if name.endswith(params.get("reject_suffixes", ())):
        return False
    for sep in "·•・":
        if sep in name:
            parts = name.split(sep)
            return keyed and all(_HAN.match(p) for p in parts) and 2 <= len(name) <= 20
    if _HAN.match(name):
        if name[:2] in params.get("compound_surnames", ()):
            return 3 <= len(name) <= 4
        return name[0] in str(params.get("surnames", "")) and 2 <= len(name) <= 3
    return keyed and bool(_LATIN_NAME.match(name)) and len(name) <= 60


def validate_postal_address(text: str, params: Mapping[str, Any], keyed: bool = False) -> bool:
    """Enough administrative-division structure (省 市 区 县 镇 街道 路 号 栋 单元 室 …)."""
    value = "".join(text.split())
    if len(_HAN_CHAR.findall(value)) < 4:
        return False
    words = params.get("structure_words", ())
    found = sum(1 for w in words if w in value)
    need = int(params.get("min_structure_keyed" if keyed else "min_structure_free", 2 if keyed else 3))
    return found >= need


# GB 32100-2015 registration authorities (1 机构编制 … 9 市场监管, A 军队, N 农业农村, Y 其他) and the
# authority-specific organisation class codes that may follow them.
_USCC_AUTHORITIES = frozenset("123456789ANY")
_USCC_CLASSES = frozenset("12389")
_GB11714_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)


def validate_uscc(text: str, params: Mapping[str, Any], keyed: bool = False) -> bool:
    """GB 32100 check character (python-stdnum). A free match, with no key or context to vouch for it,
    must also have the code's structure: a registration authority and class, a province in the
    administrative division, and the embedded GB 11714 organisation code's own check character — together
    about 1 in 40,000 random 18-character strings instead of stdnum's 1 in 31."""
    value = text.strip().upper()
    if len(value) != 18:
        return False
    try:
        if uscc.calc_check_digit(value[:17]) != value[17]:
            return False
    except Exception:  # characters outside the GB 32100 alphabet
        return False
    return keyed or _uscc_structure(value, params)


def _uscc_structure(value: str, params: Mapping[str, Any]) -> bool:
    if value[0] not in _USCC_AUTHORITIES or value[1] not in _USCC_CLASSES:
        return False
    if not value[2:8].isdigit() or value[2:4] not in (params.get("province_codes") or _DEFAULT_PROVINCES):
        return False
    org = value[8:17]
    try:
        total = sum(int(c, 36) * w for c, w in zip(org[:8], _GB11714_WEIGHTS, strict=True))
    except ValueError:
        return False
    check = 11 - total % 11
    return org[8] == {10: "X", 11: "0"}.get(check, str(check))


def validate_date(text: str, params: Mapping[str, Any], keyed: bool = False) -> bool:
    parts = _NUMBERS.findall(text)
    if len(parts) == 1 and len(parts[0]) == 8:
        parts = [parts[0][:4], parts[0][4:6], parts[0][6:]]
    if len(parts) != 3:
        return False
    return _plausible_date(int(parts[0]), int(parts[1]), int(parts[2]), 1900)


def validate_imei(text: str, params: Mapping[str, Any], keyed: bool = False) -> bool:
    try:
        return imei.is_valid(text)
    except Exception:
        return False


# -- identity documents ------------------------------------------------------------------------------

_PRC_PASSPORT = re.compile(r"^(?:E\d{8}|E[A-HJ-NP-Z]\d{7}|[GDSP]\d{8})$")
_FOREIGN_PASSPORT = re.compile(r"^[A-Z0-9]{6,9}$")
_PERMIT = re.compile(r"^(?:C\d{8}|C[A-Z]\d{7}|[HM]\d{8}(?:\d{2})?)$")


def validate_passport(text: str, params: Mapping[str, Any], keyed: bool = False) -> bool:
    """PRC passports anywhere (with context); other countries' shapes only under a passport key."""
    value = _SEPARATORS.sub("", text).upper()
    if _PRC_PASSPORT.match(value):
        return True
    # A foreign number is letters and digits; it has a digit and is not one repeated character.
    return (keyed and bool(_FOREIGN_PASSPORT.match(value)) and any(c.isdigit() for c in value)
            and len(set(value)) > 2)


def validate_travel_permit(text: str, params: Mapping[str, Any], keyed: bool = False) -> bool:
    """Travel permits (C…, H…/M… home-return permits) by shape; the 18-digit residence permits for Hong
    Kong, Macao and Taiwan residents (area code 810000/820000/830000) by GB 11643 date and MOD 11-2."""
    value = _SEPARATORS.sub("", text).upper()
    if len(value) == 18:
        if not value.startswith(_RESIDENCE_PERMIT_PREFIXES) or not value[:17].isdigit():
            return False
        if not _plausible_date(int(value[6:10]), int(value[10:12]), int(value[12:14]), 1900):
            return False
        try:
            return ric.calc_check_digit(value) == value[17]   # whole 18 chars: stdnum drops the last
        except Exception:
            return False
    return bool(_PERMIT.match(value))


# -- phones, accounts, secrets -------------------------------------------------------------------------

_LANDLINE = re.compile(r"^(010|02\d|0[3-9]\d{2})([2-9]\d{6,7})(\d{0,6})$")


def validate_landline(text: str, params: Mapping[str, Any], keyed: bool = False) -> bool:
    """A mainland area code (010, 02x, 0xxx) and a 7-8 digit local number not starting with 0 or 1;
    400/800 service numbers carry no area code and never get here."""
    digits = re.sub(r"[^\d]", "", text)
    m = _LANDLINE.match(digits)
    if m is None:
        return False
    # Without separators the split between local number and extension is ambiguous: cap the total.
    return len(digits) <= 12 or bool(re.search(r"[-\s)]", text))


_ALIPAY = re.compile(r"^2088\d{12}$")
_OPENID = re.compile(r"^o[\w-]{27}$")


def validate_account(text: str, params: Mapping[str, Any], keyed: bool = False) -> bool:
    """Alipay user ids (2088 + 12 digits), WeChat openids (o + 27) under keys, bank and securities
    account numbers of 8-30 digits under keys."""
    value = _SEPARATORS.sub("", text)
    if _ALIPAY.match(value):
        return True
    if not keyed:
        return False
    if _OPENID.match(value):
        return True
    return value.isdigit() and 8 <= len(value) <= 30 and len(set(value)) > 2




def validate_secret(text: str, params: Mapping[str, Any], keyed: bool = False) -> bool:
    """A password, PIN, CVV or code under its key: at least 3 characters and not already masked."""
    value = text.strip()
    return keyed and len(value) >= int(params.get("min_length", 3)) and not _placeholder(value, params)


def validate_keyed_text(text: str, params: Mapping[str, Any], keyed: bool = False) -> bool:
    """Any meaningful value under a key hint of the type (religion, criminal record, contacts…):
    placeholders and booleans are not PI; `reject_numeric` drops prices and codes (jg is also 价格)."""
    value = text.strip()
    if not keyed or _placeholder(value, params):
        return False
    if params.get("reject_numeric") and re.fullmatch(r"[-+]?[\d.,\s%]+", value):
        return False
    return len(value) >= int(params.get("min_length", 1))


_MOBILE_SHAPE = re.compile(r"^(?:\+?86)?1[3-9]\d{9}$")


def validate_online_account(text: str, params: Mapping[str, Any], keyed: bool = False) -> bool:
    """A uid, QQ number or WeChat id under its key. A login that is a mobile number, an email or an ID
    number is reported as that (an identifier) by the other recognizers, not as an account."""
    value = text.strip()
    if not validate_keyed_text(value, params, keyed):
        return False
    compact = _SEPARATORS.sub("", value)
    if re.fullmatch(r"[-+]?\d+\.\d+", value):      # a balance or a price under accountBalance
        return False
    return not (_MOBILE_SHAPE.match(compact) or "@" in value or validate_ric(compact, {}))


def validate_ip(text: str, params: Mapping[str, Any], keyed: bool = False) -> bool:
    """A user's address: not unspecified, loopback, multicast or link-local (those name no one)."""
    try:
        addr = ipaddress.ip_address(text.strip())
    except ValueError:
        return False
    return not (addr.is_unspecified or addr.is_loopback or addr.is_multicast or addr.is_link_local
                or addr.is_reserved)


# -- vehicles ------------------------------------------------------------------------------------------

# ISO 3779 transliteration: A-H 1-8, J-N 1-5, P 7, R 9, S-Z 2-9 (I, O and Q are not used).
_VIN_VALUES = {**{str(d): d for d in range(10)}, **dict(zip("ABCDEFGH", range(1, 9), strict=True)),
               **dict(zip("JKLMN", range(1, 6), strict=True)), "P": 7, "R": 9,
               **dict(zip("STUVWXYZ", range(2, 10), strict=True))}
_VIN_WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)
_VIN = re.compile(r"^[A-HJ-NPR-Z0-9]{17}$")


def vin_check_digit(vin: str) -> str:
    """ISO 3779 / GB 16735-2019: transliterate letters, weight positions 8..2,10,0,9..2, sum MOD 11,
    10 is written X. Position 9 (index 8) is the check digit itself (weight 0)."""
    total = sum(_VIN_VALUES[c] * w for c, w in zip(vin, _VIN_WEIGHTS, strict=True))
    rem = total % 11
    return "X" if rem == 10 else str(rem)


def validate_vin(text: str, params: Mapping[str, Any], keyed: bool = False) -> bool:
    """17 characters without I, O, Q; check digit at position 9. GB 16735 makes the check digit mandatory
    in China and the last four characters digits; random hex ids and 17-digit order numbers also pass
    1 in 11 check digits, so a VIN needs letters and must not be hexadecimal."""
    value = text.strip()
    if not keyed and value != value.upper():      # VINs are printed in capitals; tokens are not
        return False
    value = value.upper()
    if not _VIN.match(value) or not value[-4:].isdigit():
        return False
    if value[9] in "0UZ" or sum(c.isalpha() for c in value) < 2 or _HEX.match(value):
        return False
    return vin_check_digit(value) == value[8]


_PLATE = re.compile(r"^([\u4e00-\u9fa5])([A-HJ-NP-Z])[·\s]?([A-HJ-NP-Z0-9]{5,6})([挂学警港澳领使])?$")
_PLATE_PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"


def validate_plate(text: str, params: Mapping[str, Any], keyed: bool = False) -> bool:
    """GA 36-2018: province abbreviation, issuing-office letter, then 5 characters (at most two letters)
    or, for new-energy vehicles, 6: D/F + letter or digit + 4 digits (small) or 5 digits + D/F (large)."""
    m = _PLATE.match(text.strip().upper())
    if m is None or m.group(1) not in _PLATE_PROVINCES:
        return False
    serial = m.group(3)
    if len(serial) == 6:
        return m.group(4) is None and bool(re.match(r"^(?:[DF][A-HJ-NP-Z0-9]\d{4}|\d{5}[DF])$", serial))
    return sum(c.isalpha() for c in serial) <= 2


# -- devices -------------------------------------------------------------------------------------------

# ITU-T E.212: MCC 460 and the MNCs assigned to mainland operators.
_CN_MNC = frozenset({"00", "01", "02", "03", "04", "05", "06", "07", "08", "09", "11", "15", "20"})
_MAC = re.compile(r"^[0-9A-F]{2}([:-])[0-9A-F]{2}(?:\1[0-9A-F]{2}){4}$")
_UUID = re.compile(r"^[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}$")
_ICCID = re.compile(r"^8986[0-9A-F]{15,16}$")
_HEX_ID = re.compile(r"^[0-9A-F]{14,64}$")


def validate_device_id(text: str, params: Mapping[str, Any], keyed: bool = False) -> bool:
    """IMEI (15 digits, Luhn), IMSI (460 + mainland MNC), ICCID (8986…), MAC (not all-zero, broadcast or
    Android's fixed 02:00:00:00:00:00), IDFA/OAID UUIDs (not the all-zero id of limited ad tracking);
    under a device key also MEID / Android id / OAID hex strings."""
    value = text.strip().upper()
    if value.isdigit() and len(value) == 15:
        if value.startswith("460") and value[3:5] in _CN_MNC:
            return True
        try:
            return imei.is_valid(value)
        except Exception:
            return False
    if _ICCID.match(value):
        return True
    if _MAC.match(value):
        return re.sub(r"[:-]", "", value) not in ("000000000000", "FFFFFFFFFFFF", "020000000000")
    if _UUID.match(value):
        return len(set(value.replace("-", ""))) > 1
    return keyed and bool(_HEX_ID.match(value)) and len(set(value)) > 2


def birth_date(field_type: str, text: str) -> dt.date | None:
    """The birth date a resident ID (GB 11643: characters 7-14) or a date-of-birth value carries."""
    try:
        if field_type == "resident_id_cn":
            value = _SEPARATORS.sub("", text)
            return dt.date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
        if field_type == "date_of_birth":
            parts = _NUMBERS.findall(text)
            if len(parts) == 1 and len(parts[0]) == 8:
                parts = [parts[0][:4], parts[0][4:6], parts[0][6:]]
            if len(parts) == 3:
                return dt.date(int(parts[0]), int(parts[1]), int(parts[2]))
    except ValueError:
        return None
    return None


def age_at(born: dt.date, at: dt.date) -> int:
    """Completed years (a birthday on 29 February counts from 1 March in other years)."""
    return at.year - born.year - ((at.month, at.day) < (born.month, born.day))


VALIDATORS: dict[str, Validator] = {
    "ric": validate_ric,
    "luhn": validate_luhn,
    "email": validate_email,
    "person_name": validate_person_name,
    "postal_address": validate_postal_address,
    "uscc": validate_uscc,
    "date": validate_date,
    "imei": validate_imei,
    "passport": validate_passport,
    "travel_permit": validate_travel_permit,
    "landline": validate_landline,
    "account": validate_account,
    "secret": validate_secret,
    "keyed_text": validate_keyed_text,
    "online_account": validate_online_account,
    "ip": validate_ip,
    "vin": validate_vin,
    "plate": validate_plate,
    "device_id": validate_device_id,
    "health": validate_health,
    "genetic": validate_genetic,
    "face": validate_face,
    "biometric_template": validate_biometric_template,
    "position": validate_position,
    "track": validate_track,
}
