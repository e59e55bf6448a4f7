"""XML bodies into triples, with defusedxml's protections on the stdlib expat parser.

Elements and attributes both become key segments (`<order idNo="…">` and `<order><idNo>…` both give
`xml.orders.order.idNo`), namespace prefixes dropped (`soap:Body` → `Body`). Siblings sharing a tag are
folded to `tag[*]`; the outermost repeated element that contains elements or attributes makes the records
(`xml.orders.order[*].idNo`, one record per `<order>`), everything else is the envelope record numbered
after them, as for JSON.

Any DTD is refused (no entity declarations, no external entities: a billion-laughs payload stops at its
`<!DOCTYPE`), and the body is then scanned as text, which cannot expand anything. expat parses without
recursion; the tree kept is cut at `max_depth`, and the walk over it is iterative.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import NoReturn
from xml.parsers import expat

from detectors.walkers.common import Body, Sink, Walker, normalize_charset, path_key

_ENVELOPE = -1
_DECL_ENCODING = re.compile(rb"^\s*<\?xml[^>]{0,200}?encoding\s*=\s*[\"']([A-Za-z0-9_.:\-]+)[\"']")


class _Refused(Exception):
    """A DTD or entity declaration: refused before anything is expanded."""


class _Stop(Exception):
    """Too many nodes for the budget: stop parsing, keep the tree so far."""


@dataclass(slots=True)
class _Node:
    tag: str
    attrs: list[tuple[str, str]]
    children: list[_Node] = field(default_factory=list)
    text: list[str] = field(default_factory=list)


def _local(name: str) -> str:
    return name.rpartition(":")[2] or name


def xml_encoding(body: bytes) -> str | None:
    """The encoding named in the XML declaration, used when HTTP declares none."""
    m = _DECL_ENCODING.match(body[:256])
    return m.group(1).decode("ascii") if m else None


def _refuse(*_: object) -> NoReturn:
    raise _Refused


def _parse(text: str, sink: Sink) -> _Node | None:
    max_depth, max_nodes = sink.budget.max_depth, sink.budget.max_values
    root = _Node("", [])
    stack = [root]
    skipped = 0        # open elements below max_depth, not kept
    nodes = 0

    def start(name: str, attrs: dict[str, str]) -> None:
        nonlocal skipped, nodes
        if skipped or len(stack) > max_depth:
            skipped += 1
            sink.depth_exceeded()
            return
        nodes += 1 + len(attrs)
        if nodes > max_nodes:
            raise _Stop
        kept = [(_local(k), v) for k, v in attrs.items() if k != "xmlns" and not k.startswith("xmlns:")]
        node = _Node(_local(name), kept)
        stack[-1].children.append(node)
        stack.append(node)

    def end(_name: str) -> None:
        nonlocal skipped
        if skipped:
            skipped -= 1
        else:
            stack.pop()

    def chars(data: str) -> None:
        if not skipped:
            stack[-1].text.append(data)

    # The declared encoding has been applied already (text is decoded); expat reads our UTF-8 re-encoding.
    parser = expat.ParserCreate("utf-8")
    parser.buffer_text = True
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    parser.StartDoctypeDeclHandler = _refuse
    parser.EntityDeclHandler = _refuse
    parser.UnparsedEntityDeclHandler = _refuse
    parser.ExternalEntityRefHandler = _refuse
    try:
        parser.Parse(text.lstrip("\ufeff").encode("utf-8", errors="replace"), True)
    except _Refused:
        line = parser.CurrentLineNumber
        sink.anomalies.append(("xml_dtd_forbidden", f"DTD at line {line}; scanned as text"))
        return None
    except _Stop:
        detail = f"max_values={max_nodes}: XML cut after {nodes} nodes"
        sink.anomalies.append(("walk_budget_exceeded", detail))
    except expat.ExpatError as exc:
        sink.anomalies.append(("xml_malformed", f"{expat.ErrorString(exc.code)} at line {exc.lineno}, "
                                                f"column {exc.offset}; scanned as text"))
        return None
    except RecursionError:
        sink.anomalies.append(("xml_malformed", f"{len(text)} chars too deep; scanned as text"))
        return None
    return root.children[0] if root.children else None


def walk_xml(text: str, sink: Sink) -> bool:
    """False (nothing emitted) when the text is not acceptable XML: the caller scans it as text."""
    doc = _parse(text, sink)
    if doc is None:
        return False
    start = len(sink.out)
    next_record = 0
    stack: list[tuple[_Node, str, int | None]] = [(doc, path_key("xml", doc.tag), None)]
    while stack and not sink.full:
        node, path, rec = stack.pop()
        record = _ENVELOPE if rec is None else rec
        for name, value in node.attrs:
            if value.strip() and not sink.emit(path_key(path, name), value, record):
                break
        text_value = "".join(node.text).strip()
        if text_value:
            sink.emit(path, text_value, record)
        counts: dict[str, int] = {}
        containers: set[str] = set()
        for child in node.children:
            counts[child.tag] = counts.get(child.tag, 0) + 1
            if child.children or child.attrs:
                containers.add(child.tag)
        children: list[tuple[_Node, str, int | None]] = []
        for child in node.children:
            repeated = counts[child.tag] > 1
            child_path = path_key(path, child.tag) + ("[*]" if repeated else "")
            if rec is None and repeated and child.tag in containers:
                children.append((child, child_path, next_record))
                next_record += 1
            else:
                children.append((child, child_path, rec))
        stack.extend(reversed(children))
    sink.renumber(start, _ENVELOPE, next_record)
    return True


def _charset(body: Body) -> str | None:
    if "xml" in body.ct or body.generic:
        return normalize_charset(xml_encoding(body.raw) or "")
    return None


def _walk(body: Body, sink: Sink) -> str | None:
    if ("xml" in body.ct or (body.generic and body.stripped[:1] == "<")) and walk_xml(body.stripped, sink):
        return "xml"
    return None


WALKER = Walker("xml", _walk, charset=_charset)
