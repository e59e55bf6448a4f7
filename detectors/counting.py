"""What counts as one value of a field type: evidence versus values, codes before free text.

Most types need no rule: a matched span is a value. Two catalog params change that (configs/field_types.yaml,
health_medical and genetic):

- `evidence_patterns`: names of the type's patterns whose matches say the body *is* of the type (an HL7
  `MSH|^~\\&` header, a FHIR `"resourceType": "Patient"`, `##fileformat=VCF`) without being anybody's value.
  Such matches, and record markers (params `marker_values`), become `Evidence`: they raise the type's
  presence and its important-data sub-category but are no `pi_values` row, so they never inflate distinct
  values (one MSH header per message would count every message as a diagnosis). `evidence_formats` does
  the same for a whole body the walker read as that format (`hl7`: detectors/walkers/hl7.py).
- `code_pattern`: the name of the pattern that matches the type's coded value (ICD-10). A span holding a
  code is counted as the code alone (`诊断：J45.9 支气管哮喘` -> `J45.9`); a span without one (`2型糖尿病`
  under a diagnosis key) is free text, counted only when its record holds no code of the type: the text
  beside a code names the same diagnosis.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from detectors.catalog import Catalog, FieldType

VALUE, CODE, TEXT, EVIDENCE = "value", "code", "text", "evidence"


@dataclass(frozen=True, slots=True)
class Evidence:
    """A match that shows a field type is present without being a value (no keyed hash, no sample)."""

    field_type: str
    key_path: str
    confidence: float
    important_subcategory: str | None


class _Hit(Protocol):
    field_type: str
    record_index: int


def _named(ft: FieldType, name: str) -> str:
    for p in ft.patterns:
        if p.name == name:
            return p.regex
    raise ValueError(f"field_types.yaml: {ft.id}: params name an unknown pattern {name!r}")


def code_regexes(catalog: Catalog) -> dict[str, re.Pattern[str]]:
    """Type id -> its code pattern, case-sensitive (an ICD-10 code's letter is upper case)."""
    return {ft.id: re.compile(_named(ft, str(ft.params["code_pattern"])))
            for ft in catalog.field_types if ft.params.get("code_pattern")}


class ValueRules:
    def __init__(self, catalog: Catalog) -> None:
        self._evidence: dict[str, tuple[re.Pattern[str], ...]] = {}
        for ft in catalog.field_types:
            names = ft.params.get("evidence_patterns") or ()
            if names:
                self._evidence[ft.id] = tuple(re.compile(_named(ft, str(n)), re.I) for n in names)
        self._code = code_regexes(catalog)
        self._formats: dict[str, list[str]] = {}
        for ft in catalog.field_types:
            for kind in ft.params.get("evidence_formats") or ():
                self._formats.setdefault(str(kind), []).append(ft.id)

    def format_types(self, kind: str) -> list[str]:
        """The types a body walked as `kind` (hl7, vcf…) is evidence of."""
        return self._formats.get(kind, [])

    def classify(self, field_type: str, text: str) -> tuple[str, int, int]:
        """(kind, start, end) of the value inside the matched `text`: VALUE, CODE (the code's span), TEXT
        or EVIDENCE."""
        for rx in self._evidence.get(field_type, ()):
            if rx.fullmatch(text.strip()) is not None:
                return EVIDENCE, 0, len(text)
        code = self._code.get(field_type)
        if code is None:
            return VALUE, 0, len(text)
        m = code.search(text)
        if m is not None:
            return CODE, m.start(), m.end()
        return TEXT, 0, len(text)


def drop_text_beside_codes(hits: list[_Hit], kinds: Sequence[str]) -> list[int]:
    """Indexes of the TEXT hits whose record also holds a CODE hit of the same type (to be dropped)."""
    coded = {(h.field_type, h.record_index) for h, k in zip(hits, kinds, strict=True) if k == CODE}
    return [i for i, (h, k) in enumerate(zip(hits, kinds, strict=True))
            if k == TEXT and (h.field_type, h.record_index) in coded]
