"""Important-data candidates: which of the 40 sub-categories of the Measures' appendix
(《中国（浙江）自由贸易试验区数据分类分级参考规则》, configs/important_data.yaml) a body looks like.

Three kinds of evidence, all data from the config:
- signatures on the raw body prefix (HJ 212 packets, VCF, HL7 v2, NetCDF, DICOM…): one strong signature is a
  candidate alone; a weak one (`alone: false`) counts as a single term;
- keywords (Chinese and English) in text values and in non-ASCII key names, one Aho-Corasick pass over the
  case-folded text;
- key hints on the keys of each value's path (`$.samples[*].genotype`), another automaton.

Words alone prove little: "基因" in a toy's product description is not genetic data. A sub-category becomes a
candidate only under its co-occurrence rule (default: 2 distinct keywords, or 2 distinct key hints, or a key
hint plus a keyword, or a signature). Sub-categories of detectability F have no rule: the filing decides.
Hits carry the *names* of what matched (config terms, signature names), never a value seen in traffic.
The verdict on a candidate belongs to the sector catalogue or the zone's opinion (Measures Art. 7(2), 11(2)).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass

import ahocorasick

from detectors.catalog import CooccurrenceRule, ImportantData, SubCategory
from detectors.keys import fold_key, segments

log = logging.getLogger(__name__)

__all__ = ["ImportantDetector", "ImportantHit", "looks_binary"]

MAX_TERMS = 8                 # term names kept per hit: evidence, not an inventory
MAX_TEXT_CHARS = 1 << 20      # keyword scanning budget per body (the signatures see the raw prefix anyway)
_SEGMENT_CACHE_LIMIT = 50_000
_SUBSTRING_HINT_CHARS = 5     # shorter hints ("dem", "cdr") match a whole key only, as in detectors/keys.py

CONFIDENCE_SIGNATURE = 0.9
CONFIDENCE_HINT_AND_TERMS = 0.75
CONFIDENCE_HINTS = 0.65
CONFIDENCE_TERMS = 0.5

# Content types whose bodies are never text: only signatures apply (DESIGN: binary is never scanned as text).
# application/octet-stream is not one: it says "type unknown", and the walker sniffs such a body like an
# untyped one (a JSON export sent as octet-stream is JSON, for PI and important data alike, as in a part).
_BINARY_TYPES = ("image/", "audio/", "video/", "font/", "application/zip",
                 "application/gzip", "application/x-gzip", "application/pdf", "application/x-protobuf",
                 "application/protobuf", "application/grpc", "application/vnd.", "application/x-hdf",
                 "application/x-netcdf", "application/dicom")
_SNIFF_BYTES = 1024
_CONTROL_BYTES = bytes(b for b in range(32) if b < 9 or b > 13)   # C0 controls but tab, LF, VT, FF, CR


@dataclass(frozen=True, slots=True)
class ImportantHit:
    subcategory: str              # "1".."40", the Measures' appendix
    evidence: str                 # "signature" | "keywords" | "key_hints" | "field_type"
    terms: tuple[str, ...]        # names from the config (signature names, key hints, keywords); never values
    key_path: str | None          # where a hint or keyword was seen; None for a signature on the raw body
    confidence: float


def looks_binary(body: bytes, content_type: str | None) -> bool:
    """A body that is not text: by content type, else by NUL or many control bytes in its first KiB."""
    ct = (content_type or "").split(";", 1)[0].strip().lower()
    if ct and ct.startswith(_BINARY_TYPES) and not ct.endswith(("+json", "+xml")):
        return True
    head = body[:_SNIFF_BYTES]
    if not head:
        return False
    if b"\x00" in head:
        return True
    control = len(head) - len(head.translate(None, _CONTROL_BYTES))   # C speed, not a loop per byte
    return control * 10 > len(head)


@dataclass(frozen=True, slots=True)
class _Signature:
    subcategory: str
    name: str
    magic: bytes | None
    offset: int
    regex: re.Pattern[bytes] | None
    window: int
    alone: bool

    def matches(self, body: bytes) -> bool:
        if self.magic is not None and body[self.offset:self.offset + len(self.magic)] != self.magic:
            return False
        return self.regex is None or self.regex.search(body, 0, self.window) is not None


class _Found:
    """What one body showed for one sub-category: names in first-seen order with the first path."""

    __slots__ = ("hints", "strong", "terms")

    def __init__(self) -> None:
        self.strong: list[str] = []
        self.terms: dict[str, str | None] = {}
        self.hints: dict[str, str] = {}


class ImportantDetector:
    def __init__(self, spec: ImportantData, max_text_chars: int = MAX_TEXT_CHARS) -> None:
        self.spec = spec
        self.max_text_chars = max_text_chars
        active = [s for s in spec.subcategories if s.detectable]
        self._rules: dict[str, CooccurrenceRule] = {s.id: spec.rule_for(s) for s in active}
        self._signatures = tuple(_Signature(s.id, sig.name, sig.magic_bytes(), sig.offset,
                                            re.compile(sig.regex.encode("utf-8")) if sig.regex else None,
                                            sig.window, sig.alone)
                                 for s in active for sig in s.signatures)
        self._keywords, self._has_keywords = _keyword_automaton(active)
        self._hint_exact, self._hint_auto, self._has_hint_auto = _hint_index(active)
        self._segment_cache: dict[str, tuple[tuple[str, str], ...]] = {}

    def detect(self, body: bytes, text_values: Iterable[tuple[str, str]] = ()) -> list[ImportantHit]:
        """Candidates in one body: `text_values` are its walked (key path, value) pairs (empty for binary
        bodies, which get signatures only). One hit per sub-category, ordered by sub-category id."""
        found: dict[str, _Found] = {}
        for sig in self._signatures:
            if sig.matches(body):
                f = found.setdefault(sig.subcategory, _Found())
                if sig.alone:
                    f.strong.append(sig.name)
                else:
                    f.terms.setdefault(sig.name, None)
        budget = self.max_text_chars
        seen_paths: set[str] = set()
        for path, value in text_values:
            if path not in seen_paths:
                seen_paths.add(path)
                self._keys(path, found)
            if budget > 0 and value:
                text = value[:budget]
                budget -= len(text)
                self._scan_keywords(text, path, found)
        return [hit for sub_id in sorted(found, key=int)
                if (hit := self._decide(sub_id, found[sub_id])) is not None]

    # -- evidence ----------------------------------------------------------------------------------------

    def _keys(self, path: str, found: dict[str, _Found]) -> None:
        for seg in segments(path):
            for sub_id, hint in self._segment_hints(seg):
                found.setdefault(sub_id, _Found()).hints.setdefault(hint, path)
            # English key names are the key hints' business; Chinese keys (CSV headers 诊断, 处方) are words.
            if not seg.isascii():
                self._scan_keywords(seg, path, found)

    def _segment_hints(self, seg: str) -> tuple[tuple[str, str], ...]:
        cached = self._segment_cache.get(seg)
        if cached is not None:
            return cached
        folded = fold_key(seg)
        out = dict.fromkeys(self._hint_exact.get(folded, ()))
        if self._has_hint_auto and folded:
            for _, pairs in self._hint_auto.iter(folded):
                out.update(dict.fromkeys(pairs))
        result = tuple(out)
        if len(self._segment_cache) >= _SEGMENT_CACHE_LIMIT:
            self._segment_cache.clear()
        self._segment_cache[seg] = result
        return result

    def _scan_keywords(self, text: str, path: str, found: dict[str, _Found]) -> None:
        if not self._has_keywords:
            return
        folded = text.casefold()
        for end, (length, bounded, owners) in self._keywords.iter(folded):
            # An English keyword must stand as a word: "reo" is not a keyword inside "stereo".
            if bounded and not _word_at(folded, end - length + 1, end + 1):
                continue
            for sub_id, keyword in owners:
                found.setdefault(sub_id, _Found()).terms.setdefault(keyword, path)

    # -- rule --------------------------------------------------------------------------------------------

    def _decide(self, sub_id: str, f: _Found) -> ImportantHit | None:
        rule = self._rules[sub_id]
        terms, hints = list(f.terms), list(f.hints)
        if f.strong:
            return ImportantHit(sub_id, "signature", _names(f.strong, hints, terms), None,
                                CONFIDENCE_SIGNATURE)
        first_hint_path = next(iter(f.hints.values()), None)
        if hints and rule.key_hint_with_terms is not None and len(terms) >= rule.key_hint_with_terms:
            return ImportantHit(sub_id, "key_hints", _names(hints, terms), first_hint_path,
                                CONFIDENCE_HINT_AND_TERMS)
        if len(hints) >= rule.min_distinct_key_hints:
            return ImportantHit(sub_id, "key_hints", _names(hints), first_hint_path, CONFIDENCE_HINTS)
        if len(terms) >= rule.min_distinct_terms:
            # More distinct words than the rule asks for: a slightly stronger candidate, never a strong one.
            extra = min(4, len(terms) - rule.min_distinct_terms)
            path = next((p for p in f.terms.values() if p is not None), None)
            return ImportantHit(sub_id, "keywords", _names(terms), path,
                                round(CONFIDENCE_TERMS + 0.05 * extra, 4))
        return None


def _names(*groups: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(n for g in groups for n in g))[:MAX_TERMS]


def _word_at(text: str, start: int, end: int) -> bool:
    before = text[start - 1] if start > 0 else " "
    after = text[end] if end < len(text) else " "
    return not (_is_ascii_alnum(before) or _is_ascii_alnum(after))


def _is_ascii_alnum(ch: str) -> bool:
    return ch.isascii() and ch.isalnum()


def _keyword_automaton(subs: list[SubCategory]) -> tuple[ahocorasick.Automaton, bool]:
    owners: dict[str, list[tuple[str, str]]] = {}
    for sub in subs:
        for kw in sub.keywords:
            owners.setdefault(kw.casefold(), []).append((sub.id, kw))
    auto = ahocorasick.Automaton()
    for folded, pairs in owners.items():
        # ASCII keywords need word bounds; CJK has no spaces between words, so a substring is the match.
        auto.add_word(folded, (len(folded), folded.isascii(), tuple(pairs)))
    if owners:
        auto.make_automaton()
    return auto, bool(owners)


def _hint_index(subs: list[SubCategory]) -> tuple[dict[str, tuple[tuple[str, str], ...]],
                                                   ahocorasick.Automaton, bool]:
    exact: dict[str, list[tuple[str, str]]] = {}
    for sub in subs:
        for hint in sub.key_hints:
            exact.setdefault(fold_key(hint), []).append((sub.id, hint))
    auto = ahocorasick.Automaton()
    partial = {k: v for k, v in exact.items() if len(k) >= _SUBSTRING_HINT_CHARS}
    for folded, pairs in partial.items():
        auto.add_word(folded, tuple(pairs))
    if partial:
        auto.make_automaton()
    return {k: tuple(v) for k, v in exact.items()}, auto, bool(partial)
