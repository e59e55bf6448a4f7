"""Line-oriented bodies into triples: plain text, application/x-www-form-urlencoded, CSV/TSV (RFC 4180).

- text: one value per non-blank line at `text`, one record per line (a text dump of many people must not
  link them all into one person).
- form: `form.<key>`, the whole form one record. Percent-decoding yields bytes first, then the charset.
- CSV/TSV: the header row gives the keys, each data row is a record: `csv[*].<header>` (TSV too; the
  walk's kind says which). The delimiter is sniffed (`,` tab `;` `|`), quoted fields per RFC 4180. A header
  cell that looks like a value (digits with separators, `@`: detectors/keypath.py) becomes `<value>` so
  that a header-less file leaks nothing into key paths (names in it are redacted by the engine); cells
  beyond the header are `csv[*].*`.
"""

from __future__ import annotations

import csv
import io
import itertools
import re
from typing import Any
from urllib.parse import unquote_to_bytes

from detectors.walkers.common import Anomaly, Body, Sink, Walker, decode_text, path_key

_FORM_CT = "application/x-www-form-urlencoded"
_DELIMITERS = (",", "\t", ";", "|")
_SNIFF_LINES = 20
_HEADER_CELL = re.compile(r"^[^\d@\s][^@]{0,39}$")   # a plausible column name: short, not a value
# Sniffing only (a declared form content type needs no sniff): an urlencoded body is printable ASCII,
# everything else percent-encoded, so raw high bytes mean "not a form" (random binary often has an '=').
_PAIR = rb"[A-Za-z0-9_.\-*\[\]%]+=[\x21-\x25\x27-\x7e]*"
_FORM = re.compile(_PAIR + rb"(?:&" + _PAIR + rb")*&?")


def walk_text(text: str, sink: Sink, root: str = "text") -> None:
    for index, line in enumerate(text.splitlines()):
        if line.strip() and not sink.emit(root, line, index):
            break


def looks_like_form(body: bytes) -> bool:
    stripped = body.strip()
    return b"=" in stripped and _FORM.fullmatch(stripped) is not None


def walk_form(body: bytes, charset: str | None, sink: Sink) -> None:
    pairs: list[tuple[bytes, bytes]] = []
    for part in body.strip().split(b"&"):
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
    for key, value in pairs:
        k = decode_text(key, charset, sink.anomalies)
        v = decode_text(value, charset, sink.anomalies)
        if v and not sink.emit(path_key("form", k), v, 0):
            break


def _rows(text: str, delimiter: str) -> Any:   # the _csv.reader type has no public name
    return csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=False)


def sniff_delimiter(text: str, prefer: str | None = None) -> tuple[str, bool]:
    """(delimiter, consistent): the candidate giving the most columns, consistently over the first lines."""
    sample = "\n".join(itertools.islice(io.StringIO(text[: 1 << 16]), _SNIFF_LINES))
    best, best_cols, best_consistent = prefer or ",", 0, False
    for delim in ((prefer,) if prefer else ()) + _DELIMITERS:
        try:
            widths = [len(r) for r in _rows(sample, delim) if r]
        except csv.Error:
            continue
        if not widths or widths[0] < 2:
            continue
        # The last sampled line may be cut mid-row; judge the complete ones.
        body = widths[1:-1] if len(widths) > 2 else widths[1:]
        consistent = bool(body) and all(w == widths[0] for w in body)
        if (consistent, widths[0]) > (best_consistent, best_cols):
            best, best_cols, best_consistent = delim, widths[0], consistent
    return best, best_consistent


def looks_like_csv(text: str) -> str | None:
    """The delimiter when an untyped text is a table with a header row and at least two data rows."""
    head = list(itertools.islice((ln for ln in io.StringIO(text[: 1 << 16]) if ln.strip()), 4))
    if len(head) < 3:
        return None
    delim, consistent = sniff_delimiter(text)
    if not consistent:
        return None
    try:
        header = next(_rows(head[0], delim))
    except (csv.Error, StopIteration):
        return None
    if all(_HEADER_CELL.match(c.strip()) for c in header):
        return delim
    return None


def _header_keys(header: list[str]) -> list[str]:
    keys = []
    for cell in header:
        cell = cell.strip().lstrip("\ufeff")
        keys.append(path_key("csv[*]", cell) if cell else "csv[*].*")
    return keys


def walk_csv(text: str, sink: Sink, delimiter: str | None = None) -> str:
    """Walk a delimited table; returns the kind ("csv" or "tsv")."""
    if delimiter is None:
        delimiter, _ = sniff_delimiter(text)
    rows = _rows(text, delimiter)
    keys: list[str] | None = None
    record = 0
    try:
        for row in rows:
            if not row or not any(c.strip() for c in row):
                continue
            if keys is None:
                keys = _header_keys(row)
                continue
            for i, value in enumerate(row):
                # Cells beyond the header have no name; they still get scanned.
                if value.strip() and not sink.emit(keys[i] if i < len(keys) else "csv[*].*", value, record):
                    return _kind(delimiter)
            record += 1
    except csv.Error as exc:
        _malformed(sink.anomalies, rows.line_num, exc)
    return _kind(delimiter)


def _malformed(anomalies: list[Anomaly], line: int, exc: Exception) -> None:
    # csv.Error messages name limits and characters, never cell contents; still, only the class goes out.
    anomalies.append(("csv_malformed", f"{type(exc).__name__} at line {line}; rows before it kept"))


def _kind(delimiter: str) -> str:
    return "tsv" if delimiter == "\t" else "csv"


def _walk_form(body: Body, sink: Sink) -> str | None:
    if body.ct == _FORM_CT or (body.generic and looks_like_form(body.raw[: 1 << 20])):
        walk_form(body.raw, body.charset, sink)
        return "form"
    return None


def _walk_table(body: Body, sink: Sink) -> str | None:
    if "csv" in body.ct or "tab-separated" in body.ct:
        return walk_csv(body.text, sink, "\t" if "tab-separated" in body.ct else None)
    if body.generic:
        delimiter = looks_like_csv(body.text)
        if delimiter:
            return walk_csv(body.text, sink, delimiter)
    return None


FORM = Walker("form", _walk_form, raw=True)
CSV = Walker("csv", _walk_table)
