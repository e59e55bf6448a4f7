"""Presidio recognizers built from the catalog, with python-stdnum check digits, and span arbitration.

One `CatalogRecognizer` (a presidio `PatternRecognizer`) per field type and scope: the *free* recognizer
holds the patterns that may fire anywhere, the *keyed* one the patterns for values under a key hint of the
type. `validate_result` runs the type's validator (detectors/validators.py): True lifts the score to 1.0,
False drops the match (presidio's contract). Check digits come from python-stdnum —
`cn.ric.calc_check_digit` plus our own birth date and province checks, never `cn.ric.is_valid`, which
rejects real IDs issued under later area codes and can raise (reference/engineering-notes.md).

Presidio does not arbitrate between types on one span (an 18-digit resident ID also passes Luhn):
`resolve_overlaps` keeps one type per span by catalog priority.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import regex
from presidio_analyzer import AnalyzerEngine, Pattern, PatternRecognizer, RecognizerRegistry, RecognizerResult
from presidio_analyzer.context_aware_enhancers import ContextAwareEnhancer
from presidio_analyzer.nlp_engine import NlpArtifacts, NoOpNlpEngine

from detectors.catalog import Catalog, FieldType

# The validators live in detectors/validators.py; these names stay importable from here.
from detectors.validators import (  # noqa: F401
    VALIDATORS,
    Validator,
    prepare_params,
    validate_date,
    validate_email,
    validate_imei,
    validate_luhn,
    validate_person_name,
    validate_postal_address,
    validate_ric,
    validate_uscc,
)

log = logging.getLogger(__name__)

LANGUAGE = "zh"


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
