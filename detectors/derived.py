"""Hits no single value makes: from several values of one record or body, or from another hit.

- minor_under_14 (PIPL Art. 28 and 31): a resident ID (birth date in characters 7-14, GB 11643-1999) or a date
  of birth giving an age under 14 at the flow's date;
- record pairs: sibling keys of one JSON object that are one value together (lat + lng -> precise_location);
- record markers: a key whose value marks the whole record (FHIR `resourceType: Patient` -> health_medical):
  evidence of the type, not a value of it (detectors/counting.py);
- coded pairs: sibling `system` and `code` keys whose system names a configured code system (FHIR
  `coding: [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "E11.9"}]` -> health_medical `E11.9`);
- containers: hits of some types under a key of another type also make that type (positions under
  `trackPoints` -> location_track; names and numbers under `contacts` -> communications);
- numeric runs: an array of decimals (`[lng, lat]`, a 512-number face feature) is read as one value.

All of it is configured in the catalog entries' `params` (latitude_keys / longitude_keys, marker_values,
coding_systems with code_pattern, contains / min_values). A derived value is hashed like any other;
container values are built from the contained hits' keyed hashes, never from raw values.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

from detectors.catalog import Catalog
from detectors.counting import code_regexes
from detectors.keys import fold_key, segments
from detectors.validators import age_at, birth_date, china_position

MINOR_TYPE = "minor_under_14"
MINOR_AGE = 14
BIRTH_TYPES = frozenset({"resident_id_cn", "date_of_birth"})

Triple = tuple[str, str, int]
_DECIMAL = re.compile(r"-?\d+(?:\.\d+(?:[eE][-+]?\d+)?|[eE][-+]?\d+)")
# Base64 or hex of binary content (images, ciphertext): never scanned for PI as text.
_BLOB = re.compile(r"(?:data:[\w/+.-]+;base64,)?[A-Za-z0-9+/=_\-\r\n]+")
_HEX_BLOB = re.compile(r"[0-9A-Fa-f\s]+")
BLOB_MIN_CHARS = 256


class _Hit(Protocol):
    field_type: str
    key_path: str
    record_index: int
    value_key: int
    confidence: float


@dataclass(frozen=True, slots=True)
class DerivedHit:
    field_type: str
    key_path: str
    record_index: int
    value: str              # what is normalized and hashed (for containers: the contained keyed hashes)
    confidence: float
    masked: str             # already masked: the engine does not mask it again
    evidence: bool = False  # a record marker: the type is present, but this is nobody's value
    code: bool = False      # a coded value (counting: free text beside it in the record is not counted)


def is_encoded_blob(value: str) -> bool:
    """Long base64 (with upper, lower case and digits, as encoded binary has) or hex: binary content."""
    if len(value) < BLOB_MIN_CHARS:
        return False
    if _HEX_BLOB.fullmatch(value):
        return True
    head = value[:512]
    mixed = (any(c.isdigit() for c in head) and any(c.islower() for c in head)
             and any(c.isupper() for c in head))
    return mixed and " " not in value and _BLOB.fullmatch(value) is not None


def collapse_numeric_runs(triples: Sequence[Triple]) -> list[Triple]:
    """Consecutive decimals of one array in one record become one comma-joined value: `[120.1551, 30.2741]`
    is a position and a 512-number vector a face feature, which no element is alone."""
    out: list[Triple] = []
    run: list[str] = []
    run_key: tuple[str, int] | None = None

    def flush() -> None:
        if run_key is not None and run:
            out.append((run_key[0], ",".join(run), run_key[1]))

    for path, value, record in triples:
        if path.endswith("[*]") and _DECIMAL.fullmatch(value):
            if run_key == (path, record):
                run.append(value)
                continue
            flush()
            run, run_key = [value], (path, record)
            continue
        flush()
        run, run_key = [], None
        out.append((path, value, record))
    flush()
    return out


def is_minor(field_type: str, text: str, at: dt.date) -> bool:
    """True when the birth date `text` carries (a resident ID or date of birth) gives an age under 14."""
    if field_type not in BIRTH_TYPES:
        return False
    born = birth_date(field_type, text)
    return born is not None and born <= at and age_at(born, at) < MINOR_AGE


@lru_cache(maxsize=65_536)
def _split_leaf(path: str) -> tuple[str, str, str]:
    """(parent, leaf, folded leaf) of a key path; "" leaf for a path without one. Cached: the paths of a
    body repeat once per record."""
    parent, dot, leaf = path.rpartition(".")
    return (parent, leaf, fold_key(leaf)) if dot else (path, "", "")


def _folded_set(values: Iterable[Any]) -> frozenset[str]:
    return frozenset(fold_key(str(v)) for v in values)


def _hint_in(folded: str, hints: frozenset[str]) -> bool:
    # Same rule as key hints: exact, or inside a longer key for hints of 5+ characters (2+ for Chinese).
    return folded in hints or any((len(h) >= 5 or (not h.isascii() and len(h) >= 2)) and h in folded
                                  for h in hints)


class Deriver:
    """Record pairs, record markers and containers for one catalog."""

    def __init__(self, catalog: Catalog) -> None:
        self._pairs: list[tuple[str, frozenset[str], frozenset[str], int]] = []
        self._markers: dict[str, tuple[str, frozenset[str]]] = {}
        self._containers: list[tuple[str, frozenset[str], frozenset[str], int]] = []
        codes = code_regexes(catalog)
        # (type, code system substrings, code pattern): FHIR Coding objects of a code system the type knows.
        self._codings: list[tuple[str, tuple[str, ...], re.Pattern[str]]] = [
            (ft.id, tuple(str(s).casefold() for s in ft.params["coding_systems"]), codes[ft.id])
            for ft in catalog.field_types if ft.params.get("coding_systems") and ft.id in codes]
        for ft in catalog.field_types:
            p = ft.params
            if p.get("latitude_keys") and p.get("longitude_keys"):
                self._pairs.append((ft.id, _folded_set(p["latitude_keys"]), _folded_set(p["longitude_keys"]),
                                    int(p.get("min_decimals", 4))))
            for key, values in (p.get("marker_values") or {}).items():
                self._markers[fold_key(str(key))] = (ft.id, frozenset(str(v) for v in values))
            if p.get("contains"):
                self._containers.append((ft.id, frozenset(str(t) for t in p["contains"]),
                                         _folded_set(ft.key_hints), int(p.get("min_values", 1))))

    def record_hits(self, triples: Iterable[Triple]) -> list[DerivedHit]:
        """Pairs of sibling keys (lat & lng of one object) and marker keys, per record."""
        if not self._pairs and not self._markers and not self._codings:
            return []
        out: list[DerivedHit] = []
        # (parent path, record) -> systems, codes in document order (one Coding object each, by zip)
        codings: dict[tuple[str, int], tuple[list[str], list[tuple[str, str]]]] = {}
        # (type, parent path, record) -> latitudes, longitudes in document order
        sides: dict[tuple[int, str, int], tuple[list[tuple[str, str]], list[tuple[str, str]]]] = {}
        for path, value, record in triples:
            parent, leaf, folded = _split_leaf(path)
            if not leaf:
                continue
            marker = self._markers.get(folded)
            if marker is not None and value.strip() in marker[1]:
                out.append(DerivedHit(marker[0], path, record, value.strip(), 1.0, value.strip()[:1] + "***",
                                      evidence=True))
            if self._codings and folded in ("system", "code"):
                entry2 = codings.setdefault((parent, record), ([], []))
                if folded == "system":
                    entry2[0].append(value.strip().casefold())
                else:
                    entry2[1].append((path, value.strip()))
            for i, (_, lats, lngs, _) in enumerate(self._pairs):
                if folded in lats or folded in lngs:
                    entry = sides.setdefault((i, parent, record), ([], []))
                    entry[0 if folded in lats else 1].append((leaf, value.strip()))
        for (i, parent, record), (lats, lngs) in sides.items():
            field_type, _, _, decimals = self._pairs[i]
            for (lat_key, lat), (lng_key, lng) in zip(lats, lngs, strict=False):
                if china_position(lat, lng, decimals) is None:
                    continue
                text = f"{lat},{lng}"
                out.append(DerivedHit(field_type, f"{parent}.{{{lat_key},{lng_key}}}", record, text, 1.0,
                                      f"{lat[:2]}***,{lng[:3]}***"))
        for (_, record), (systems, codes) in codings.items():
            for system, (path, code) in zip(systems, codes, strict=False):
                for field_type, known, pattern in self._codings:
                    if any(k in system for k in known) and pattern.fullmatch(code):
                        out.append(DerivedHit(field_type, path, record, code, 1.0, code[:1] + "***",
                                              code=True))
                        break
        return out

    def container_hits(self, hits: Sequence[_Hit]) -> list[DerivedHit]:
        """Hits of the contained types under an ancestor key of a container type: one hit per container key
        and body once `min_values` distinct values are there (two positions are a track)."""
        out: list[DerivedHit] = []
        for field_type, contained, hints, min_values in self._containers:
            groups: dict[str, list[_Hit]] = {}
            for hit in hits:
                if hit.field_type not in contained:
                    continue
                names = segments(hit.key_path)[:-1]
                for depth, seg in enumerate(names):
                    if _hint_in(fold_key(seg), hints):
                        groups.setdefault("$." + ".".join(names[: depth + 1]), []).append(hit)
                        break
            for prefix, members in groups.items():
                keys = sorted({(h.field_type, h.value_key) for h in members})
                if len(keys) < min_values:
                    continue
                first = min(members, key=lambda h: h.record_index)
                value = ";".join(f"{t}:{k}" for t, k in keys)
                out.append(DerivedHit(field_type, prefix, first.record_index, value,
                                      max(h.confidence for h in members), f"<{len(keys)} values>"))
        return out
