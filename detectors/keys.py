"""Key paths as context: which field types a key hint points at, and which keys are never PI.

Keys are compared case- and separator-insensitively (`idNo`, `id_no`, `ID-NO` are one key). A hint matches
the leaf key exactly; hints of 5+ characters (2+ for Chinese) also match inside a longer key through an
Aho-Corasick automaton (`receiverMobile` → mobile). When the leaf says nothing, its parent is tried
(`$.idCard.number`). Decisions are cached per key path: a body of 1000 records has a few dozen paths.

HL7 v2 paths (`hl7.PID[*].5`, `hl7.OBR[*].31.1`) are matched by field name instead: hints `PID-5`,
`OBR-31.1`. A field without components is also its component 1; a component never falls back to its field
(OBR-31.1 is the diagnosis code, OBR-31.3 only the coding system's id).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import ahocorasick

from detectors.catalog import Catalog

_SEGMENT = re.compile(r"\.([^.\[]+)|\['((?:[^'\\]|\\.)*)'\]")
_FOLD = re.compile(r"[\s_\-]")
_CACHE_LIMIT = 50_000
VALUE = "<value>"                          # a key segment that held a value (detectors/keypath.py)
PLACEHOLDERS = frozenset({"*", VALUE})     # segments that stand for something, not a key
_PART_FIELD = ("multipart.", "multipart['")   # a named multipart part: its field name comes first


def fold_key(key: str) -> str:
    return _FOLD.sub("", key).casefold()


def segments(path: str) -> list[str]:
    """`$.orders[*].receiver.idNo` → ["orders", "receiver", "idNo"]; `form.sfzh` → ["sfzh"]; `text` → [].

    A document in a multipart part (`multipart.file[*].姓名`, detectors/walkers/multipart.py) keeps its field
    name where a bare body has its root: the name of the upload slot (`file`, `idCard`) says nothing about
    the values inside the document, so it is no segment (→ ["姓名"], as for the bare `csv[*].姓名`). A plain
    form field's name is its value's key and stays (`multipart.sfzh` → ["sfzh"])."""
    found = _SEGMENT.findall(path)
    if len(found) > 1 and path.startswith(_PART_FIELD):
        found = found[1:]
    out = []
    for plain, quoted in found:
        seg = plain or quoted
        # `*` and `<value>` (a key that was a value, detectors/keypath.py) say nothing about the value.
        if seg and seg not in PLACEHOLDERS:
            out.append(seg)
    return out


def _substring_eligible(hint: str) -> bool:
    return len(hint) >= 5 or (not hint.isascii() and len(hint) >= 2)


@dataclass(frozen=True, slots=True)
class KeyInfo:
    types: tuple[str, ...]     # field types whose key hints the path carries, highest priority first
    negative: bool             # the leaf is a business identifier (orderNo): shape matches are not PI
    leaf: str                  # folded leaf key ("" for text)
    excluded: frozenset[str] = frozenset()   # types a parent rules out ($.shop.address is not personal)


class KeyIndex:
    def __init__(self, catalog: Catalog) -> None:
        priority = {ft.id: ft.priority for ft in catalog.field_types}
        exact: dict[str, set[str]] = {}
        self._auto = ahocorasick.Automaton()
        partial: dict[str, set[str]] = {}
        for ft in catalog.field_types:
            for hint in ft.key_hints:
                folded = fold_key(hint)
                exact.setdefault(folded, set()).add(ft.id)
                if _substring_eligible(folded):
                    partial.setdefault(folded, set()).add(ft.id)
        for folded, ids in partial.items():
            self._auto.add_word(folded, tuple(ids))
        if partial:
            self._auto.make_automaton()
        self._has_auto = bool(partial)
        self._exact = {k: tuple(sorted(v, key=lambda i: -priority[i])) for k, v in exact.items()}
        self._priority = priority
        self._negative_exact = {fold_key(h) for h in catalog.non_pi_key_hints}
        self._negative_auto = ahocorasick.Automaton()
        neg_partial = [h for h in self._negative_exact if _substring_eligible(h)]
        for h in neg_partial:
            self._negative_auto.add_word(h, h)
        if neg_partial:
            self._negative_auto.make_automaton()
        self._has_neg_auto = bool(neg_partial)
        self._excluded = {ft.id: frozenset(fold_key(h) for h in ft.exclude_parent_hints)
                          for ft in catalog.field_types if ft.exclude_parent_hints}
        self._cache: dict[str, KeyInfo] = {}

    def _types_for(self, folded: str) -> tuple[str, ...]:
        if not folded:
            return ()
        if folded in self._exact:
            return self._exact[folded]
        if not self._has_auto:
            return ()
        found: set[str] = set()
        for _, ids in self._auto.iter(folded):
            found.update(ids)
        return tuple(sorted(found, key=lambda i: -self._priority[i]))

    def _is_negative(self, folded: str) -> bool:
        if folded in self._negative_exact:
            return True
        return self._has_neg_auto and any(True for _ in self._negative_auto.iter(folded))

    def _excluded_by(self, parents: list[str]) -> frozenset[str]:
        stems = {_parent_stem(p) for p in parents}
        return frozenset(t for t, hints in self._excluded.items() if stems & hints)

    def _hl7_info(self, path: str) -> KeyInfo:
        segs = segments(path)
        names = [f"{segs[0]}-{segs[1]}"] if len(segs) >= 2 else []
        if len(segs) == 2:
            names.append(f"{segs[0]}-{segs[1]}.1")
        elif len(segs) == 3:
            names = [f"{segs[0]}-{segs[1]}.{segs[2]}"]
        for name in names:
            folded = fold_key(name)
            if folded in self._exact:
                return KeyInfo(types=self._exact[folded], negative=False, leaf=folded)
        return KeyInfo(types=(), negative=False, leaf=fold_key(names[0]) if names else "")

    def info(self, path: str) -> KeyInfo:
        cached = self._cache.get(path)
        if cached is not None:
            return cached
        if path.startswith("hl7."):
            result = self._hl7_info(path)
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[path] = result
            return result
        folded = [fold_key(s) for s in segments(path)]
        leaf = folded[-1] if folded else ""
        types = self._types_for(leaf)
        negative = False
        if not types:
            negative = self._is_negative(leaf) if leaf else False
            if not negative and len(folded) >= 2:
                types = self._types_for(folded[-2])
        excluded = self._excluded_by(folded[:-1])
        types = tuple(t for t in types if t not in excluded)
        result = KeyInfo(types=types, negative=negative and not types, leaf=leaf, excluded=excluded)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[path] = result
        return result


def _parent_stem(folded: str) -> str:
    """`goodsList`/`goodsInfo`/`goods` all name the same parent."""
    for suffix in ("list", "info", "detail", "details"):
        if folded.endswith(suffix) and len(folded) > len(suffix):
            return folded[: -len(suffix)]
    return folded
