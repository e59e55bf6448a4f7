"""gRPC request bodies (grpc.io, doc/PROTOCOL-HTTP2.md): length-prefixed messages walked as protobuf wire
format (detectors/walkers/protobuf.py) into key paths by field number.

A body is a sequence of messages, each a 1-byte flag (bit 0: compressed; bit 7: a gRPC-Web trailers frame,
skipped) and a 4-byte big-endian length. A compressed message is gzip or deflate (zlib) as `grpc-encoding`
names it; the walker sees only the body, so the bytes decide (zlib reads both headers); other codings
(snappy, zstd) are an anomaly and the message is skipped. Decoding stops at 4 MiB per message (gRPC's own
default receive limit) and at the budget's character cap for the body.

Key paths: `grpc.` and the field numbers from the message down, `grpc.1.3` for field 3 of the message in
field 1. Repeated fields keep the same path, and so do all messages of a streamed body: a path names a
field of the message type, whichever message and element it came from. Records (what one person's values
share): with several messages in the body each message is one (a client stream sends one item per
message); in a single message each element of the outermost repeated message field is one (`repeated
Person people = 1`), its other values the envelope numbered after them, as the JSON walker does.
"""

from __future__ import annotations

import zlib

from detectors.walkers.common import Body, Sink, Walker, path_key
from detectors.walkers.protobuf import LEN, VARINT, parse_fields, signed, text_of

__all__ = ["WALKER", "grpc_messages"]

CONTENT_TYPES = frozenset({"application/grpc", "application/grpc+proto", "application/grpc-web",
                           "application/grpc-web+proto"})
MAX_MESSAGE = 4 << 20            # decoded bytes of one message (gRPC's default max receive message size)
_PREFIX = 5
_ENVELOPE = -1


def grpc_messages(raw: bytes, sink: Sink) -> list[bytes] | None:
    """The (decompressed) message payloads of a gRPC body; None when it is not length-prefixed at all."""
    if len(raw) < _PREFIX or raw[0] & 0x7E:
        return None
    out: list[bytes] = []
    pos, decoded = 0, 0
    cap = sink.budget.max_total_chars
    while pos + _PREFIX <= len(raw):
        flag, length = raw[pos], int.from_bytes(raw[pos + 1: pos + _PREFIX], "big")
        payload = raw[pos + _PREFIX: pos + _PREFIX + length]
        pos += _PREFIX + length
        if flag & 0x7E:
            sink.anomalies.append(("grpc_malformed", f"bad message flag after {len(out)} messages"))
            return out
        if len(payload) < length:
            sink.anomalies.append(("grpc_truncated", f"message {len(out)}: {len(payload)} of {length} bytes"))
        if flag & 0x80:
            continue     # gRPC-Web trailers (grpc-status, grpc-message): no request data
        if flag & 1:
            inflated = _inflate(payload, min(MAX_MESSAGE, cap - decoded), len(out), sink)
            if inflated is None:
                continue
            payload = inflated
        decoded += len(payload)
        out.append(payload)
        if decoded >= cap:
            sink.anomalies.append(("walk_budget_exceeded", f"max_total_chars={cap}: gRPC messages after "
                                                           f"{len(out)} not decoded"))
            return out
    if pos < len(raw):
        sink.anomalies.append(("grpc_truncated", f"{len(raw) - pos} bytes after {len(out)} messages"))
    return out


def _inflate(payload: bytes, cap: int, index: int, sink: Sink) -> bytes | None:
    d = zlib.decompressobj(47)   # 32 + 15: a gzip or a zlib header, whichever it is
    try:
        out = d.decompress(payload, cap + 1)
    except zlib.error:
        sink.anomalies.append(("grpc_compression_unsupported", f"message {index}: {len(payload)} compressed "
                                                               "bytes neither gzip nor deflate; skipped"))
        return None
    if len(out) > cap:
        sink.anomalies.append(("decompression_limit", f"message {index}: over {cap} bytes decoded; kept the "
                                                      "decoded prefix"))
        out = out[:cap]
    return out


class _Walk:
    """One body's walk: the sink, the next record number, the depth bound."""

    __slots__ = ("next_record", "sink")

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.next_record = 0

    def message(self, buf: bytes, path: str, record: int | None, depth: int, *, top: bool = False) -> None:
        sink = self.sink
        if depth > sink.budget.max_depth:
            sink.depth_exceeded()
            return
        fields = parse_fields(buf, sink.budget.max_values)
        if fields is None and top:
            # A message cut by the body budget, or not protobuf: what parses before the break is kept.
            fields = parse_fields(buf, sink.budget.max_values, partial=True)
            sink.anomalies.append(("protobuf_malformed", f"a {len(buf)}-byte message is not whole; "
                                                         f"{len(fields or [])} fields read"))
        fields = fields or []
        kinds: list[tuple[int, str | bytes | int]] = []    # (number, text | nested message | varint)
        nested_count: dict[int, int] = {}
        for number, wire, value in fields:
            if wire == VARINT and isinstance(value, int):
                kinds.append((number, signed(value)))
            elif wire == LEN and isinstance(value, bytes):
                text = text_of(value)
                if text is not None:
                    kinds.append((number, text))
                elif parse_fields(value, sink.budget.max_values) is not None:
                    kinds.append((number, value))
                    nested_count[number] = nested_count.get(number, 0) + 1
        for number, item in kinds:
            if sink.full:
                return
            child = path_key(path, str(number))
            if isinstance(item, bytes):
                rec = record
                if rec is None and nested_count[number] > 1:
                    rec, self.next_record = self.next_record, self.next_record + 1
                self.message(item, child, rec, depth + 1)
            else:
                sink.emit(child, str(item), _ENVELOPE if record is None else record)


def _walk_grpc(body: Body, sink: Sink) -> str | None:
    if body.ct not in CONTENT_TYPES:
        return None
    messages = grpc_messages(body.raw, sink)
    if messages is None:
        sink.anomalies.append(("grpc_malformed", f"{len(body.raw)} bytes without a gRPC message prefix"))
        return None
    walk = _Walk(sink)
    start = len(sink.out)
    several = len(messages) > 1
    for index, payload in enumerate(messages):
        walk.message(payload, "grpc", index if several else None, 1, top=True)
    if not several:
        sink.renumber(start, _ENVELOPE, walk.next_record)
    return "grpc"


WALKER = Walker("grpc", _walk_grpc, raw=True)
