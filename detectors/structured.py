"""Walk request bodies into (key_path, value, record_index) triples: the dispatcher.

`walk(body, content_type, budget)` picks a walker by content type, else by content (when the type is
missing or generic: text/plain, application/octet-stream), and never raises on malformed input:

| body | kind | key paths (indexes folded to [*]) | record |
|---|---|---|---|
| JSON (walk_json) | json | `$.orders[*].receiver.idNo` | element of the outermost array of containers |
| JSON Lines | jsonl | `$.a` | line |
| form-urlencoded (walk_text) | form | `form.sfzh` | the form |
| CSV / TSV, RFC 4180 (walk_text) | csv, tsv | `csv[*].idNo` (header row = keys) | data row |
| XML (walk_xml) | xml | `xml.orders.order[*].idNo` (attributes too) | outermost repeated element |
| multipart, RFC 7578/2046 (walk_multipart) | multipart | `multipart.<field>` + part path sans root | part |
| HL7 v2 ER7 (walk_hl7) | hl7 | `hl7.PID[*].5`, `hl7.OBR[*].31.1` (field.component) | message; each more PID |
| VCF 4.x (walk_vcf) | vcf | `vcf[*].genotype` (`rs1801133:G/A`), `vcf.header` | sample column |
| plain text | text | `text` | line |
| image, archive, PDF, TLS, other binary | binary | none | - |

Values outside every record (a JSON envelope, plain multipart fields) are one more record numbered last.
Charset: a BOM (UTF-8, UTF-16 LE/BE), else the declared charset, else UTF-8, else GB18030 (a superset of
GBK and GB2312). Binary and encrypted payloads are never scanned as text: magic numbers first, then the
share of control and undecodable characters. Every walker is iterative or depth-bounded and writes through
one budgeted sink (`WalkBudget`); a spent budget is a `walk_budget_exceeded` anomaly and keeps what was
walked.
"""

from __future__ import annotations

import re

from detectors.walk_common import (
    Sink,
    Triple,
    WalkBudget,
    Walked,
    declared_charset,
    decode_text,
    log,
    normalize_charset,
    path_key,
)
from detectors.walk_hl7 import looks_like_hl7, walk_hl7
from detectors.walk_json import looks_like_jsonl, walk_json, walk_jsonl
from detectors.walk_multipart import walk_multipart
from detectors.walk_text import looks_like_csv, looks_like_form, walk_csv, walk_form, walk_text
from detectors.walk_vcf import looks_like_vcf, walk_vcf
from detectors.walk_xml import walk_xml, xml_encoding

__all__ = ["Triple", "WalkBudget", "Walked", "declared_charset", "decode_text", "path_key", "walk"]

_JSONL_CT = ("ndjson", "jsonl", "json-seq", "jsonlines")
_FORM_CT = "application/x-www-form-urlencoded"
_GENERIC_CT = ("", "text/plain", "application/octet-stream", "binary/octet-stream", "application/unknown")
_MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (b"\xff\xd8\xff", 0, "jpeg"), (b"\x89PNG\r\n\x1a\n", 0, "png"), (b"GIF87a", 0, "gif"),
    (b"GIF89a", 0, "gif"), (b"WEBP", 8, "webp"), (b"PK\x03\x04", 0, "zip"), (b"PK\x05\x06", 0, "zip"),
    (b"PK\x07\x08", 0, "zip"), (b"\x1f\x8b", 0, "gzip"), (b"7z\xbc\xaf\x27\x1c", 0, "7z"),
    (b"Rar!\x1a\x07", 0, "rar"), (b"%PDF-", 0, "pdf"), (b"1AY&SY", 4, "bzip2"), (b"\xfd7zXZ\x00", 0, "xz"),
    (b"\x28\xb5\x2f\xfd", 0, "zstd"), (b"\x7fELF", 0, "elf"), (b"ftyp", 4, "mp4"),
)
_SAMPLE_CHARS = 4096
# Share of control / replacement characters above which decoded "text" is really binary. Real text has
# almost none; random or compressed bytes give 15-50 % whichever charset decodes them.
_BINARY_SHARE = 0.10
# C0/C1 controls but tab, newlines, form feed and ESC; the replacement character; BMP private use; lone
# surrogates (what undecodable bytes become).
_BAD_CHARS = re.compile("[\x00-\x08\x0e-\x1a\x1c-\x1f\x7f-\x9f\ufffd\ue000-\uf8ff\ud800-\udfff]")
_BASE64_BLOB = re.compile(r"[A-Za-z0-9+/_\-]+={0,2}")
_BASE64_MIN = 1024


def binary_signature(body: bytes) -> str | None:
    """The kind of a well-known binary or encrypted payload by its first bytes, else None."""
    for magic, offset, kind in _MAGIC:
        if body.startswith(magic, offset):
            if kind == "webp" and not body.startswith(b"RIFF"):
                continue
            return kind
    # TLS record header: content type 20-23, version 3.0-3.4 (SSL 3.0 .. TLS 1.3 legacy field).
    if len(body) >= 5 and 20 <= body[0] <= 23 and body[1] == 3 and body[2] <= 4:
        return "tls"
    return None


def _looks_binary(text: str) -> bool:
    sample = text[:_SAMPLE_CHARS]
    if not sample:
        return False
    bad = len(_BAD_CHARS.findall(sample))
    return bad / len(sample) > _BINARY_SHARE


def _base64_blob(text: str) -> bool:
    """One big base64 blob (an inline file), not text: the recognizers would only find noise in it."""
    compact = "".join(text.split())
    if len(compact) < _BASE64_MIN or not _BASE64_BLOB.fullmatch(compact):
        return False
    # Digits-and-X lists (IDs, phone numbers one per line) are base64-alphabet too: require mixed case and
    # long lines, which such lists never have.
    lines = text.split()
    return (any(c.islower() for c in compact[:4096]) and any(c.isupper() for c in compact[:4096])
            and sum(len(ln) for ln in lines) / len(lines) >= 60)


def walk_into(body: bytes, content_type: str | None, sink: Sink, nesting: int = 0) -> str:
    """Walk one body (or multipart part) into `sink`, records numbered from 0; returns its kind."""
    signature = binary_signature(body)
    if signature:
        log.debug("binary body (%s, %d bytes) not scanned", signature, len(body))
        return "binary"
    ct = (content_type or "").split(";", 1)[0].strip().lower()
    charset = declared_charset(content_type)
    generic = ct in _GENERIC_CT
    if ct.startswith("multipart/") or (generic and body.lstrip()[:2] == b"--" and b"\n" in body[:256]):
        if nesting >= sink.budget.max_nesting:
            sink.anomalies.append(("depth_limit", f"multipart nested {nesting} deep; part skipped"))
            return "multipart"
        if walk_multipart(body, content_type or "", sink, nesting, walk_into):
            return "multipart"
    if ct == _FORM_CT or (generic and looks_like_form(body[: 1 << 20])):
        walk_form(body, charset, sink)
        return "form"
    if charset is None and ("xml" in ct or generic):
        charset = normalize_charset(xml_encoding(body) or "")
    scratch: list[tuple[str, str]] = []
    text = decode_text(body, charset, scratch)
    if _looks_binary(text) or (generic and _base64_blob(text)):
        log.debug("binary body (%d bytes, by content) not scanned", len(body))
        return "binary"
    sink.anomalies.extend(scratch)
    stripped = text.lstrip("\ufeff \t\r\n")
    first = stripped[:1]
    # HL7 v2 and VCF are line formats with their own signature (`MSH|^~\&`, `##fileformat=VCF`), typed or
    # sent as text/plain; read line by line as text they lose which field a value sits in.
    if "json" not in ct and "xml" not in ct:
        if looks_like_vcf(stripped):
            walk_vcf(stripped, sink)
            return "vcf"
        if ("hl7" in ct and "v2" in ct) or looks_like_hl7(stripped):
            walk_hl7(stripped, sink)
            return "hl7"
    if any(t in ct for t in _JSONL_CT) or (first in ("{", "[") and looks_like_jsonl(stripped)):
        walk_jsonl(stripped, sink)
        return "jsonl"
    if ("json" in ct or first in ("{", "[")) and walk_json(stripped, sink):
        return "json"
    if ("xml" in ct or (generic and first == "<")) and walk_xml(stripped, sink):
        return "xml"
    if "csv" in ct or "tab-separated" in ct:
        return walk_csv(text, sink, "\t" if "tab-separated" in ct else None)
    if generic:
        delimiter = looks_like_csv(text)
        if delimiter:
            return walk_csv(text, sink, delimiter)
    walk_text(text, sink)
    return "text"


def walk(body: bytes, content_type: str | None, budget: WalkBudget | None = None) -> Walked:
    """Split a body into key paths, values and records. Never raises on malformed input."""
    sink = Sink(budget or WalkBudget())
    kind = walk_into(body, content_type, sink)
    return Walked(kind, tuple(sink.out), tuple(sink.anomalies))
