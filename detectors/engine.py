"""inspect(body, content_type) -> Inspection: the detectors' one entry point (docs/internals.md, Detectors).

Per body: walkers.walk splits it into (key path, value, record) triples; per value:
1. keyed check — when the key path carries a key hint of a type, that type's keyed recognizer validates
   the value directly (no analyzer pass); the hint adds `scoring.key_bonus`;
2. free scan — hyperscan flags which types could match anywhere in the value; only then do the flagged
   types' presidio PatternRecognizers run, called directly rather than through AnalyzerEngine (same spans,
   half the cost). Context is the key path and the few characters before a match (presidio's lemma
   context needs an NLP model);
3. arbitration — one type per span by catalog priority (resident ID beats bank card);
4. counting — a span is a value, or only evidence that the type is present (an HL7 header, a FHIR
   resourceType, a VCF signature), and a coded value beats the free text beside it in its record
   (detectors/counting.py; the value definitions sit beside the types in configs/field_types.yaml).
Hits carry the keyed hash and a masked sample, never the raw value.
Per body, too: important-data candidates (detectors/important.py, the Measures' appendix) from signatures
on the raw body, keywords and key names; binary bodies get signatures only.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from detectors import derived, masking, subjects
from detectors.catalog import (
    Catalog,
    FieldType,
    ImportantData,
    Policy,
    load_catalog,
    load_important_data,
    load_policy,
)
from detectors.counting import CODE, EVIDENCE, VALUE, Evidence, ValueRules, drop_text_beside_codes
from detectors.important import ImportantDetector, ImportantHit, looks_binary
from detectors.keypath import KeyRules, redact_key_path
from detectors.keys import KeyIndex, KeyInfo
from detectors.prefilter import Prefilter
from detectors.recognizers import Candidate, build_recognizers, resolve_overlaps
from detectors.walkers import WalkBudget, walk

log = logging.getLogger(__name__)

# Values longer than this are analysed in windows around pre-filter matches, not whole.
LONG_VALUE_CHARS = 2048
MASKED_PER_TYPE = 3      # hits per type and body that carry a masked sample; the rest carry ""
_WINDOW_BEFORE = 384     # bytes before a match end: the longest pattern plus its context
_WINDOW_AFTER = 64
_PATH_CACHE_LIMIT = 50_000   # redacted key paths remembered per engine (a body has a few dozen)
_NO_KEY = KeyInfo(types=(), negative=False, leaf="")
_Pathed = TypeVar("_Pathed", "FieldHit", Evidence, ImportantHit)


@dataclass(frozen=True, slots=True)
class FieldHit:
    field_type: str           # catalog id
    key_path: str             # "$.orders[*].receiver.idNo", "form.sfzh", "text"
    record_index: int         # which record of this body, 0-based
    value_key: int            # signed int64: first 8 bytes of HMAC-SHA256(key, field_type + normalized value)
    masked: str               # 330***********123X — never the raw value; "" past the first few per type
    confidence: float
    identifier: bool
    sensitive: bool
    important_subcategory: str | None


@dataclass(frozen=True, slots=True)
class Inspection:
    hits: tuple[FieldHit, ...]
    anomalies: tuple[tuple[str, str], ...]   # (name, detail), layer "detector"
    # Important-data candidates (Measures' appendix), one per sub-category; last with a default so that
    # positional construction keeps working.
    important: tuple[ImportantHit, ...] = ()
    # Matches that show a type is present without being a value (no pi_values row): HL7 headers, FHIR
    # resourceType markers, VCF signatures. They also imply the type's important-data sub-category.
    evidence: tuple[Evidence, ...] = ()


class Engine:
    def __init__(self, catalog: Catalog, policy: Policy, subject_key: bytes,
                 budget: WalkBudget | None = None, strict: bool = False,
                 important: ImportantData | None = None) -> None:
        if not subject_key:
            raise ValueError("subject_key must not be empty")
        self.strict = strict     # re-raise detector bugs (tests) instead of reporting an anomaly
        self.catalog = catalog
        self.policy = policy
        self._key = subject_key
        self.key_id = subjects.key_id(subject_key)     # stamped on every pi_values row (DESIGN §3)
        self._budget = budget or WalkBudget()
        self._types: dict[str, FieldType] = {ft.id: ft for ft in catalog.field_types}
        self._priority = {ft.id: ft.priority for ft in catalog.field_types}
        self._sensitive = {ft.id: policy.is_sensitive(ft) for ft in catalog.field_types}
        self._context = {ft.id: tuple(w.casefold() for w in ft.context) for ft in catalog.field_types}
        self._recognizers = build_recognizers(catalog)
        self._rules = ValueRules(catalog)            # evidence versus values; codes before free text
        self._deriver = derived.Deriver(catalog)   # minor_under_14, lat+lng siblings, markers, containers
        self._prefilter = Prefilter(catalog)
        self._keys = KeyIndex(catalog)
        self._scoring = catalog.scoring
        # Under a non-PI key (orderNo) even a validated, context-backed free match stays below the bar:
        # skip the scan instead of scoring matches only to drop them.
        sc = catalog.scoring
        self._scan_negative = (1.0 + sc.context_bonus) * sc.negative_key_factor >= policy.min_confidence
        self._important = ImportantDetector(important) if important is not None else None
        self._implied: dict[str, str] = {ft.id: ft.important_subcategory for ft in catalog.field_types
                                          if ft.important_subcategory}
        # Key paths leave the engine redacted (DESIGN §3): a key that is a value becomes `<value>`.
        self._key_rules = KeyRules.from_catalog(catalog, important)
        self._paths: dict[str, str] = {}

    @classmethod
    def from_configs(cls, configs_dir: Path | str, subject_key: bytes) -> Engine:
        configs_dir = Path(configs_dir)
        catalog = load_catalog(configs_dir / "field_types.yaml")
        policy = load_policy(configs_dir / "policy.yaml", catalog)
        important_path = configs_dir / "important_data.yaml"
        important = load_important_data(important_path) if important_path.is_file() else None
        return cls(catalog, policy, subject_key, important=important)

    @property
    def field_ids(self) -> frozenset[str]:
        return self.catalog.ids

    def inspect(self, body: bytes, content_type: str | None, *, at: dt.date | None = None) -> Inspection:
        """`at`: the flow's date, for ages (minor_under_14); default today."""
        walked = walk(body, content_type, self._budget)
        hits: list[FieldHit] = []
        kinds: list[str] = []          # per hit: VALUE, CODE or TEXT (detectors/counting.py)
        evidence = [self._evidence(t, walked.kind, 1.0) for t in self._rules.format_types(walked.kind)]
        anomalies = list(walked.anomalies)
        samples: dict[str, int] = {}
        triples = derived.collapse_numeric_runs(walked.triples)
        today = at or dt.date.today()
        key_info = self._keys.info
        for path, value, record in triples:
            info = key_info(path)
            # One character says something only under a key hint (性别: 男).
            if len(value) < 2 and not (value.strip() and info.types):
                continue
            try:
                for cand in self._resolved(value, info):
                    kind, start, end = self._rules.classify(cand.field_type, value[cand.start:cand.end])
                    if kind == EVIDENCE:
                        evidence.append(self._evidence(cand.field_type, path, cand.score))
                        continue
                    text = value[cand.start + start:cand.start + end]
                    # Evidence needs a few masked samples per type, not one per value: masking every hit
                    # of a PI-dense export cost as much as hashing it.
                    n = samples.get(cand.field_type, 0)
                    samples[cand.field_type] = n + 1
                    hits.append(self._hit(cand, text, path, record, n < MASKED_PER_TYPE))
                    kinds.append(kind)
                    if derived.is_minor(cand.field_type, text, today):
                        hits.append(self._minor_hit(hits[-1], text))
                        kinds.append(VALUE)
            except Exception as exc:
                if self.strict:
                    raise
                # The class name and path only: an exception message may quote the value.
                anomalies.append(("detector_error", f"{type(exc).__name__} at {self.safe_path(path)}"))
        try:
            for d in self._derived(triples, hits):
                if d.evidence:
                    evidence.append(self._evidence(d.field_type, d.key_path, d.confidence))
                else:
                    hits.append(self._from_derived(d))
                    kinds.append(CODE if d.code else VALUE)
        except Exception as exc:
            if self.strict:
                raise
            anomalies.append(("detector_error", f"{type(exc).__name__} in derived hits"))
        for i in reversed(drop_text_beside_codes(hits, kinds)):
            del hits[i]
        log.debug("inspected %d bytes as %s: %d values, %d hits", len(body), walked.kind,
                  len(walked.triples), len(hits))
        important: tuple[ImportantHit, ...] = ()
        try:
            # A gRPC body is binary framing around text values the walker read out: not a binary payload.
            binary = walked.kind == "binary" or (walked.kind != "grpc" and looks_binary(body, content_type))
            important = self._important_hits(body, binary, walked.triples, [*hits, *evidence])
        except Exception as exc:
            if self.strict:
                raise
            anomalies.append(("detector_error", f"{type(exc).__name__} in important-data detection"))
        return self._redacted(Inspection(hits=tuple(hits), anomalies=tuple(anomalies), important=important,
                                         evidence=tuple(evidence)))

    # -- key paths out ---------------------------------------------------------------------------------

    def safe_path(self, path: str) -> str:
        """`path` with every key segment that holds a value as `<value>` (detectors/keypath.py), judged
        by the catalog's hints and name rules and by this engine's own recognizers. Cached per path."""
        done = self._paths.get(path)
        if done is None:
            done = redact_key_path(path, self._key_rules, self._segment_is_pi)
            if len(self._paths) >= _PATH_CACHE_LIMIT:
                self._paths.clear()
            self._paths[path] = done
        return done

    def _segment_is_pi(self, segment: str) -> bool:
        # A free scan as if the key were a value in a body: what the detectors would report is PI.
        return len(segment) >= 2 and bool(self._resolved(segment, _NO_KEY))

    def _redacted(self, result: Inspection) -> Inspection:
        """Detection decisions use the paths as walked (context); what leaves carries only safe paths."""
        return Inspection(hits=tuple(map(self._safe, result.hits)), anomalies=result.anomalies,
                          important=tuple(map(self._safe, result.important)),
                          evidence=tuple(map(self._safe, result.evidence)))

    def _safe(self, item: _Pathed) -> _Pathed:
        # Replaced only where the path changed: the common body has no key to redact.
        path = item.key_path
        if path is None:
            return item
        safe = self.safe_path(path)
        return item if safe == path else dataclasses.replace(item, key_path=safe)

    def _evidence(self, field_type: str, path: str, confidence: float) -> Evidence:
        return Evidence(field_type, path, round(confidence, 4), self._types[field_type].important_subcategory)

    def _important_hits(self, body: bytes, binary: bool, triples: Iterable[tuple[str, str, int]],
                        hits: list[FieldHit | Evidence]) -> tuple[ImportantHit, ...]:
        """Candidates from signatures, words and key names, plus the sub-category a field type implies
        (health_medical -> 28, genetic -> 27) where the words did not already make it one."""
        if binary:
            # A binary body is never read as text: signatures only, and its 'field hits' are noise.
            return tuple(self._important.detect(body)) if self._important is not None else ()
        found = self._important.detect(body, ((p, v) for p, v, _ in triples)) if self._important else []
        have = {h.subcategory for h in found}
        implied: dict[str, ImportantHit] = {}
        for hit in hits:
            sub = self._implied.get(hit.field_type)
            if sub is None or sub in have:
                continue
            prev = implied.get(sub)
            if prev is None or hit.confidence > prev.confidence:
                path = prev.key_path if prev is not None else hit.key_path
                implied[sub] = ImportantHit(sub, "field_type", (hit.field_type,), path, hit.confidence)
        return tuple(sorted([*found, *implied.values()], key=lambda h: int(h.subcategory)))

    def find_spans(self, value: str, key_path: str = "text") -> list[Candidate]:
        """The spans `inspect` would report for one value under `key_path` (offsets, types, scores):
        for tests and explanations, without hashing or masking."""
        return self._resolved(value, self._keys.info(key_path))

    # -- per value -------------------------------------------------------------------------------------

    def _resolved(self, value: str, info: KeyInfo) -> list[Candidate]:
        if info.types:
            # The common case in structured exports: the value under a key hint is nothing but that value.
            # One whole-value match decides it: nothing to arbitrate and no free scan to run.
            stripped = value.strip()
            offset = value.find(stripped[:1]) if stripped else 0
            for field_type in info.types:
                recognizer = self._recognizers.keyed.get(field_type)
                score = recognizer.whole(stripped) if recognizer is not None and stripped else None
                if score is not None:
                    score = min(1.0, score + self._scoring.key_bonus)
                    if score < self.policy.min_confidence:
                        break
                    return [Candidate(field_type, offset, offset + len(stripped), score, True)]
        spans = self._keyed(value, info)
        # A keyed value validated whole needs no free scan ("keyed values are validated directly"); nor does
        # base64 or hex of binary content (an image's bytes hold digit runs, not phone numbers).
        if (not spans or not _covers(spans, value)) and (self._scan_negative or not info.negative) \
                and not derived.is_encoded_blob(value):
            spans.update(self._free(value, info))
        if not spans:
            return []
        floor = self.policy.min_confidence
        return [c for c in resolve_overlaps(spans, self._priority) if c.score >= floor]

    def _keyed(self, value: str, info: KeyInfo) -> dict[Candidate, str]:
        found: dict[Candidate, str] = {}
        for field_type in info.types:
            recognizer = self._recognizers.keyed.get(field_type)
            if recognizer is None:
                continue
            for start, end, score in recognizer.spans(value):
                cand = Candidate(field_type, start, end, min(1.0, score + self._scoring.key_bonus), True)
                found[cand] = value[start:end]
        return found

    def _free(self, value: str, info: KeyInfo) -> dict[Candidate, str]:
        data = value.encode("utf-8")
        if len(value) <= LONG_VALUE_CHARS:
            flagged = self._prefilter.flag(data)
            return self._analyze(value, flagged, info, 0) if flagged else {}
        found: dict[Candidate, str] = {}
        byte_pos = char_pos = 0
        for start, end, flagged in _windows(data, self._prefilter.positions(data)):
            # Windows are in bytes and sorted; keep a running character offset (O(n) over the value).
            char_pos += len(data[byte_pos:start].decode("utf-8"))
            byte_pos = start
            found.update(self._analyze(data[start:end].decode("utf-8"), flagged, info, char_pos))
        return found

    def _analyze(self, text: str, flagged: Iterable[str], info: KeyInfo, base: int) -> dict[Candidate, str]:
        """Presidio over `text` for the flagged types; offsets shifted by `base` (window start)."""
        entities = sorted(t for t in flagged if t in self._recognizers.free and t not in info.excluded)
        if not entities:
            return {}
        found: dict[Candidate, str] = {}
        sc = self._scoring
        free = self._recognizers.free
        for field_type in entities:
            spec = self._types[field_type]
            keyed = field_type in info.types
            # The recognizer's own patterns and validator without AnalyzerEngine's per-call orchestration
            # (an empty NLP doc, registry lookup, result objects): that was 40 % of the detectors' time.
            # resolve_overlaps subsumes presidio's duplicate removal; tests/detectors/test_engine_presidio.py
            # holds this path equal to AnalyzerEngine.analyze.
            for start, end, raw in free[field_type].spans(text):
                matched = text[start:end]
                before = text[max(0, start - sc.context_window):start].casefold()
                has_context = any(w in before for w in self._context[field_type])
                if spec.requires_context and not (keyed or has_context or _accepted_prefix(spec, matched)):
                    continue
                score = raw + (sc.key_bonus if keyed else 0.0) + (sc.context_bonus if has_context else 0.0)
                if info.negative:
                    score *= sc.negative_key_factor
                found[Candidate(field_type, base + start, base + end, min(1.0, score), keyed)] = matched
        return found

    def _minor_hit(self, birth: FieldHit, text: str) -> FieldHit:
        """minor_under_14 on the birth value: same record, same keyed-hash scheme, the birth value's mask."""
        source = self._types[birth.field_type]
        normalized = subjects.normalize(source.normalizer, text)
        return dataclasses.replace(
            birth, field_type=derived.MINOR_TYPE,
            value_key=subjects.value_key(self._key, derived.MINOR_TYPE, normalized),
            masked=birth.masked or masking.mask(source.masker, text), identifier=False,
            sensitive=self._sensitive.get(derived.MINOR_TYPE, True), important_subcategory=None)

    def _derived(self, triples: list[tuple[str, str, int]], hits: list[FieldHit]) -> list[derived.DerivedHit]:
        made = self._deriver.record_hits(triples)
        values = [self._from_derived(d) for d in made if not d.evidence]
        return made + self._deriver.container_hits([*hits, *values])

    def _from_derived(self, d: derived.DerivedHit) -> FieldHit:
        spec = self._types[d.field_type]
        return FieldHit(field_type=spec.id, key_path=d.key_path, record_index=d.record_index,
                        value_key=subjects.value_key(self._key, spec.id, subjects.normalize(spec.normalizer,
                                                                                            d.value)),
                        masked=d.masked, confidence=round(d.confidence, 4), identifier=spec.identifier,
                        sensitive=self._sensitive[spec.id], important_subcategory=spec.important_subcategory)

    def _hit(self, cand: Candidate, text: str, path: str, record: int, sample: bool = True) -> FieldHit:
        # Once per PI value of every inspected body: positional arguments and no helper layers on purpose.
        spec = self._types[cand.field_type]
        return FieldHit(spec.id, path, record,
                        subjects.value_key(self._key, spec.id, subjects.normalize(spec.normalizer, text)),
                        masking.mask(spec.masker, text) if sample else "",
                        round(cand.score, 4), spec.identifier, self._sensitive[spec.id],
                        spec.important_subcategory)


def _covers(spans: dict[Candidate, str], value: str) -> bool:
    stripped = value.strip()
    return any(text.strip() == stripped for text in spans.values())


def _accepted_prefix(spec: FieldType, matched: str) -> bool:
    if not spec.accept_prefixes:
        return False
    compact = "".join(ch for ch in matched if ch.isalnum())
    return compact.startswith(spec.accept_prefixes)


def _windows(data: bytes, positions: list[tuple[str, int]]) -> list[tuple[int, int, set[str]]]:
    """Merged byte windows around pre-filter match ends, snapped to UTF-8 character starts and widened
    over ASCII letters and digits so a window never starts or ends inside a number."""
    spans: list[tuple[int, int, set[str]]] = []
    for field_type, end in sorted(positions, key=lambda p: p[1]):
        lo, hi = max(0, end - _WINDOW_BEFORE), min(len(data), end + _WINDOW_AFTER)
        if spans and lo <= spans[-1][1]:
            prev = spans[-1]
            spans[-1] = (prev[0], max(prev[1], hi), prev[2] | {field_type})
        else:
            spans.append((lo, hi, {field_type}))
    out = []
    for lo, hi, types in spans:
        while lo > 0 and (0x80 <= data[lo] < 0xC0 or _ascii_alnum(data[lo - 1])):
            lo -= 1
        while hi < len(data) and (0x80 <= data[hi] < 0xC0 or _ascii_alnum(data[hi])):
            hi += 1
        out.append((lo, hi, types))
    return out


def _ascii_alnum(byte: int) -> bool:
    return 48 <= byte <= 57 or 65 <= byte <= 90 or 97 <= byte <= 122
