"""The walker registry and the dispatcher: `walk(body, content_type, budget)` picks a walker for a body.

Adding a format is one module in this package that defines a `Walker` (detectors/walkers/common.py) and one
entry in `WALKERS`. The dispatcher skips binary payloads by their magic number, offers the bytes to the
walkers registered `raw` (gRPC, multipart, form), decodes the text (a BOM, the declared charset, a charset the
format names itself, else UTF-8, else GB18030), drops what is binary after all, and offers the text to the
other walkers in registry order; the first that returns a kind has walked the body. Text no walker takes is
walked as plain text. The order is the sniffing order: line formats with a signature of their own (VCF,
HL7 v2) before JSON Lines before JSON, XML, and a CSV table sniffed from untyped text last.
"""

from __future__ import annotations

import dataclasses

from detectors.walkers.binary import base64_blob, binary_signature, looks_binary
from detectors.walkers.common import (
    Body,
    Sink,
    WalkBudget,
    Walked,
    Walker,
    declared_charset,
    decode_text,
    log,
)
from detectors.walkers.grpc import WALKER as GRPC
from detectors.walkers.hl7 import WALKER as HL7
from detectors.walkers.json import JSON, JSONL
from detectors.walkers.multipart import WALKER as MULTIPART
from detectors.walkers.text import CSV, FORM, walk_text
from detectors.walkers.vcf import WALKER as VCF
from detectors.walkers.xml import WALKER as XML

WALKERS: tuple[Walker, ...] = (GRPC, MULTIPART, FORM, VCF, HL7, JSONL, JSON, XML, CSV)

# Content types that say nothing about the format: the body is sniffed.
_GENERIC_CT = ("", "text/plain", "application/octet-stream", "binary/octet-stream", "application/unknown")
_RAW = tuple(w for w in WALKERS if w.raw)
_DECODED = tuple(w for w in WALKERS if not w.raw)
_SELF_NAMED = tuple(w.charset for w in WALKERS if w.charset is not None)


def walk_into(raw: bytes, content_type: str | None, sink: Sink, nesting: int = 0) -> str:
    """Walk one body (or multipart part) into `sink`, records numbered from 0; returns its kind."""
    signature = binary_signature(raw)
    if signature:
        log.debug("binary body (%s, %d bytes) not scanned", signature, len(raw))
        return "binary"
    ct = (content_type or "").split(";", 1)[0].strip().lower()
    body = Body(raw, content_type or "", ct, declared_charset(content_type), ct in _GENERIC_CT, nesting,
                walk_into)
    for walker in _RAW:
        kind = walker.walk(body, sink)
        if kind:
            return kind
    charset = body.charset
    for named in _SELF_NAMED:
        if charset is not None:
            break
        charset = named(body)
    scratch: list[tuple[str, str]] = []
    text = decode_text(raw, charset, scratch)
    if looks_binary(text) or (body.generic and base64_blob(text)):
        log.debug("binary body (%d bytes, by content) not scanned", len(raw))
        return "binary"
    sink.anomalies.extend(scratch)
    body = dataclasses.replace(body, text=text, stripped=text.lstrip("\ufeff \t\r\n"))
    for walker in _DECODED:
        kind = walker.walk(body, sink)
        if kind:
            return kind
    walk_text(text, sink)
    return "text"


def walk(body: bytes, content_type: str | None, budget: WalkBudget | None = None) -> Walked:
    """Split a body into key paths, values and records. Never raises on malformed input."""
    sink = Sink(budget or WalkBudget())
    kind = walk_into(body, content_type, sink)
    return Walked(kind, tuple(sink.out), tuple(sink.anomalies))
