"""Shared pieces of the body walkers: the budget, the result type, the emitting sink, what a walker sees of
a body (`Body`) and the registry's entry (`Walker`), key paths, charsets.

Every walker writes (key_path, value, record_index) triples into one `Sink`, which enforces the
`WalkBudget` (values, characters per value, characters in total) and collects anomalies. Anomaly details
carry lengths, offsets, counts and kinds only: never payload bytes.
"""

from __future__ import annotations

import codecs
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from detectors.keypath import VALUE, value_shaped

log = logging.getLogger("detectors.walkers")

# (key_path, value, record_index)
Triple = tuple[str, str, int]
Anomaly = tuple[str, str]

_CHARSET = re.compile(r"charset\s*=\s*\"?([A-Za-z0-9_.:\-]+)", re.I)
_PLAIN_KEY = re.compile(r"^[^\s.\[\]'\"*]+$")
# A key path's root: `$`, `form`, `text`, `csv`, `xml`, `multipart` (everything before the first . or [).
_ROOT = re.compile(r"^[^.\[]*")
_BOMS = ((b"\xef\xbb\xbf", "utf-8"), (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be"))


@dataclass(frozen=True, slots=True)
class WalkBudget:
    max_depth: int = 64                # nesting of JSON / XML containers; deeper subtrees are skipped
    max_values: int = 200_000          # triples per body
    max_value_chars: int = 1 << 20     # one value is cut here
    max_total_chars: int = 16 << 20    # all values of one body together
    max_parts: int = 256               # multipart parts per body (nested ones included)
    max_nesting: int = 3               # multipart inside multipart


@dataclass(frozen=True, slots=True)
class Walked:
    kind: str               # json | jsonl | form | text | csv | tsv | xml | hl7 | vcf | grpc | multipart |
    #                         binary
    triples: tuple[Triple, ...]
    anomalies: tuple[Anomaly, ...]             # (name, detail): never payload bytes


class Sink:
    """Where walkers put triples; the one place the budget is enforced."""

    __slots__ = ("anomalies", "budget", "chars", "depth_reported", "out", "parts", "stopped")

    def __init__(self, budget: WalkBudget) -> None:
        self.budget = budget
        self.out: list[Triple] = []
        self.anomalies: list[Anomaly] = []
        self.chars = 0
        self.stopped = False
        self.depth_reported = False
        self.parts = 0

    @property
    def full(self) -> bool:
        if not self.stopped and len(self.out) >= self.budget.max_values:
            self._stop(f"max_values={self.budget.max_values}")
        return self.stopped

    def _stop(self, limit: str) -> None:
        self.stopped = True
        # Keep what was walked: a partial walk still finds the PI at the front of a huge export.
        self.anomalies.append(("walk_budget_exceeded", f"{limit}: stopped after {len(self.out)} values"))

    def emit(self, path: str, value: str, record: int) -> bool:
        """Append one triple; False once the budget is spent (the walker should stop)."""
        if self.full:
            return False
        if len(value) > self.budget.max_value_chars:
            self.anomalies.append(("value_truncated", f"{len(value)} chars"))
            value = value[: self.budget.max_value_chars]
        if self.chars + len(value) > self.budget.max_total_chars:
            self._stop(f"max_total_chars={self.budget.max_total_chars}")
            return False
        self.chars += len(value)
        self.out.append((path, value, record))
        return True

    def depth_exceeded(self) -> None:
        if not self.depth_reported:
            self.anomalies.append(("depth_limit", f"subtree below depth {self.budget.max_depth} skipped"))
            self.depth_reported = True

    def renumber(self, start: int, old: int, new: int) -> None:
        """Give the triples from `start` on with record `old` the record `new` (the envelope record)."""
        out = self.out
        for i in range(start, len(out)):
            if out[i][2] == old:
                path, value, _ = out[i]
                out[i] = (path, value, new)

    def records_since(self, start: int) -> int:
        """How many record numbers the triples from `start` on use (max index + 1)."""
        return max((t[2] for t in self.out[start:]), default=-1) + 1


# The dispatcher, walk_into(body, content_type, sink, nesting) -> kind: what a container walker (multipart)
# calls for each part. Handed over in `Body` rather than imported: the dispatcher imports the walkers.
WalkPart = Callable[[bytes, "str | None", Sink, int], str]


@dataclass(frozen=True, slots=True)
class Body:
    """One body (or multipart part) as the walkers see it. `text` and `stripped` are set once it is decoded:
    walkers registered with `raw=True` (multipart, form) see the bytes only."""

    raw: bytes
    content_type: str          # the header as sent ("" when none), parameters included (boundary=…)
    ct: str                    # its media type: lower case, no parameters
    charset: str | None        # the declared (HTTP) charset
    generic: bool              # no type, or one that says nothing (text/plain, application/octet-stream)
    nesting: int               # multipart depth of this body
    walk_part: WalkPart
    text: str = ""             # decoded
    stripped: str = ""         # decoded, leading BOM and white space removed


@dataclass(frozen=True, slots=True)
class Walker:
    """One body format: an entry of the registry (detectors/walkers/dispatch.py), tried in its order.

    `walk` returns the walk's kind (`Walked.kind`), or None when the body is not of its format: then it has
    emitted no triple and the next walker is tried (it may have noted an anomaly: `json_malformed`)."""

    name: str
    walk: Callable[[Body, Sink], str | None]
    raw: bool = False          # walks the bytes before they are decoded (multipart, form)
    # The charset a body of this format names itself (an XML declaration), used when HTTP names none.
    charset: Callable[[Body], str | None] | None = None


@lru_cache(maxsize=65_536)
def path_key(parent: str, key: str) -> str:
    # Cached: an array of records repeats the same (parent, key) pairs thousands of times per body.
    # A key that is itself a value (a map keyed by mobile number, card number or e-mail) must not leak
    # into key paths; keys shaped like names are redacted by the engine, which has the catalog's hints.
    if value_shaped(key):
        return f"{parent}.{VALUE}"
    if _PLAIN_KEY.match(key):
        return f"{parent}.{key}"
    return parent + "['" + key.replace("\\", "\\\\").replace("'", "\\'") + "']"


def rebase(path: str, prefix: str) -> str:
    """`csv[*].idNo` under `multipart.upload` → `multipart.upload[*].idNo`: the inner root is dropped."""
    return prefix + _ROOT.sub("", path, count=1)


def declared_charset(content_type: str | None) -> str | None:
    if not content_type:
        return None
    m = _CHARSET.search(content_type)
    if not m:
        return None
    return normalize_charset(m.group(1))


def normalize_charset(label: str) -> str | None:
    try:
        name = codecs.lookup(label.lower()).name
    except LookupError:
        return None
    # GBK and GB2312 labels are routinely used for GB18030 content; the superset decodes all three.
    return "gb18030" if name in ("gbk", "gb2312", "cp936") else name


def _cut_character(data: bytes, error: UnicodeDecodeError, declared: bool) -> bool:
    """Whether UTF-8 failed only on a character cut at the end of the body (a HAR's, ICAP's or the wire
    agent's cap cuts bytes, not characters): then the body is UTF-8 less that character, not GB18030
    mojibake. Undeclared, the bytes before it must show UTF-8 (a multi-byte character): an ASCII body
    ending in a GBK character whose bytes start a UTF-8 sequence stays GB18030."""
    if error.reason != "unexpected end of data" or error.end != len(data):
        return False
    return declared or not data[:error.start].isascii()


def decode_text(data: bytes, charset: str | None, anomalies: list[Anomaly]) -> str:
    """BOM (UTF-8, UTF-16 LE/BE: it beats the label), else declared charset, else UTF-8, else GB18030;
    never raises."""
    for bom, name in _BOMS:
        if data.startswith(bom):
            return data[len(bom):].decode(name, errors="replace")
    tried = [charset] if charset else []
    tried += [c for c in ("utf-8", "gb18030") if c not in tried]
    for name in tried:
        try:
            text = data.decode(name)
        except UnicodeDecodeError as exc:
            if name != "utf-8" or not _cut_character(data, exc, charset == "utf-8"):
                continue
            text = data[:exc.start].decode(name)
        except LookupError:
            continue
        if charset and name != charset:
            anomalies.append(("charset_mismatch", f"declared {charset}, decoded as {name}"))
        return text
    anomalies.append(("undecodable_body", f"{len(data)} bytes, decoded as utf-8 with replacement"))
    return data.decode("utf-8", errors="replace")
