"""Walk request bodies into (key_path, value, record_index) triples.

JSON (objects, arrays, JSON Lines), application/x-www-form-urlencoded, and plain text as the fallback for
anything else, including malformed JSON. Key paths are JSONPath-like with array indexes folded:
`$.orders[*].receiver.idNo`, `form.sfzh`, `text`. A record is what one person's values share: each element
of the outermost array of objects (or arrays), each JSON Lines line, each text line; values outside any
such array form one more record (the envelope) numbered after them.

Charset: the content type's declared charset, else UTF-8, else GB18030 (a superset of GBK and GB2312).
A GBK form is percent-decoded to bytes first, then decoded. The walk is iterative with a budget on depth
and values, so a hostile body cannot exhaust the stack or the heap; hitting a limit is an anomaly.
"""

from __future__ import annotations

import codecs
import json
import re
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

# (key_path, value, record_index)
Triple = tuple[str, str, int]

_JSON_CT = ("json",)  # application/json, application/problem+json, text/json …
_JSONL_CT = ("ndjson", "jsonl", "json-seq", "jsonlines")
_FORM_CT = "application/x-www-form-urlencoded"
_CHARSET = re.compile(r"charset\s*=\s*\"?([A-Za-z0-9_.:\-]+)", re.I)
_PLAIN_KEY = re.compile(r"^[^\s.\[\]'\"*]+$")
# Keys that are themselves values (a map keyed by mobile number or email) must not leak into key paths.
_VALUE_LIKE_KEY = re.compile(r"\d{5}|@")


@dataclass(frozen=True, slots=True)
class WalkBudget:
    max_depth: int = 64
    max_values: int = 200_000
    max_value_chars: int = 1 << 20


@dataclass(frozen=True, slots=True)
class Walked:
    kind: str                                  # json | jsonl | form | text
    triples: tuple[Triple, ...]
    anomalies: tuple[tuple[str, str], ...]     # (name, detail): never payload bytes


def declared_charset(content_type: str | None) -> str | None:
    if not content_type:
        return None
    m = _CHARSET.search(content_type)
    if not m:
        return None
    name = m.group(1).lower()
    try:
        name = codecs.lookup(name).name
    except LookupError:
        return None
    # GBK and GB2312 labels are routinely used for GB18030 content; the superset decodes all three.
    return "gb18030" if name in ("gbk", "gb2312", "cp936") else name


def decode_text(data: bytes, charset: str | None, anomalies: list[tuple[str, str]]) -> str:
    """Declared charset, else UTF-8, else GB18030; never raises."""
    tried = [charset] if charset else []
    tried += [c for c in ("utf-8", "gb18030") if c not in tried]
    for name in tried:
        try:
            text = data.decode(name)
        except (UnicodeDecodeError, LookupError):
            continue
        if name == "utf-8" and text.startswith("\ufeff"):
            text = text[1:]
        if charset and name != charset:
            anomalies.append(("charset_mismatch", f"declared {charset}, decoded as {name}"))
        return text
    anomalies.append(("undecodable_body", f"{len(data)} bytes, decoded as utf-8 with replacement"))
    return data.decode("utf-8", errors="replace")


def path_key(parent: str, key: str) -> str:
    if _VALUE_LIKE_KEY.search(key):
        return parent + ".*"
    if _PLAIN_KEY.match(key):
        return f"{parent}.{key}"
    return parent + "['" + key.replace("\\", "\\\\").replace("'", "\\'") + "']"


def _scalar(value: object) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return str(value)
    return None


class _Walker:
    """Iterative JSON walk; `out` and `anomalies` are shared with the caller."""

    def __init__(self, budget: WalkBudget, out: list[Triple], anomalies: list[tuple[str, str]]) -> None:
        self.budget = budget
        self.out = out
        self.anomalies = anomalies
        self.depth_reported = False

    def full(self) -> bool:
        return len(self.out) >= self.budget.max_values

    def emit(self, path: str, value: str, record: int) -> None:
        if len(value) > self.budget.max_value_chars:
            self.anomalies.append(("value_truncated", f"{len(value)} chars at {path}"))
            value = value[: self.budget.max_value_chars]
        self.out.append((path, value, record))

    def walk(self, doc: object, root: str, record: int | None, next_record: int) -> int:
        """Walk `doc`; record None means "assign records to the outermost array of containers".
        Values outside any record get -1 (the caller renumbers the envelope). Returns next_record."""
        stack: list[tuple[object, str, int | None, int]] = [(doc, root, record, 0)]
        while stack:
            if self.full():
                self.anomalies.append(("value_budget_exhausted", f"stopped after {len(self.out)} values"))
                return next_record
            node, path, rec, depth = stack.pop()
            if depth > self.budget.max_depth:
                if not self.depth_reported:
                    detail = f"subtree below depth {self.budget.max_depth} skipped"
                    self.anomalies.append(("depth_limit", detail))
                    self.depth_reported = True
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
                    self.emit(path, text, -1 if rec is None else rec)
        return next_record


def _renumber_envelope(triples: list[Triple], start: int, records: int) -> None:
    for i in range(start, len(triples)):
        if triples[i][2] == -1:
            path, value, _ = triples[i]
            triples[i] = (path, value, records)


def _walk_json(text: str, budget: WalkBudget, out: list[Triple], anomalies: list[tuple[str, str]]) -> bool:
    try:
        doc = json.loads(text)
    except RecursionError:
        anomalies.append(("json_too_deep", f"{len(text)} chars; scanned as text"))
        return False
    except ValueError as exc:
        anomalies.append(("json_malformed", f"{type(exc).__name__} at char {getattr(exc, 'pos', '?')}"))
        return False
    walker = _Walker(budget, out, anomalies)
    records = walker.walk(doc, "$", None, 0)
    _renumber_envelope(out, 0, records)
    return True


def _walk_jsonl(text: str, budget: WalkBudget, out: list[Triple], anomalies: list[tuple[str, str]]) -> bool:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    walker = _Walker(budget, out, anomalies)
    bad = 0
    for index, line in enumerate(lines):
        if walker.full():
            break
        try:
            doc = json.loads(line)
        except (ValueError, RecursionError):
            bad += 1
            walker.emit("text", line, index)
            continue
        walker.walk(doc, "$", index, 0)
    if bad:
        anomalies.append(("jsonl_malformed_lines", f"{bad} of {len(lines)} lines scanned as text"))
    return True


def _looks_like_jsonl(text: str) -> bool:
    first = text.lstrip()[:1]
    if first not in ("{", "["):
        return False
    lines = [ln for ln in text.splitlines()[:3] if ln.strip()]
    if len(lines) < 2:
        return False
    try:
        for ln in lines:
            json.loads(ln)
    except (ValueError, RecursionError):
        return False
    return True


def _walk_form(body: bytes, charset: str | None, budget: WalkBudget, out: list[Triple],
               anomalies: list[tuple[str, str]]) -> None:
    pairs: list[tuple[bytes, bytes]] = []
    for part in body.split(b"&"):
        if not part:
            continue
        key, _, value = part.partition(b"=")
        # Percent-decode to bytes first: a GBK form's %D5%C5 is one character only after decoding the pair.
        pairs.append((unquote_to_bytes(key.replace(b"+", b" ")), unquote_to_bytes(value.replace(b"+", b" "))))
    if charset is None:
        try:
            b"".join(k + v for k, v in pairs).decode("utf-8")
            charset = "utf-8"
        except UnicodeDecodeError:
            charset = "gb18030"
    walker = _Walker(budget, out, anomalies)
    for key, value in pairs:
        if walker.full():
            anomalies.append(("value_budget_exhausted", f"stopped after {len(out)} values"))
            break
        k = decode_text(key, charset, anomalies)
        v = decode_text(value, charset, anomalies)
        if v:
            walker.emit(path_key("form", k), v, 0)


def _walk_text(text: str, budget: WalkBudget, out: list[Triple], anomalies: list[tuple[str, str]]) -> None:
    walker = _Walker(budget, out, anomalies)
    # One record per line: a text dump of many people must not link them all into one person.
    for index, line in enumerate(text.splitlines()):
        if walker.full():
            anomalies.append(("value_budget_exhausted", f"stopped after {len(out)} values"))
            break
        if line.strip():
            walker.emit("text", line, index)


def walk(body: bytes, content_type: str | None, budget: WalkBudget | None = None) -> Walked:
    """Split a body into key paths, values and records. Never raises on malformed input."""
    budget = budget or WalkBudget()
    anomalies: list[tuple[str, str]] = []
    out: list[Triple] = []
    ct = (content_type or "").split(";", 1)[0].strip().lower()
    charset = declared_charset(content_type)
    if ct == _FORM_CT:
        _walk_form(body, charset, budget, out, anomalies)
        return Walked("form", tuple(out), tuple(anomalies))
    text = decode_text(body, charset, anomalies)
    stripped = text.lstrip()
    if any(t in ct for t in _JSONL_CT) or (stripped[:1] in ("{", "[") and _looks_like_jsonl(text)):
        _walk_jsonl(text, budget, out, anomalies)
        return Walked("jsonl", tuple(out), tuple(anomalies))
    if any(t in ct for t in _JSON_CT) or stripped[:1] in ("{", "["):
        if _walk_json(text, budget, out, anomalies):
            return Walked("json", tuple(out), tuple(anomalies))
        out.clear()
    _walk_text(text, budget, out, anomalies)
    return Walked("text", tuple(out), tuple(anomalies))
