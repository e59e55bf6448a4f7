"""YAML (and so JSON) documents parsed under caps, for input nobody vouches for (DESIGN §9 "Hostile input").

`yaml.safe_load` is safe against code execution, not against cost: a 24 KB "billion laughs" document of
nested aliases is a graph of a few hundred nodes that every consumer (pydantic, `jsonable`, `json.dumps`)
walks as a tree of billions, and a 100k-deep `[[[…]]]` ends in a RecursionError somewhere downstream. So the
loader here is PyYAML's own (libyaml's parser when built, PyYAML's composer and safe constructor) with a
composer that keeps a budget *while composing*, before anything is constructed or expanded:

- nesting depth: collections enclosing a node, counted with what an alias brings along (an alias of a
  10-deep node at depth 25 reaches 35);
- aliases: `*ref` occurrences, merge keys included;
- expanded nodes: every node as if each alias were copied out. A plain document of N bytes cannot hold
  more than N nodes (each needs a byte), so by default an aliased one may not expand beyond that either;
- expanded bytes: the UTF-8 bytes of every key and scalar value, again as if each alias were copied out,
  may not pass `max_bytes` — what a plain document within the size cap can hold. Counting nodes alone let
  one anchored 900 KB scalar (one node) and 99 aliases of it, a 0.9 MB document, become an 85 MB one. An
  alias brings its anchor's bytes as it brings its nodes (a scalar's own; a collection's keys and values,
  aliases inside it included). Only a document where some alias brings bytes can break this cap: a plain
  one whose escapes decode to more bytes than its text (`"\\L"`, 2 bytes of text, is 3 of U+2028) is
  never refused. This cap is the last word: where it is first passed is noted and composing goes on
  (counting only, bounded by the document's size), so a document another cap refuses keeps that refusal;
  the composed node graph is dropped before the constructor sees it;
- recursive aliases (`&a [*a]`) are refused: every consumer would loop on them.

A document over a cap, or one that is not YAML, raises `SafeYamlError` (`status` 413 for size, 422 for the
rest) whose message names the cap and its value — one line, never a traceback.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.events import AliasEvent, CollectionStartEvent, ScalarEvent

log = logging.getLogger(__name__)

__all__ = ["FILE_CAPS", "HARD_MAX_DEPTH", "Caps", "SafeYamlError", "load"]

# The composer recurses (3 frames a level) and so do the consumers of the data; whatever a config says,
# depth stays far from Python's recursion limit (1000).
HARD_MAX_DEPTH = 200
MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Caps:
    """What one document may cost. `named` caps are the collector's `limits:` settings and messages name
    them (`max_document_depth 32`); unnamed ones are the built-in limits for files."""
    max_bytes: int
    max_depth: int
    max_aliases: int
    max_nodes: int | None = None      # expanded nodes; None: max_bytes (what a plain document could hold)
    named: bool = True

    @property
    def node_budget(self) -> int:
        return self.max_nodes if self.max_nodes is not None else self.max_bytes

    @property
    def depth(self) -> int:
        return min(self.max_depth, HARD_MAX_DEPTH)

    def name(self, setting: str, value: int, unit: str) -> str:
        return f"{setting} {value}" if self.named else f"the limit for files of {value} {unit}"


# Files (configs, filings and lists given to `validate` and `selfcheck`) come from the operator's own disk:
# generous, but a hostile file still fails in one line instead of a freeze or a traceback.
FILE_CAPS = Caps(max_bytes=16 * MIB, max_depth=64, max_aliases=10_000, named=False)


class SafeYamlError(ValueError):
    """A document refused by a cap (`cap` names it) or not readable as YAML; `str()` is one line."""

    def __init__(self, status: int, message: str, cap: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.cap = cap


def _at(mark: Any, text: str | None = None) -> str:
    """Where the problem is, leading the message (`FILE: line 3, column 7: …` reads as a compiler's).
    libyaml marks the end of a document without a final newline on the line after it: say "at the end"
    of the last line instead."""
    if mark is None:
        return ""
    if text is not None:
        lines = text.count("\n") + (0 if text.endswith("\n") else 1)
        if mark.line + 1 > lines:
            return f"line {max(lines, 1)}, at the end: "
    return f"line {mark.line + 1}, column {mark.column + 1}: "


class _BudgetComposer(Composer):
    """PyYAML's composer, counting before it builds: refuses the first event that breaks a cap."""

    def _start_budget(self, caps: Caps) -> None:
        Composer.__init__(self)
        self._caps = caps
        self._aliases = 0
        self._nodes = 0
        self._bytes = 0           # UTF-8 bytes of keys and scalar values, aliases expanded
        self._aliased_bytes = 0   # of which aliases brought
        self._too_many_bytes: SafeYamlError | None = None   # where max_bytes was first passed
        self._depth = 0           # collections open around the current event
        self._deepest = 0         # deepest level reached inside the node being composed
        # anchor -> (expanded nodes, collection height, expanded bytes)
        self._extent: dict[str, tuple[int, int, int]] = {}

    def _count(self, nodes: int, mark: Any) -> None:
        self._nodes += nodes
        if self._nodes > self._caps.node_budget:
            caps = self._caps
            what = (caps.name("max_nodes", caps.max_nodes, "nodes") if caps.max_nodes is not None
                    else caps.name("max_document_bytes", caps.max_bytes, "bytes"))
            raise SafeYamlError(422, f"{_at(mark)}YAML aliases expand the document to more than "
                                     f"{self._caps.node_budget} nodes (a plain document within {what} holds "
                                     "fewer)", "max_document_aliases")

    def _add_bytes(self, size: int, mark: Any, by_alias: bool) -> None:
        self._bytes += size
        if by_alias:
            self._aliased_bytes += size
        if self._aliased_bytes and self._bytes > self._caps.max_bytes and self._too_many_bytes is None:
            what = self._caps.name("max_document_bytes", self._caps.max_bytes, "bytes")
            self._too_many_bytes = SafeYamlError(
                422, f"{_at(mark)}YAML aliases expand the document beyond {what}: its keys and values would "
                     f"take more than {self._caps.max_bytes} bytes", "max_document_bytes")

    def compose_document(self) -> Any:
        node = Composer.compose_document(self)
        if self._too_many_bytes is not None:
            raise self._too_many_bytes
        return node

    def _reach(self, level: int, mark: Any) -> None:
        self._deepest = max(self._deepest, level)
        if level > self._caps.depth:
            what = self._caps.name("max_document_depth", self._caps.depth, "levels")
            raise SafeYamlError(422, f"{_at(mark)}nesting deeper than {what}", "max_document_depth")

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()  # type: ignore[attr-defined]  # the parser half of the loader has it
        if isinstance(event, AliasEvent):
            self._aliases += 1
            if self._aliases > self._caps.max_aliases:
                what = self._caps.name("max_document_aliases", self._caps.max_aliases, "aliases")
                raise SafeYamlError(422, f"{_at(event.start_mark)}more YAML aliases (*ref) than {what}",
                                    "max_document_aliases")
            anchor = event.anchor or ""     # an alias event always names its anchor
            if anchor in self.anchors and anchor not in self._extent:
                raise SafeYamlError(422, f"{_at(event.start_mark)}YAML alias *{event.anchor} refers to a "
                                         "node that contains it")
            nodes, height, size = self._extent.get(anchor, (0, 0, 0))   # undefined: the composer says so
            self._count(nodes, event.start_mark)
            self._add_bytes(size, event.start_mark, by_alias=True)
            self._reach(self._depth + height, event.start_mark)
            return Composer.compose_node(self, parent, index)
        collection = isinstance(event, CollectionStartEvent)
        before, before_bytes, outer_deepest = self._nodes, self._bytes, self._deepest
        self._count(1, event.start_mark)
        if isinstance(event, ScalarEvent):
            value = event.value
            self._add_bytes(len(value) if value.isascii() else len(value.encode("utf-8", "surrogatepass")),
                            event.start_mark, by_alias=False)
        self._deepest = self._depth
        if collection:
            self._depth += 1
            self._reach(self._depth, event.start_mark)
        try:
            node = Composer.compose_node(self, parent, index)
        finally:
            if collection:
                self._depth -= 1
        if event.anchor is not None:
            self._extent[event.anchor] = (self._nodes - before, self._deepest - self._depth,
                                          self._bytes - before_bytes)
        self._deepest = max(outer_deepest, self._deepest)
        return node


_Base: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)   # libyaml's parser when PyYAML was built with it


class _CappedLoader(_BudgetComposer, _Base):
    """Safe constructor, libyaml (or PyYAML) parser, the budget composer in between."""

    def __init__(self, stream: str, caps: Caps) -> None:
        _Base.__init__(self, stream)  # type: ignore[misc]  # _Base is the concrete loader class
        self._start_budget(caps)


def load(text: str | bytes, caps: Caps) -> Any:
    """Parse one YAML/JSON document under `caps`; raises SafeYamlError (413 size, 422 anything else)."""
    size = len(text.encode("utf-8")) if isinstance(text, str) else len(text)
    if size > caps.max_bytes:
        what = caps.name("max_document_bytes", caps.max_bytes, "bytes")
        raise SafeYamlError(413, f"{size} bytes is more than {what}", "max_document_bytes")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise SafeYamlError(422, f"not UTF-8 text (byte {e.start})") from None
    loader = _CappedLoader(text, caps)
    try:
        return loader.get_single_data()
    except SafeYamlError:
        raise
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or str(e).strip().splitlines()[0]
        if "maximum nesting depth" in problem:
            # libyaml's own ceiling (1000 open flow collections, met while it scans ahead, so before our
            # composer sees the level past ours): deeper than ours; its column would only confuse.
            what = caps.name("max_document_depth", caps.depth, "levels")
            line = f"line {mark.line + 1}: " if mark is not None else ""
            raise SafeYamlError(422, f"{line}nesting deeper than {what}",
                                "max_document_depth") from None
        raise SafeYamlError(422, f"{_at(mark, text)}not valid YAML or JSON: {problem}") from None
    except (ValueError, OverflowError, TypeError) as e:
        # Scalars the safe constructor cannot build: an int of 5,000 digits, year 0, a day 2026-02-30.
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SafeYamlError(422, f"a value cannot be read: {first}") from None
    finally:
        loader.dispose()
