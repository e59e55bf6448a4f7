"""multipart/form-data (RFC 7578) and multipart/mixed (RFC 2046) bodies into triples.

Each part is walked by its own Content-Type and charset (CSV, JSON, XML, form, text). A file part typed
application/octet-stream or text/plain, or untyped, is typed by its filename's extension (`.csv`, `.json`,
`.xml`…), else sniffed like a bare body of that type (a JavaScript Blob's `filename="blob"`); a `.csv`
typed application/vnd.ms-excel (Windows browsers with Excel) is CSV. A part without filename or type is
a plain form field: one value, unless it is a JSON document.
Key paths: `multipart.<field name>` followed by the part's own path without its root, e.g.
`multipart.upload[*].idNo` (a CSV file field), `multipart.meta.orders[*].idNo` (a JSON field),
`multipart.sfzh` (a plain form field), `multipart[*]…` for unnamed parts (multipart/mixed). A filename
never enters a key path: it is data (`张三身份证.jpg`); only its extension is used, as a type hint. The
field name stands where the bare body's root stood, and like it is no key of the values inside the part
(detectors/keys.segments): a document detects the same in a part as sent alone
(tests/detectors/test_multipart_parts.py).

Records: a part's own records keep their order, numbered after the previous parts'; plain form fields
together are one record, numbered after all of them (the envelope, as for JSON).
"""

from __future__ import annotations

import binascii
import quopri
import re
from dataclasses import dataclass
from urllib.parse import unquote

from detectors.walkers.common import Body, Sink, Walker, WalkPart, decode_text, path_key, rebase

_ENVELOPE = -1
_PARAM = re.compile(r";\s*([A-Za-z0-9_*\-]+)\s*=\s*(\"(?:[^\"\\]|\\.)*\"|[^;]*)")
_BOUNDARY_LINE = re.compile(rb"^\s*--([^\r\n]{1,200}?)[ \t]*\r?\n")
_EXT_TYPES = {
    "csv": "text/csv", "tsv": "text/tab-separated-values", "json": "application/json",
    "jsonl": "application/x-ndjson", "ndjson": "application/x-ndjson", "xml": "application/xml",
    "txt": "text/plain", "log": "text/plain",
}
# Part types that say less than the filename's extension: none, generic, or a browser's guess for a file
# it has no type for (text/plain).
_GENERIC = ("", "application/octet-stream", "binary/octet-stream", "text/plain")
# What browsers send for a .csv file when a spreadsheet program has claimed the extension (Windows with
# Excel installed: application/vnd.ms-excel); the extension wins for a delimited-text name only.
_SPREADSHEET = ("application/vnd.ms-excel", "text/comma-separated-values", "text/x-comma-separated-values")
_DELIMITED = ("text/csv", "text/tab-separated-values")


@dataclass(frozen=True, slots=True)
class Part:
    headers: dict[str, str]     # lower-cased names
    body: bytes


def params(header: str) -> dict[str, str]:
    """Parameters of a Content-Type / Content-Disposition value; RFC 5987 `name*=` wins over `name=`."""
    out: dict[str, str] = {}
    for key, raw in _PARAM.findall(header):
        value = raw.strip()
        if value.startswith('"') and value.endswith('"') and len(value) >= 2:
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        key = key.lower()
        if key.endswith("*"):
            charset, _, rest = value.partition("'")
            _, _, encoded = rest.partition("'")
            try:
                out[key[:-1]] = unquote(encoded, encoding=charset or "utf-8", errors="replace")
            except LookupError:
                out[key[:-1]] = unquote(encoded)
        elif key not in out:
            out[key] = value
    return out


def split_parts(body: bytes, boundary: bytes | None) -> tuple[list[Part], bool]:
    """(parts, closed): closed is False when the closing delimiter never came (a truncated capture)."""
    if not boundary:
        m = _BOUNDARY_LINE.match(body[:256])
        if not m:
            return [], False
        boundary = m.group(1)
    delimiter = b"--" + boundary
    pos = body.find(delimiter)
    if pos < 0:
        return [], False
    parts: list[Part] = []
    for chunk in body[pos + len(delimiter):].split(b"\n" + delimiter):
        if chunk.startswith(b"--"):
            return parts, True
        # After the delimiter: transport padding, then CRLF; the CR before the next delimiter belongs to it.
        _, nl, rest = chunk.partition(b"\n")
        if not nl:
            continue
        if rest.endswith(b"\r"):
            rest = rest[:-1]
        parts.append(_part(rest))
    return parts, False


def _part(raw: bytes) -> Part:
    if raw.startswith((b"\r\n", b"\n")):
        head, content = b"", raw.split(b"\n", 1)[1]
    else:
        sep = raw.find(b"\r\n\r\n")
        sep_len = 4
        alt = raw.find(b"\n\n")
        if sep < 0 or 0 <= alt < sep:
            sep, sep_len = alt, 2
        head, content = (raw, b"") if sep < 0 else (raw[:sep], raw[sep + sep_len:])
    headers: dict[str, str] = {}
    for line in head.splitlines():
        name, colon, value = line.partition(b":")
        if colon:
            # Header bytes are UTF-8 in practice (RFC 7578 §5.1); GBK filenames from old browsers otherwise.
            headers[name.strip().lower().decode("latin-1")] = decode_text(value.strip(), None, [])
    return Part(headers, content)


def _transfer_decoded(part: Part, sink: Sink) -> bytes:
    encoding = part.headers.get("content-transfer-encoding", "").strip().lower()
    try:
        if encoding == "base64":
            return binascii.a2b_base64(part.body)
        if encoding == "quoted-printable":
            return quopri.decodestring(part.body)
    except (binascii.Error, ValueError):
        sink.anomalies.append(("multipart_bad_transfer_encoding", f"{encoding}, {len(part.body)} bytes"))
    return part.body


def walk_multipart(body: bytes, content_type: str, sink: Sink, nesting: int, walk_into: WalkPart) -> bool:
    """False (nothing emitted) when no part delimiter is found: the caller scans the body as text."""
    boundary = params(content_type).get("boundary")
    parts, closed = split_parts(body, boundary.encode("latin-1", "replace") if boundary else None)
    if not parts:
        sink.anomalies.append(("multipart_no_parts", f"{len(body)} bytes; scanned as text"))
        return False
    if not closed:
        sink.anomalies.append(("multipart_unterminated", f"{len(parts)} parts before the end of the body"))
    start = len(sink.out)
    next_record = 0
    for part in parts:
        if sink.full:
            break
        sink.parts += 1
        if sink.parts > sink.budget.max_parts:
            sink.anomalies.append(("walk_budget_exceeded", f"max_parts={sink.budget.max_parts}"))
            break
        disposition = params(part.headers.get("content-disposition", ""))
        name = disposition.get("name")
        prefix = path_key("multipart", name) if name else "multipart[*]"
        part_type = part.headers.get("content-type", "").strip()
        filename = disposition.get("filename")
        bare = part_type.split(";", 1)[0].strip().lower()
        if (bare in _GENERIC or bare in _SPREADSHEET) and filename and "." in filename:
            hinted = _EXT_TYPES.get(filename.rsplit(".", 1)[1].lower())
            if hinted and (bare in _GENERIC or hinted in _DELIMITED):
                part_type = hinted + "".join(f"; {p}" for p in part_type.split(";")[1:])
        content = _transfer_decoded(part, sink)
        part_start = len(sink.out)
        if not part_type and filename is None:
            # A plain form field: one value, unless it is a JSON document (a common API shape).
            stripped = content.strip()
            if not (stripped[:1] in (b"{", b"[") and walk_into(content, "application/json", sink, nesting + 1)
                    == "json"):
                del sink.out[part_start:]
                text = decode_text(content, None, sink.anomalies)
                if text.strip():
                    sink.emit(prefix, text, _ENVELOPE)
                continue
        else:
            walk_into(content, part_type or None, sink, nesting + 1)
        records = sink.records_since(part_start)
        out = sink.out
        for i in range(part_start, len(out)):
            path, value, rec = out[i]
            out[i] = (rebase(path, prefix), value, rec + next_record)
        next_record += records
    sink.renumber(start, _ENVELOPE, next_record)
    return True


def _walk(body: Body, sink: Sink) -> str | None:
    raw = body.raw
    sniffed = body.generic and raw.lstrip()[:2] == b"--" and b"\n" in raw[:256]
    if not (body.ct.startswith("multipart/") or sniffed):
        return None
    if body.nesting >= sink.budget.max_nesting:
        sink.anomalies.append(("depth_limit", f"multipart nested {body.nesting} deep; part skipped"))
        return "multipart"
    return "multipart" if walk_multipart(raw, body.content_type, sink, body.nesting, body.walk_part) else None


WALKER = Walker("multipart", _walk, raw=True)
