"""Hyperscan pre-filter: which field types could match a value, and where, at tens of MB/s.

Presidio runs at 1-2.5 MB/s (reference/engineering-notes.md); it only sees values this filter flags.
Expressions come from the catalog (`prefilter`, else the free patterns) and are compiled in hyperscan's
prefilter mode, which accepts a superset of what the pattern matches (lookarounds and back-references are
approximated), so the filter may flag too much but never too little for ASCII-digit input.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

import hyperscan

from detectors.catalog import Catalog
from detectors.hscache import compile_block

log = logging.getLogger(__name__)

_FLAGS = (hyperscan.HS_FLAG_PREFILTER | hyperscan.HS_FLAG_UTF8 | hyperscan.HS_FLAG_CASELESS
          | hyperscan.HS_FLAG_DOTALL)
_UNICODE_ESCAPE = re.compile(r"\\u([0-9A-Fa-f]{4})")
_NAMED_GROUP = re.compile(r"\(\?P<\w+>")
_NAMED_BACKREF = re.compile(r"\(\?P=\w+\)")


def to_hyperscan(expr: str) -> bytes:
    """Python `regex` syntax to hyperscan's: \\uXXXX -> \\x{XXXX}; named groups and back-references
    become plain groups and `.*?` (a superset, which is all a pre-filter needs)."""
    expr = _UNICODE_ESCAPE.sub(r"\\x{\1}", expr)
    expr = _NAMED_GROUP.sub("(?:", expr)
    expr = _NAMED_BACKREF.sub(".{0,3}", expr)
    return expr.encode("utf-8")


class Prefilter:
    """`flag(value) -> set of type ids`; `positions(data) -> [(type id, end byte offset)]`."""

    def __init__(self, catalog: Catalog) -> None:
        candidates: list[tuple[str, bytes]] = []
        for spec in catalog.field_types:
            sources: Sequence[str] = spec.prefilter or tuple(p.regex for p in spec.free_patterns())
            candidates += [(spec.id, to_hyperscan(src)) for src in sources]
        always: set[str] = set()
        try:
            single = self._compile([e for _, e in candidates], hyperscan.HS_FLAG_SINGLEMATCH)
        except hyperscan.error:
            # Only now compile one by one (that doubles the start-up cost) to find what hyperscan refuses,
            # so one unsupported expression does not disable the filter.
            kept = []
            for type_id, expr in candidates:
                try:
                    hyperscan.Database().compile(expressions=[expr], flags=[_FLAGS])
                    kept.append((type_id, expr))
                except hyperscan.error:
                    log.warning("prefilter: %s expression not supported by hyperscan; type always scanned",
                                type_id)
                    always.add(type_id)
            candidates = kept
            single = self._compile([e for _, e in candidates], hyperscan.HS_FLAG_SINGLEMATCH)
        self.always: frozenset[str] = frozenset(always)
        self._owners = [type_id for type_id, _ in candidates]
        self._single = single
        self._multi = self._compile([e for _, e in candidates], 0)

    @staticmethod
    def _compile(exprs: list[bytes], extra: int) -> hyperscan.Database | None:
        if not exprs:
            return None
        return compile_block(exprs, [_FLAGS | extra] * len(exprs))

    def flag(self, data: bytes) -> set[str]:
        found: set[str] = set(self.always)
        if self._single is not None:
            owners = self._owners

            def on_match(idx: int, start: int, end: int, flags: int, ctx: object) -> None:
                found.add(owners[idx])

            self._single.scan(data, match_event_handler=on_match)
        return found

    def positions(self, data: bytes) -> list[tuple[str, int]]:
        out: list[tuple[str, int]] = []
        if self._multi is not None:
            owners = self._owners

            def on_match(idx: int, start: int, end: int, flags: int, ctx: object) -> None:
                out.append((owners[idx], end))

            self._multi.scan(data, match_event_handler=on_match)
        return out
