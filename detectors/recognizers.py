"""Presidio recognizers built from the catalog, with python-stdnum check digits, and span arbitration.

One `CatalogRecognizer` (a presidio `PatternRecognizer`) per field type and scope: the *free* recognizer
holds the patterns that may fire anywhere, the *keyed* one the patterns for values under a key hint of the
type. `validate_result` runs the type's validator: True lifts the score to 1.0, False drops the match
(presidio's contract). Check digits come from python-stdnum — `cn.ric.calc_check_digit` plus our own birth
date and province checks, never `cn.ric.is_valid`, which rejects real IDs issued under later area codes
and can raise (reference/engineering-notes.md).

Presidio does not arbitrate between types on one span (an 18-digit resident ID also passes Luhn):
`resolve_overlaps` keeps one type per span by catalog priority.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import regex
from presidio_analyzer import AnalyzerEngine, Pattern, PatternRecognizer, RecognizerRegistry, RecognizerResult
from presidio_analyzer.context_aware_enhancers import ContextAwareEnhancer
from presidio_analyzer.nlp_engine import NlpArtifacts, NoOpNlpEngine
from stdnum import imei, luhn
from stdnum.cn import ric, uscc

from detectors.catalog import Catalog, FieldType

log = logging.getLogger(__name__)

LANGUAGE = "zh"
_DEFAULT_PROVINCES = frozenset(str(c) for c in (11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37,
                                                 41, 42, 43, 44, 45, 46, 50, 51, 52, 53, 54, 61, 62, 63, 64,
                                                 65, 71, 81, 82))
_SEPARATORS = re.compile(r"[\s\-]")
_HAN = re.compile(r"^[\u4e00-\u9fa5]+$")
_HAN_CHAR = re.compile(r"[\u4e00-\u9fa5]")
_LATIN_NAME = re.compile(r"^[A-Za-z][A-Za-z'.\-]*(?:[ ,]+[A-Za-z][A-Za-z'.\-]*){1,3}$")
_EMAIL_TLD = re.compile(r"^[A-Za-z]{2,24}$")
_NUMBERS = re.compile(r"\d+")

Validator = Callable[[str, Mapping[str, Any], bool], bool]


def _plausible_date(year: int, month: int, day: int, min_year: int) -> bool:
    try:
        born = dt.date(year, month, day)
    except ValueError:
        return False
    return min_year <= year and born <= dt.date.today()


def validate_ric(text: str, params: Mapping[str, Any], keyed: bool = False) -> bool:
    """18-char resident ID: province prefix, birth date, MOD 11-2 check digit (GB 11643-1999)."""
    value = _SEPARATORS.sub("", text).upper()
    if len(value) != 18 or not value[:17].isdigit():
        return False
    provinces = params.get("province_codes") or _DEFAULT_PROVINCES
    if value[:2] not in provinces:
        return False
    if not _plausible_date(int(value[6:10]), int(value[10:12]), int(value[12:14]),
                           int(params.get("min_birth_year", 1900))):
        return False
    try:
        # calc_check_digit wants the whole 18 characters: it drops the last one itself.
        return ric.calc_check_digit(value) == value[17]
    except Exception:  # stdnum raising on odd input must not lose the rest of the body
        return False


def validate_luhn(text: str, params: Mapping[str, Any], keyed: bool = False) -> bool:
    """Bank card: 16-19 digits, a card-brand prefix, Luhn — and not a valid resident ID."""
    digits = _SEPARATORS.sub("", text)
    if not (16 <= len(digits) <= 19 and digits.isdigit()):
        return False
    prefixes = params.get("brand_prefixes") or ()
    if prefixes and not digits.startswith(tuple(prefixes)):
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
    if name.endswith(tuple(params.get("reject_suffixes", ()))):
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


def validate_uscc(text: str, params: Mapping[str, Any], keyed: bool = False) -> bool:
    value = text.strip().upper()
    if len(value) != 18:
        return False
    try:
        return uscc.calc_check_digit(value[:17]) == value[17]
    except Exception:  # characters outside the GB 32100 alphabet
        return False


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


VALIDATORS: dict[str, Validator] = {
    "ric": validate_ric,
    "luhn": validate_luhn,
    "email": validate_email,
    "person_name": validate_person_name,
    "postal_address": validate_postal_address,
    "uscc": validate_uscc,
    "date": validate_date,
    "imei": validate_imei,
}


def prepare_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Lists in a catalog entry's params become frozensets of text once, not per validated value."""
    out: dict[str, Any] = {}
    for name, value in params.items():
        if isinstance(value, list | tuple):
            items = (str(v) for v in value)
            out[name] = frozenset(v.casefold() for v in items) if name == "reject_words" else frozenset(items)
        else:
            out[name] = value
    return out


class CatalogRecognizer(PatternRecognizer):
    """A presidio PatternRecognizer whose patterns, context and validator come from one catalog entry."""

    def __init__(self, spec: FieldType, keyed: bool) -> None:
        patterns = spec.keyed_patterns() if keyed else spec.free_patterns()
        super().__init__(
            supported_entity=spec.id,
            name=f"{spec.id}:{'keyed' if keyed else 'free'}",
            supported_language=LANGUAGE,
            patterns=[Pattern(name=p.name, regex=p.regex, score=p.score) for p in patterns],
            context=list(spec.context),
        )
        self.spec = spec
        self.keyed = keyed
        self.params = prepare_params(spec.params)
        self._validator = VALIDATORS.get(spec.validator) if spec.validator else None

        self._compiled = [(p.score, _compile_fast(p.regex, self.global_regex_flags)) for p in self.patterns]

    def validate_result(self, pattern_text: str) -> bool | None:
        if self._validator is None:
            return None
        return self._validator(pattern_text, self.params, self.keyed)

    def whole(self, text: str) -> float | None:
        """The score when some pattern matches all of `text` and the validator does not object: the
        fast path for a keyed value that is nothing but the value (most JSON and form fields)."""
        for score, compiled in self._compiled:
            if compiled.fullmatch(text) is not None:
                valid = self.validate_result(text)
                if valid is False:
                    continue
                return 1.0 if valid else score
        return None

    def spans(self, text: str) -> list[tuple[int, int, float]]:
        """The same patterns and validation as `analyze`, without presidio's per-match result objects:
        the fast path for keyed values, which are short and many."""
        out: list[tuple[int, int, float]] = []
        for score, compiled in self._compiled:
            for m in compiled.finditer(text):
                start, end = m.span()
                if start == end:
                    continue
                valid = self.validate_result(text[start:end])
                if valid is False:
                    continue
                out.append((start, end, 1.0 if valid else score))
        return out


def _compile_fast(expr: str, flags: int) -> Any:
    """The stdlib `re` where it understands the pattern (it runs these short patterns faster than
    `regex`, which presidio uses), else `regex`."""
    std = 0
    pairs = ((regex.IGNORECASE, re.IGNORECASE), (regex.MULTILINE, re.MULTILINE), (regex.DOTALL, re.DOTALL))
    for rx, sx in pairs:
        if flags & rx:
            std |= sx
    try:
        return re.compile(expr, std)
    except re.error:
        return regex.compile(expr, flags)


class KeyPathContext(ContextAwareEnhancer):
    """Presidio's lemma enhancer needs tokens the no-op NLP engine never makes, and deep-copies every
    result to find that out (a third of the analyzer's time). The engine scores context itself from key
    paths and the characters before a match, so this enhancer passes results through."""

    def __init__(self) -> None:
        super().__init__(context_similarity_factor=0.0, min_score_with_context_similarity=0.0,
                         context_prefix_count=0, context_suffix_count=0)

    def enhance_using_context(self, text: str, raw_results: list[RecognizerResult],
                              nlp_artifacts: NlpArtifacts, recognizers: list[Any],
                              context: list[str] | None = None) -> list[RecognizerResult]:
        return raw_results


@dataclass(frozen=True, slots=True)
class RecognizerSet:
    """Recognizers for a catalog: free ones (also registered in `analyzer`) and keyed ones, by type id."""

    free: Mapping[str, CatalogRecognizer]
    keyed: Mapping[str, CatalogRecognizer]
    analyzer: AnalyzerEngine


def build_recognizers(catalog: Catalog) -> RecognizerSet:
    free: dict[str, CatalogRecognizer] = {}
    keyed: dict[str, CatalogRecognizer] = {}
    registry = RecognizerRegistry(supported_languages=[LANGUAGE])
    for spec in catalog.field_types:
        if spec.free_patterns():
            free[spec.id] = CatalogRecognizer(spec, keyed=False)
            registry.add_recognizer(free[spec.id])
        if spec.keyed_patterns():
            keyed[spec.id] = CatalogRecognizer(spec, keyed=True)
    # No model: NoOpNlpEngine. Context comes from key paths and the text just before a match instead.
    nlp = NoOpNlpEngine(models=[{"lang_code": LANGUAGE, "model_name": "none"}])
    analyzer = AnalyzerEngine(registry=registry, nlp_engine=nlp, supported_languages=[LANGUAGE],
                              context_aware_enhancer=KeyPathContext())
    return RecognizerSet(free=free, keyed=keyed, analyzer=analyzer)


@dataclass(frozen=True, slots=True)
class Candidate:
    """A span some recognizer claims, before arbitration. Offsets index the analysed string."""

    field_type: str
    start: int
    end: int
    score: float
    keyed: bool


def resolve_overlaps(candidates: Iterable[Candidate], priority: Mapping[str, int]) -> list[Candidate]:
    """One type per span: greedily keep the highest (priority, score, length); drop what overlaps it."""
    ranked = sorted(candidates, key=lambda c: (-priority.get(c.field_type, 0), -c.score,
                                               c.start - c.end, c.start))
    kept: list[Candidate] = []
    for cand in ranked:
        if all(cand.end <= k.start or cand.start >= k.end for k in kept):
            kept.append(cand)
    kept.sort(key=lambda c: c.start)
    return kept
