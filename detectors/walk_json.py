"""JSON (RFC 8259) and JSON Lines bodies into triples.

Key paths are JSONPath-like with array indexes folded: `$.orders[*].receiver.idNo`. A record is what one
person's values share: each element of the outermost array of objects (or arrays), each JSON Lines line;
values outside any such array form one more record (the envelope) numbered after them. The walk over the
parsed document is iterative with a depth bound; the parser's own recursion limit turns a 100k-deep
document into an anomaly and a text scan instead of a crash.
"""

from __future__ import annotations

import json

from detectors.walk_common import Sink, path_key

_ENVELOPE = -1   # placeholder record of values outside every record; renumbered once records are counted


def _scalar(value: object) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return str(value)
    return None


def walk_doc(doc: object, root: str, record: int | None, sink: Sink) -> int:
    """Walk a parsed document; record None means "assign records to the outermost array of containers"
    (starting at 0). Values outside any record get _ENVELOPE. Returns the number of records assigned."""
    next_record = 0
    max_depth = sink.budget.max_depth
    stack: list[tuple[object, str, int | None, int]] = [(doc, root, record, 0)]
    while stack:
        if sink.full:
            break
        node, path, rec, depth = stack.pop()
        if depth > max_depth:
            sink.depth_exceeded()
            continue
        if isinstance(node, dict):
            children = [(v, path_key(path, str(k)), rec, depth + 1) for k, v in node.items()]
            stack.extend(reversed(children))
        elif isinstance(node, list):
            item_path = path + "[*]"
            is_records = rec is None and any(isinstance(x, dict | list) for x in node[:8])
            children = []
            for item in node:
                if is_records:
                    children.append((item, item_path, next_record, depth + 1))
                    next_record += 1
                else:
                    children.append((item, item_path, rec, depth + 1))
            stack.extend(reversed(children))
        else:
            text = _scalar(node)
            if text:
                sink.emit(path, text, _ENVELOPE if rec is None else rec)
    return next_record


def walk_json(text: str, sink: Sink) -> bool:
    """False (nothing emitted) when the text is not JSON: the caller scans it as text."""
    try:
        doc = json.loads(text)
    except RecursionError:
        sink.anomalies.append(("json_too_deep", f"{len(text)} chars; scanned as text"))
        return False
    except ValueError as exc:
        # Only the class and offset: a JSONDecodeError's message quotes nothing, but other ValueErrors may.
        sink.anomalies.append(("json_malformed", f"{type(exc).__name__} at char {getattr(exc, 'pos', '?')}"))
        return False
    start = len(sink.out)
    records = walk_doc(doc, "$", None, sink)
    sink.renumber(start, _ENVELOPE, records)
    return True


def walk_jsonl(text: str, sink: Sink) -> None:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    bad = 0
    for index, line in enumerate(lines):
        if sink.full:
            break
        try:
            doc = json.loads(line)
        except (ValueError, RecursionError):
            bad += 1
            sink.emit("text", line, index)
            continue
        walk_doc(doc, "$", index, sink)
    if bad:
        sink.anomalies.append(("jsonl_malformed_lines", f"{bad} of {len(lines)} lines scanned as text"))


def looks_like_jsonl(text: str) -> bool:
    first = text.lstrip()[:1]
    if first not in ("{", "["):
        return False
    lines = []
    for ln in text.splitlines():
        if ln.strip():
            lines.append(ln)
            if len(lines) == 3:
                break
    if len(lines) < 2:
        return False
    try:
        for ln in lines:
            json.loads(ln)
    except (ValueError, RecursionError):
        return False
    return True
