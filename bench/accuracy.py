"""Accuracy and speed benchmark: egresswatch's detectors on a labeled corpus, and Presidio's stock engine.

    python bench/accuracy.py                          # ~2000 bodies (bench/corpus.py), table on stdout
    python bench/accuracy.py --bodies 500 --seed 3 --json bench/out/accuracy.json

Scoring is by (body, field_type, normalized value): for each body the set of (type, value_key) the engine
reported is compared with the set expected from the planted labels, where a label's value_key is computed
exactly as the engine computes a hit's —
`subjects.value_key(key, type, subjects.normalize(normalizer, value))` with the type's catalog normalizer.
So a hit is a TP only if its type, its span (as normalized) and the body all agree with a label; a resident
ID reported as a bank card is a FP for bank_card and a FN for resident_id_cn; a span cut short is a FP and
a FN. False positives are explained where possible: the planted hard negative they hit, or the label of
another type (a confusion). Keyed values that were missed are counted by key (a missing key hint shows).

The same bodies, decoded to text (form bodies percent-decoded), go through Presidio's stock AnalyzerEngine:
default recognizer registry, NoOpNlpEngine, language "en", nothing downloaded (tldextract, used by its email
recognizer, is pinned to its bundled suffix-list snapshot). Its results are scored the same way for the
entities with a counterpart (EMAIL_ADDRESS ~ email, PHONE_NUMBER ~ mobile_cn, CREDIT_CARD ~ bank_card,
PERSON ~ person_name, LOCATION ~ postal_address; PERSON and LOCATION need an NER model, so expect none).

Speed: both engines over the same bodies, 3 interleaved runs, median wall time, MB/s of body bytes.
Targets (issue 3, item 6): F1 >= 0.99 for checksum-validated types, >= 0.95 for names and addresses in keyed
fields, throughput >= 40x Presidio's stock engine. Types the corpus plants but this build has no recognizer
for are listed, not scored.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote_plus

# bench/ is a folder of scripts, not a package: make the sibling corpus module importable however this
# file is loaded (as a script, or by path from the tests).
sys.path.insert(0, str(Path(__file__).resolve().parent))

import corpus
from corpus import Body, Label

from detectors import subjects
from detectors.engine import Engine, Inspection
from detectors.keys import fold_key, segments
from detectors.walkers import declared_charset, decode_text

log = logging.getLogger("bench.accuracy")

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"
# A fixed key: value keys are comparable across runs; it protects nothing (the corpus is synthetic).
TEST_KEY = b"egresswatch-bench-accuracy-fixed-test-key"
RUNS = 3
# Types whose planted values all carry a check digit (GB 11643, Luhn, GB 32100, ISO 3779, IMEI's Luhn).
# Named here, not read from catalog validator names, which change as the detectors grow.
CHECKSUM_TYPES = ("resident_id_cn", "bank_card", "org_credit_code", "vin", "device_id")
F1_CHECKSUM, F1_KEYED_TEXT, SPEED_RATIO = 0.99, 0.95, 40.0
KEYED_TEXT_TYPES = ("person_name", "postal_address")
# Derived from other values (a resident ID's birth date) or body-level candidates, not planted values:
# counted, never scored.
DERIVED_TYPES = frozenset({"minor_under_14", "important_data"})
PRESIDIO_MAP = {"EMAIL_ADDRESS": "email", "PHONE_NUMBER": "mobile_cn", "CREDIT_CARD": "bank_card",
                "PERSON": "person_name", "LOCATION": "postal_address"}


class HitLike(Protocol):
    """What the scorer needs of a hit: FieldHit has it, and so do the tests' hand-built ones."""

    field_type: str
    value_key: int
    key_path: str


@dataclass(frozen=True, slots=True)
class PseudoHit:
    field_type: str
    value_key: int
    key_path: str = "text"


@dataclass(slots=True)
class Counts:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def support(self) -> int:
        return self.tp + self.fn

    @property
    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None

    @property
    def f1(self) -> float | None:
        p, r = self.precision, self.recall
        if not p or not r:
            return 0.0 if (p is not None or r is not None) else None
        return 2 * p * r / (p + r)

    def add(self, other: Counts) -> None:
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn

    def as_dict(self) -> dict[str, Any]:
        return {"support": self.support, "tp": self.tp, "fp": self.fp, "fn": self.fn,
                "precision": _round(self.precision), "recall": _round(self.recall), "f1": _round(self.f1)}


@dataclass
class Scores:
    by_type: dict[str, Counts] = field(default_factory=dict)
    # Per type, labels planted under a key naming the type (and hits reported under such keys).
    keyed: dict[str, Counts] = field(default_factory=dict)
    # Per type and placement (keyed / generic / text): TP and FN only, for recall by placement.
    by_where: dict[tuple[str, str], Counts] = field(default_factory=dict)
    by_format: dict[str, Counts] = field(default_factory=dict)
    negatives_planted: Counter[str] = field(default_factory=Counter)
    negatives_hit: Counter[tuple[str, str]] = field(default_factory=Counter)   # (kind, reported type)
    confusions: Counter[tuple[str, str]] = field(default_factory=Counter)      # (label type, reported type)
    unexplained_fp: Counter[str] = field(default_factory=Counter)
    missed_keys: Counter[tuple[str, str]] = field(default_factory=Counter)     # (type, key) of keyed FNs
    ignored_hits: Counter[str] = field(default_factory=Counter)
    substring_searches: int = 0

    def micro(self, types: Iterable[str]) -> Counts:
        total = Counts()
        for t in types:
            total.add(self.by_type.get(t, Counts()))
        return total


# ---------------------------------------------------------------------------------------------- scoring

class LabelKeys:
    """Value keys of planted values, computed as the engine computes a hit's."""

    def __init__(self, subject_key: bytes, normalizers: Mapping[str, str]) -> None:
        self.key = subject_key
        self.normalizers = normalizers

    def of(self, field_type: str, value: str) -> int:
        normalized = subjects.normalize(self.normalizers.get(field_type, "plain"), value)
        return subjects.value_key(self.key, field_type, normalized)


def _leaf(key_path: str) -> str:
    segs = segments(key_path)
    return fold_key(segs[-1]) if segs else ""


_TYPE_KEYS = {t: frozenset(fold_key(k) for keys in styles.values() for k in keys)
              for t, styles in corpus.KEYS.items()}


def score_body(body: Body, hits: Sequence[HitLike], keys: LabelKeys, scores: Scores,
               types: frozenset[str] | None = None) -> None:
    """Add one body's TP/FP/FN to `scores`. `types` limits scoring to those types (labels and hits alike);
    None scores every type except the derived ones."""

    def wanted(t: str) -> bool:
        return t not in DERIVED_TYPES and (types is None or t in types)

    expected: dict[tuple[str, int], Label] = {}
    for label in body.labels:
        if wanted(label.field_type):
            expected.setdefault((label.field_type, keys.of(label.field_type, label.value)), label)
    reported: dict[tuple[str, int], HitLike] = {}
    for hit in hits:
        if not wanted(hit.field_type):
            scores.ignored_hits[hit.field_type] += 1
            continue
        reported.setdefault((hit.field_type, hit.value_key), hit)
    fmt = scores.by_format.setdefault(body.fmt, Counts())
    for kind in (n.kind for n in body.negatives):
        scores.negatives_planted[kind] += 1

    for ident, label in expected.items():
        t = label.field_type
        found = ident in reported
        for bucket in (scores.by_type.setdefault(t, Counts()), fmt,
                       scores.by_where.setdefault((t, label.where), Counts())):
            if found:
                bucket.tp += 1
            else:
                bucket.fn += 1
        if label.where == "keyed":
            keyed = scores.keyed.setdefault(t, Counts())
            if found:
                keyed.tp += 1
            else:
                keyed.fn += 1
                # Which keys lose values: usually a key hint the catalog lacks.
                scores.missed_keys[(t, label.key or "")] += 1

    for ident, hit in reported.items():
        if ident in expected:
            continue
        t = hit.field_type
        scores.by_type.setdefault(t, Counts()).fp += 1
        fmt.fp += 1
        if _leaf(hit.key_path) in _TYPE_KEYS.get(t, ()):
            scores.keyed.setdefault(t, Counts()).fp += 1
        _explain_fp(body, hit, keys, scores)


# Looking for a false positive inside a planted value means hashing its substrings: bounded, so that a
# broken build with thousands of FPs still scores in seconds.
_SUBSTRING_MAX_CHARS = 40
_SUBSTRING_MAX_SEARCHES = 300


def _explain_fp(body: Body, hit: HitLike, keys: LabelKeys, scores: Scores) -> None:
    """Which planted value a false positive was: a hard negative (whole, or a piece of one: "kind (part)"),
    another type's label (a confusion), or neither (a span cut short or run long, or unplanted text)."""
    t = hit.field_type
    for neg in body.negatives:
        if keys.of(t, neg.value) == hit.value_key:
            scores.negatives_hit[(neg.kind, t)] += 1
            return
    for label in body.labels:
        if label.field_type != t and keys.of(t, label.value) == hit.value_key:
            scores.confusions[(label.field_type, t)] += 1
            return
    if scores.substring_searches < _SUBSTRING_MAX_SEARCHES:
        scores.substring_searches += 1
        for neg in body.negatives:
            if len(neg.value) <= _SUBSTRING_MAX_CHARS and _inside(neg.value, t, hit.value_key, keys):
                scores.negatives_hit[(f"{neg.kind} (part)", t)] += 1
                return
    scores.unexplained_fp[t] += 1


def _inside(value: str, field_type: str, value_key: int, keys: LabelKeys) -> bool:
    n = len(value)
    return any(keys.of(field_type, value[i:j]) == value_key
               for i in range(n) for j in range(i + 2, n + 1) if (i, j) != (0, n))


def score(bodies: Sequence[Body], hits_per_body: Sequence[Sequence[HitLike]], keys: LabelKeys,
          types: frozenset[str] | None = None) -> Scores:
    scores = Scores()
    for body, hits in zip(bodies, hits_per_body, strict=True):
        score_body(body, hits, keys, scores, types)
    return scores


# ---------------------------------------------------------------------------------------------- engines

def build_engine() -> Engine:
    return Engine.from_configs(CONFIGS, TEST_KEY)


def detectable_types(engine: Engine) -> frozenset[str]:
    """Types this build can report at all: a pattern in the catalog (keyed or free)."""
    return frozenset(ft.id for ft in engine.catalog.field_types if ft.free_patterns() or ft.keyed_patterns())


def build_presidio() -> Any:
    """Presidio's stock AnalyzerEngine: default registry, no-op NLP engine, English; no network."""
    # Its EmailRecognizer calls tldextract, whose default extractor fetches the public suffix list over
    # HTTP on first use: pin it to the snapshot bundled with tldextract, and keep its disk cache out of it.
    os.environ["TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS"] = ""
    import tldextract.tldextract as tx
    tx.TLD_EXTRACTOR = tx.TLDExtract(suffix_list_urls=(), cache_dir=None, fallback_to_snapshot=True)
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NoOpNlpEngine

    nlp = NoOpNlpEngine(models=[{"lang_code": "en", "model_name": "none"}])
    analyzer = AnalyzerEngine(nlp_engine=nlp, supported_languages=["en"])
    log.info("presidio recognizers: %s", ", ".join(sorted(r.name for r in analyzer.registry.recognizers)))
    return analyzer


def decoded_text(body: Body) -> str:
    """What a text scanner gets of a body: decoded per its charset; a form percent-decoded, key=value kept."""
    charset = declared_charset(body.content_type)
    if body.content_type.startswith("application/x-www-form-urlencoded"):
        raw = body.data.decode("ascii", errors="replace")
        for enc in ([charset] if charset else []) + ["utf-8", "gb18030"]:
            try:
                return unquote_plus(raw, encoding=enc, errors="strict")
            except UnicodeDecodeError:
                continue
        return unquote_plus(raw, errors="replace")
    return decode_text(body.data, charset, [])


@dataclass
class SpeedResult:
    engine: str
    seconds: list[float]
    bytes: int
    # This process's CPU seconds per run: the other engineers' jobs on the shared cores inflate wall time
    # (one run of the same bodies went from 1.8 to 5.7 s), not CPU time.
    cpu_seconds: list[float] = field(default_factory=list)

    @property
    def median_s(self) -> float:
        return statistics.median(self.seconds)

    @property
    def cpu_mb_per_s(self) -> float:
        return self.bytes / 1e6 / statistics.median(self.cpu_seconds) if self.cpu_seconds else 0.0

    @property
    def mb_per_s(self) -> float:
        return self.bytes / 1e6 / self.median_s


def _timed(fn: Callable[[Body], object], bodies: Sequence[Body]) -> tuple[float, float, list[object]]:
    """Wall and CPU seconds of `fn` over all bodies, and its results."""
    out = []
    start, cpu = time.perf_counter(), time.process_time()
    for b in bodies:
        out.append(fn(b))
    return time.perf_counter() - start, time.process_time() - cpu, out


def run_both(engine: Engine, analyzer: Any, bodies: Sequence[Body], runs: int = RUNS
             ) -> tuple[SpeedResult, SpeedResult, list[Inspection], list[list[Any]]]:
    """Both engines over the same bodies, `runs` times, interleaved so a noisy moment on the shared machine
    hurts both; the first run's results are the ones scored. Presidio's timing includes decoding."""
    size = sum(len(b.data) for b in bodies)
    ours, theirs = SpeedResult("egresswatch", [], size), SpeedResult("presidio", [], size)
    # Warm-up outside the clock: first-call costs (regex caches, tldextract's snapshot) are not throughput.
    for b in bodies[:20]:
        engine.inspect(b.data, b.content_type)
        analyzer.analyze(text=decoded_text(b), language="en")
    eg_results: list[Inspection] = []
    pr_results: list[list[Any]] = []
    for i in range(max(1, runs)):
        secs, cpu, res = _timed(lambda b: engine.inspect(b.data, b.content_type), bodies)
        ours.seconds.append(secs)
        ours.cpu_seconds.append(cpu)
        if i == 0:
            eg_results = res   # type: ignore[assignment]
        secs, cpu, res = _timed(lambda b: analyzer.analyze(text=decoded_text(b), language="en"), bodies)
        theirs.seconds.append(secs)
        theirs.cpu_seconds.append(cpu)
        if i == 0:
            pr_results = res   # type: ignore[assignment]
        log.info("run %d: egresswatch %.2f s, presidio %.2f s", i + 1, ours.seconds[-1], theirs.seconds[-1])
    return ours, theirs, eg_results, pr_results


def presidio_pseudo_hits(bodies: Sequence[Body], results: Sequence[Sequence[Any]], keys: LabelKeys,
                         unmapped: Counter[str], entity_totals: Counter[str]) -> list[list[PseudoHit]]:
    out = []
    for body, res in zip(bodies, results, strict=True):
        text = decoded_text(body)
        hits = []
        for r in res:
            entity_totals[r.entity_type] += 1
            t = PRESIDIO_MAP.get(r.entity_type)
            if t is None:
                unmapped[r.entity_type] += 1
                continue
            hits.append(PseudoHit(t, keys.of(t, text[r.start:r.end])))
        out.append(hits)
    return out


# ---------------------------------------------------------------------------------------------- report

def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 4)


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


@dataclass
class Report:
    bodies: int
    seed: int
    corpus_bytes: int
    detectable: list[str]
    not_detectable: dict[str, int]
    ours: Scores
    theirs: Scores
    speed: list[SpeedResult]
    presidio_entities: Counter[str]
    checksum_types: list[str]
    anomalies: Counter[str] = field(default_factory=Counter)

    def targets(self) -> list[tuple[str, str, float | None, bool]]:
        """(target, threshold text, measured, met) per target."""
        out = []
        for t in self.checksum_types:
            f1 = self.ours.by_type.get(t, Counts()).f1
            out.append((f"F1 {t}", f">= {F1_CHECKSUM}", f1, f1 is not None and f1 >= F1_CHECKSUM))
        for t in KEYED_TEXT_TYPES:
            f1 = self.ours.keyed.get(t, Counts()).f1
            out.append((f"F1 {t} (keyed fields)", f">= {F1_KEYED_TEXT}", f1,
                        f1 is not None and f1 >= F1_KEYED_TEXT))
        ours, theirs = self.speed
        ratio = ours.mb_per_s / theirs.mb_per_s if theirs.mb_per_s else None
        out.append(("throughput vs presidio", f">= {SPEED_RATIO:g}x", ratio,
                    ratio is not None and ratio >= SPEED_RATIO))
        return out

    def as_dict(self) -> dict[str, Any]:
        def table(d: Mapping[Any, Counts]) -> dict[str, Any]:
            return {k if isinstance(k, str) else "/".join(k): v.as_dict() for k, v in sorted(d.items())}

        ours = self.ours
        return {
            "bodies": self.bodies, "seed": self.seed, "corpus_bytes": self.corpus_bytes,
            "detectable_types": self.detectable, "planted_without_recognizer": self.not_detectable,
            "egresswatch": {"by_type": table(ours.by_type), "keyed": table(ours.keyed),
                            "by_where": table(ours.by_where), "by_format": table(ours.by_format),
                            "micro": ours.micro(self.detectable_scored()).as_dict(),
                            "negatives_planted": dict(ours.negatives_planted),
                            "negatives_hit": {f"{k}->{t}": n for (k, t), n in ours.negatives_hit.items()},
                            "confusions": {f"{a}->{b}": n for (a, b), n in ours.confusions.items()},
                            "unexplained_fp": dict(ours.unexplained_fp),
                            "missed_keys": {f"{t}@{k}": n for (t, k), n in ours.missed_keys.items()},
                            "ignored_hits": dict(ours.ignored_hits),
                            "anomalies": dict(self.anomalies)},
            "presidio": {"by_type": table(self.theirs.by_type),
                         "entities": dict(self.presidio_entities)},
            "speed": [{"engine": sp.engine, "seconds": [round(x, 3) for x in sp.seconds],
                       "median_s": round(sp.median_s, 3), "mb_per_s": round(sp.mb_per_s, 3),
                       "cpu_seconds": [round(x, 3) for x in sp.cpu_seconds],
                       "cpu_mb_per_s": round(sp.cpu_mb_per_s, 3)}
                      for sp in self.speed],
            "targets": [{"target": n, "threshold": th, "measured": _round(v), "met": ok}
                        for n, th, v, ok in self.targets()],
        }

    def detectable_scored(self) -> list[str]:
        return sorted(set(self.detectable) & set(self.ours.by_type))


def format_report(rep: Report) -> str:
    s = rep.ours
    header = f"{'TP':>7}{'FP':>6}{'FN':>6}{'prec':>8}{'recall':>8}{'F1':>8}"
    lines = [f"corpus: {rep.bodies} bodies, {rep.corpus_bytes / 1e6:.2f} MB, seed {rep.seed}", "",
             "egresswatch (Engine.inspect), scored by (body, type, normalized value)",
             f"{'type':<24}{'support':>8}{header}   recall keyed/generic/text"]
    lines.append("-" * 104)

    def row(name: str, c: Counts, extra: str = "") -> str:
        return (f"{name:<24}{c.support:>8}{c.tp:>7}{c.fp:>6}{c.fn:>6}{_fmt(c.precision):>8}"
                f"{_fmt(c.recall):>8}{_fmt(c.f1):>8}   {extra}")

    for t in rep.detectable_scored():
        where = "/".join(_fmt(s.by_where[(t, w)].recall) if (t, w) in s.by_where else "-"
                         for w in ("keyed", "generic", "text"))
        lines.append(row(t, s.by_type[t], where))
        if t in KEYED_TEXT_TYPES and t in s.keyed:
            lines.append(row(f"  {t.split('_')[-1]} in keyed fields", s.keyed[t]))
    lines.append(row("micro (all scored)", s.micro(rep.detectable_scored())))
    if rep.not_detectable:
        lines.append("planted, no recognizer in this build (not scored): "
                     + ", ".join(f"{t} ({n})" for t, n in sorted(rep.not_detectable.items())))
    if s.ignored_hits:
        lines.append("derived, not scored: " + ", ".join(f"{t} {n}" for t, n in s.ignored_hits.items()))

    lines += ["", "by body format", f"{'format':<24}{'':>8}{header}"]
    for fmt_, c in sorted(s.by_format.items()):
        lines.append(row(fmt_, c).replace(f"{c.support:>8}", f"{'':>8}", 1))

    lines += ["", "hard negatives: planted, reported as PI (as which type)"]
    hit_by_kind: dict[str, Counter[str]] = {}
    for (kind, t), n in s.negatives_hit.items():
        whole, part, _ = kind.partition(" (part)")
        hit_by_kind.setdefault(whole, Counter())[f"{t} (in part)" if part else t] += n
    for kind, n in sorted(s.negatives_planted.items()):
        got = hit_by_kind.get(kind, Counter())
        detail = ", ".join(f"{t} {k}" for t, k in got.most_common())
        lines.append(f"  {kind:<18}{n:>6}{sum(got.values()):>6}  {detail}")
    if s.confusions:
        lines.append("confusions (label type -> reported type): "
                     + ", ".join(f"{a}->{b} {n}" for (a, b), n in s.confusions.most_common()))
    if s.missed_keys:
        lines.append("keyed values missed, by key (top 12): "
                     + ", ".join(f"{t}@{k} {n}" for (t, k), n in s.missed_keys.most_common(12)))
    if s.unexplained_fp:
        lines.append("other FPs (partial spans or unplanted): "
                     + ", ".join(f"{t} {n}" for t, n in s.unexplained_fp.most_common()))
    if rep.anomalies:
        lines.append("engine anomalies: " + ", ".join(f"{k} {n}" for k, n in rep.anomalies.most_common()))

    p = rep.theirs
    lines += ["", "presidio stock AnalyzerEngine (default registry, NoOpNlpEngine, 'en'), same bodies, text",
              f"{'entity ~ type':<24}{'support':>8}{header}"]
    for entity, t in PRESIDIO_MAP.items():
        lines.append(row(f"{entity} ~ {t}"[:24], p.by_type.get(t, Counts()),
                         f"{rep.presidio_entities.get(entity, 0)} results"))
    others = {e: n for e, n in rep.presidio_entities.items() if e not in PRESIDIO_MAP}
    if others:
        lines.append("other entities (no counterpart): "
                     + ", ".join(f"{e} {n}" for e, n in sorted(others.items())))

    ours, theirs = rep.speed
    lines += ["", f"speed over {ours.bytes / 1e6:.2f} MB, median of {len(ours.seconds)} interleaved runs"]
    for sp in rep.speed:
        lines.append(f"  {sp.engine:<12}{sp.median_s:>8.2f} s{sp.mb_per_s:>9.3f} MB/s   wall runs "
                     + ", ".join(f"{x:.2f}" for x in sp.seconds)
                     + f"   (CPU: {sp.cpu_mb_per_s:.3f} MB/s)")
    lines.append(f"  ratio egresswatch/presidio: {ours.mb_per_s / theirs.mb_per_s:.1f}x wall, "
                 f"{ours.cpu_mb_per_s / (theirs.cpu_mb_per_s or 1):.1f}x CPU")
    lines += ["", "targets"]
    for name, th, v, ok in rep.targets():
        shown = "-" if v is None else (f"{v:.1f}x" if name.startswith("throughput") else f"{v:.4f}")
        lines.append(f"  {'PASS' if ok else 'MISS'}  {name:<36}{th:>9}  measured {shown}")
    return "\n".join(lines)


def evaluate(n_bodies: int, seed: int, runs: int = RUNS) -> Report:
    t0 = time.perf_counter()
    bodies = list(corpus.generate(n_bodies, seed))
    log.info("corpus: %d bodies in %.1f s", len(bodies), time.perf_counter() - t0)
    engine = build_engine()
    analyzer = build_presidio()
    keys = LabelKeys(TEST_KEY, {ft.id: ft.normalizer for ft in engine.catalog.field_types})
    ours_speed, theirs_speed, inspections, pr_results = run_both(engine, analyzer, bodies, runs)
    eg_hits = [i.hits for i in inspections]
    anomalies = Counter(name for i in inspections for name, _ in i.anomalies)
    reported = {h.field_type for hits in eg_hits for h in hits}
    detectable = detectable_types(engine) | reported
    planted = Counter(lb.field_type for b in bodies for lb in b.labels)
    not_detectable = {t: n for t, n in planted.items() if t not in detectable}
    ours = score(bodies, eg_hits, keys, frozenset(detectable))
    unmapped: Counter[str] = Counter()
    entities: Counter[str] = Counter()
    theirs = score(bodies, presidio_pseudo_hits(bodies, pr_results, keys, unmapped, entities), keys,
                   frozenset(PRESIDIO_MAP.values()))
    checksum = [t for t in CHECKSUM_TYPES if t in detectable and planted.get(t)]
    return Report(len(bodies), seed, ours_speed.bytes, sorted(detectable), not_detectable, ours, theirs,
                  [ours_speed, theirs_speed], entities, checksum, anomalies)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="egresswatch detector accuracy and speed vs Presidio's stock "
                                            "engine")
    p.add_argument("--bodies", type=int, default=2000)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--runs", type=int, default=RUNS, help="timed runs of each engine; the median is reported")
    p.add_argument("--json", type=Path, default=None, help="write the results as JSON here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # Presidio logs every recognizer it loads and each language it skips: keep the table readable.
    logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)
    start = time.perf_counter()
    rep = evaluate(args.bodies, args.seed, args.runs)
    print(format_report(rep))
    print(f"\n(total {time.perf_counter() - start:.1f} s)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rep.as_dict(), indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
