"""JSON (RFC 8259) and JSON Lines bodies into triples.

Key paths are JSONPath-like with array indexes folded: `$.orders[*].receiver.idNo`. A record is what one
person's values share: each element of the outermost array of objects (or arrays), each JSON Lines line;
values outside any such array form one more record (the envelope) numbered after them. The walk over the
parsed document is iterative with a depth bound; the parser's own recursion limit turns a 100k-deep
document into an anomaly and a text scan instead of a crash.

A FHIR HumanName (`{"family": "张", "given": ["三"]}`) is one value, family and given joined (`张三`) at the
object's own path (`$.entry[*].resource.name[*]`): split, the parts are no name the recognizers know (one
Han character alone is none), and `name` in the path is the key hint. Its other keys (`use`, `text`,
`prefix`) are walked as usual. A FHIR resource outside any record (`{"resourceType": "Patient", …}` at the
top) is one record.
"""

from __future__ import annotations

import json

from detectors.walkers.common import Body, Sink, Walker, path_key
from detectors.walkers.hl7 import join_name
from detectors.walkers.json_repair import cut_prefix

_ENVELOPE = -1   # placeholder record of values outside every record; renumbered once records are counted
_JSONL_CT = ("ndjson", "jsonl", "json-seq", "jsonlines")


def _scalar(value: object) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return str(value)
    return None


def human_name(node: dict[object, object]) -> str | None:
    """The joined name of a FHIR HumanName-like object (string `family`, string or string-list `given`),
    else None."""
    family, given = node.get("family", ""), node.get("given", [])
    if isinstance(given, str):
        given = [given]
    if not isinstance(family, str) or not isinstance(given, list) \
            or not all(isinstance(g, str) for g in given):
        return None
    if not family.strip() and not any(g.strip() for g in given):
        return None
    return join_name([family, given[0] if given else "", " ".join(given[1:])]) or None


def _is_fhir_resource(node: dict[object, object]) -> bool:
    kind = node.get("resourceType")
    return isinstance(kind, str) and kind[:1].isupper() and kind not in ("Bundle", "Parameters")


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
            if rec is None and _is_fhir_resource(node):
                # One FHIR resource is one record: its name / identifier / telecom arrays are the same
                # patient's, not records of their own (a Bundle's entries are records as usual).
                rec, next_record = next_record, next_record + 1
            name = human_name(node) if ("family" in node or "given" in node) else None
            if name is not None:
                sink.emit(path, name, _ENVELOPE if rec is None else rec)
            children = [(v, path_key(path, str(k)), rec, depth + 1) for k, v in node.items()
                        if name is None or k not in ("family", "given")]
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
    except json.JSONDecodeError as exc:
        doc = _cut_doc(text, exc, sink)
        if doc is None:
            sink.anomalies.append(("json_malformed", f"JSONDecodeError at char {exc.pos}"))
            return False
    except ValueError as exc:
        # Only the class and offset: a JSONDecodeError's message quotes nothing, but other ValueErrors may.
        sink.anomalies.append(("json_malformed", f"{type(exc).__name__} at char {getattr(exc, 'pos', '?')}"))
        return False
    start = len(sink.out)
    records = walk_doc(doc, "$", None, sink)
    sink.renumber(start, _ENVELOPE, records)
    return True


def _cut_doc(text: str, error: json.JSONDecodeError, sink: Sink) -> object | None:
    """The document a cut body (a HAR's truncated text, ICAP's or the wire agent's byte cap) was the start
    of, closed after its last complete value (detectors/walkers/json_repair.py), else None. Its complete
    records keep the indices they have uncut; the value at the cut is dropped, not walked as if whole."""
    cut = cut_prefix(text, error)
    if cut is None:
        return None
    kept, closing = cut
    try:
        doc = json.loads(text[:kept] + closing)
    except (ValueError, RecursionError):
        # Deeper than the parser goes (the uncut part parsed, the closed one nests deeper), or a cut the
        # repair misjudged: scanned as text like any malformed body.
        return None
    # Lengths and offsets only: never the text at the cut.
    sink.anomalies.append(("json_truncated", f"{len(text)} chars, cut at char {error.pos}: walked the first "
                                             f"{kept}, {len(closing)} containers closed"))
    return doc


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


def _walk_jsonl(body: Body, sink: Sink) -> str | None:
    if any(t in body.ct for t in _JSONL_CT) or (body.stripped[:1] in ("{", "[")
                                                and looks_like_jsonl(body.stripped)):
        walk_jsonl(body.stripped, sink)
        return "jsonl"
    return None


def _walk_json(body: Body, sink: Sink) -> str | None:
    if ("json" in body.ct or body.stripped[:1] in ("{", "[")) and walk_json(body.stripped, sink):
        return "json"
    return None


JSONL = Walker("jsonl", _walk_jsonl)
JSON = Walker("json", _walk_json)
