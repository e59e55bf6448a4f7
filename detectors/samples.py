"""Masked samples on ingest (DESIGN §3 `detections.masked_samples`: masked, never a raw value).

The agent masks every sample it uploads (detectors/masking.py; the derived hits' own masks in
detectors/derived.py); important-data rows carry the names of configured terms, never values. An old or
hostile agent can upload anything, so the collector keeps a sample only when it has a shape that the agent's
masking could have produced, and replaces anything else with `PLACEHOLDER`, which says nothing of the value:

| producer | shape kept |
|---|---|
| every masker on short values, `secret` | stars only: `**`, `******` |
| person_name, generic (4 chars), derived markers, codes | one character, stars: `张*`, `Z***`, `P***` |
| generic | one character, three or more stars, one character: `1********8` |
| resident_id (18, 15), mobile (11) | 3 digits, stars, 4 characters: `330***********123X` |
| mobile, other lengths | 2 digits, stars, 2 digits: `44*****78` |
| bank_card | 6 digits of a brand's BIN, 6 to 9 stars, 4 digits: `622202*********3445` |
| email | one character, `***@`, the domain: `z***@example.com` |
| postal_address | a first division, `***`: `浙江省***`; or two characters, `***` |
| blob | `<jpeg:1234 chars>`, `<vector[512]:4096 chars>` (sizes up to 7 digits) |
| derived position, container | `30***,120***`, `<3 values>` |
| important_data | a term of configs/important_data.yaml: `hl7_v2`, `genotype` |

Within those shapes, what stays unmasked is checked too: a division not made of known place names (GB/T
2260 as python-stdnum ships it) that reads as a person's name (`张三市***`, `张三收浙江省***`) is not
kept, nor a two-character prefix that starts no known place and reads as a name (`张三***`), nor an
e-mail domain with a run of five or more digits. Failing closed may cost a sample (an address that starts
with a street or estate named like a person); it never lets a value through.
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache
from typing import Any

from detectors.configs import configs_dir
from detectors.keypath import _DIGIT_RUN, default_rules, name_shaped
from detectors.masking import _DIVISION

PLACEHOLDER = "<masked>"
_CONFIGS = configs_dir()

_SHAPES = re.compile("|".join((
    r"\*+",                                          # stars only
    r"\S\*+",                                        # 张**, Z***, P*** (derived marker, code)
    r"\S\*{3,}\S",                                   # generic: 1********8
    r"\d{2}\*{3,}\d{2}",                             # mobile, not 11 digits
    r"\d{3}\*{3,}\d{3}[\dX]",                        # resident ID, 11-digit mobile
    r"[2-69]\d{5}\*{6,9}\d{4}",                      # bank card: 16-19 digits, brand prefix (1: a mobile)
    # Sizes and counts, at most seven digits: a value is cut at 1 MiB (WalkBudget.max_value_chars), and
    # eleven digits or more (a mobile, an ID, a card) are no size.
    r"<(?:jpeg|png|data|vector\[\d{1,7}\]):\d{1,7} chars>",  # blob
    r"[-+.\d]{1,2}\*{3},[-+.\d]{1,3}\*{3}",          # derived position: lat[:2]***,lng[:3]***
    r"<\d{1,7} values>",                             # derived container
)))
# The email masker's `local[0]***@domain`, lower-cased; the domain as the catalog's email pattern reads it.
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?"
_EMAIL = re.compile(rf"[^\s@*]\*{{3}}@((?:{_LABEL}\.)+[a-z]{{2,24}})")
_POSTAL = re.compile(r"(.+)(特别行政区|自治区|省|市)\*{3}")
_POSTAL_SHORT = re.compile(r"(\S\S)\*{3}")
_HAN = re.compile(r"[\u4e00-\u9fa5]+")
_BRACKETED = re.compile(r"\[[^\]]*\]")       # stdnum's validity years: [1983-]博山区
_DIVISION_WORD = re.compile(
    r"(?:特别行政区|自治区|自治州|自治县|自治旗|地区|新区|林区|特区|省|市|区|县|旗|州|盟)$")
# Provincial-level divisions as addresses begin with them (GB/T 2260 from python-stdnum adds the rest).
_PROVINCES = (
    "北京", "天津", "上海", "重庆", "河北", "山西", "内蒙古", "辽宁", "吉林", "黑龙江", "江苏", "浙江",
    "安徽", "福建", "江西", "山东", "河南", "湖北", "湖南", "广东", "广西", "广西壮族", "海南", "四川",
    "贵州", "云南", "西藏", "陕西", "甘肃", "青海", "宁夏", "宁夏回族", "新疆", "新疆维吾尔", "台湾",
    "香港", "澳门", "中国",
)


def safe_sample(sample: str) -> str:
    """`sample` when the agent's masking could have produced it, else `PLACEHOLDER` (module docstring)."""
    return sample if is_masked(sample) else PLACEHOLDER


def is_masked(sample: str) -> bool:
    """Whether `sample` has a shape the agent's masking produces, with nothing PI-shaped left unmasked: as
    written, or in its NFKC form (full-width digits and stars: `１３８＊＊＊＊５６７８`)."""
    if not sample or sample in _config_terms():
        return True
    if _shaped(sample):
        return True
    text = unicodedata.normalize("NFKC", sample)
    return text != sample and _shaped(text)


def _shaped(text: str) -> bool:
    if _SHAPES.fullmatch(text):
        return True
    m = _EMAIL.fullmatch(text)
    if m:
        return not _DIGIT_RUN.search(m.group(1))
    m = _POSTAL.fullmatch(text)
    if m:
        # The masker keeps the shortest prefix that ends in a division word: nothing after the first one.
        division = _DIVISION.match(text[:-3])
        return division is not None and division.group(1) == text[:-3] and _place(m.group(1))
    m = _POSTAL_SHORT.fullmatch(text)
    if m:
        two = m.group(1)
        return not _HAN.fullmatch(two) or two in _place_starts() or _no_name(two)
    return False


def _place(text: str) -> bool:
    """Han text made of known place names (浙江杭州, 中国浙江), or Han text in which no person's name can be
    read."""
    if not _HAN.fullmatch(text):
        return False
    return _places_only(text) or _no_name(text)


def _places_only(text: str) -> bool:
    places = _places()
    ends = [False] * len(text) + [True]       # ends[i]: text[i:] is a sequence of known places
    for i in range(len(text) - 2, -1, -1):
        ends[i] = any(ends[j] and text[i:j] in places for j in range(i + 2, len(text) + 1))
    return ends[0]


def _no_name(text: str) -> bool:
    """No two- to four-character window of `text` is shaped like a person's name."""
    rules = default_rules()
    return not any(name_shaped(text[i:i + n], rules)
                   for n in (2, 3, 4) for i in range(len(text) - n + 1))


@cache
def _places() -> frozenset[str]:
    """Place names as addresses begin with them: the provinces, the divisions of GB/T 2260 as
    python-stdnum has them (cn/loc: provinces, prefectures, counties, former names too), each with and
    without its division word (杭州市 and 杭州, 浦东新区 and 浦东), and the catalog's postal_address
    place list."""
    names = set(_PROVINCES)
    try:
        from stdnum import numdb

        def walk(parts: Any) -> None:
            for _length, _low, _high, props, children in parts:
                for value in props.values():
                    names.update(_BRACKETED.sub("", v) for v in str(value).split(","))
                walk(children)

        walk(numdb.get("cn/loc").prefixes)
    except (ImportError, OSError, ValueError):
        pass
    try:
        from detectors.catalog import load_catalog

        for ft in load_catalog(_CONFIGS / "field_types.yaml").field_types:
            if ft.id == "postal_address":
                for pattern in ft.prefilter:
                    names.update(_HAN.findall(pattern))
    except (OSError, ValueError):
        pass
    places = {n for n in names if len(n) >= 2 and _HAN.fullmatch(n)}
    places |= {stem for n in places if len(stem := _DIVISION_WORD.sub("", n)) >= 2}
    return frozenset(places)


@cache
def _place_starts() -> frozenset[str]:
    """The first two characters of every known place (`_POSTAL_SHORT`: 西湖***, 浦东***)."""
    return frozenset(p[:2] for p in _places())


@cache
def _config_terms() -> frozenset[str]:
    """What important-data rows carry instead of values: names from configs/important_data.yaml (signature
    names, key hints, keywords). Configuration, not traffic: kept as they are."""
    try:
        from detectors.catalog import load_important_data

        spec = load_important_data(_CONFIGS / "important_data.yaml")
    except (OSError, ValueError):
        return frozenset()
    terms: set[str] = set()
    for sub in spec.subcategories:
        terms.update(sub.keywords)
        terms.update(sub.key_hints)
        terms.update(sig.name for sig in sub.signatures)
    return frozenset(t for t in terms if t)
