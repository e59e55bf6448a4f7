"""ICAP/1.0 on the wire (RFC 3507): the request head, `Encapsulated`, the encapsulated HTTP header blocks and
the chunked body with `Preview` and `ieof`. Reading only; agent/icap.py decides what to answer.

Everything read is bounded: the ICAP head and the encapsulated header blocks together (`MAX_HEAD_BYTES`),
the number of header fields (`MAX_FIELDS`), a chunk-size line (`MAX_CHUNK_LINE`), and every read waits at
most the idle timeout. A body is never held here: `ChunkReader` hands it on in pieces of at most
`PIECE_BYTES`, so a chunk that announces a terabyte costs no memory. Input that breaks the protocol raises
`IcapError` with the ICAP status to answer and a one-line reason that names what is wrong (a header's name,
an offset, a length), never a value the peer sent.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from dataclasses import dataclass

from agent.protocols.http_syntax import parse_request_line

__all__ = ["BODY_KINDS", "ChunkReader", "HttpHead", "IcapError", "IcapRequest", "IcapTimeout", "WireReader",
           "parse_http_head", "read_request"]

MAX_HEAD_BYTES = 65_536       # ICAP head + encapsulated HTTP header blocks of one request
MAX_FIELDS = 100              # header fields in the ICAP head, and in each HTTP header block
MAX_CHUNK_LINE = 256          # "1f3a; ieof\r\n" and extensions
MAX_TRAILER_LINES = 32
PIECE_BYTES = 65_536          # body bytes handed on at once
READ_BYTES = 65_536

METHODS = ("OPTIONS", "REQMOD", "RESPMOD")
HEADER_KINDS = ("req-hdr", "res-hdr")
BODY_KINDS = ("req-body", "res-body", "null-body", "opt-body")
# RFC 3507 §4.4.1: the encapsulated sections each method may carry, in this order.
_ALLOWED = {
    "REQMOD": (("req-hdr",), ("req-body", "null-body")),
    "RESPMOD": (("req-hdr", "res-hdr"), ("res-body", "null-body")),
    "OPTIONS": ((), ("opt-body", "null-body")),
}
_REQUEST_LINE = re.compile(rb"([A-Z]{1,16}) (\S{1,8000}) ICAP/(\d)\.(\d)")
_FIELD_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,64}")
_ENTRY = re.compile(r"\s*([a-z-]{1,16})\s*=\s*([0-9]{1,9})\s*")
_CHUNK = re.compile(rb"([0-9A-Fa-f]{1,15})[ \t]*((?:;[^\r\n]*)?)")
_STATUS_LINE = re.compile(rb"HTTP/(\d)\.(\d) ([0-9]{3})(?: .*)?")


class IcapError(Exception):
    """The request cannot be served: answer `status` with `reason` (one line, no payload) and close."""

    def __init__(self, status: int, reason: str, anomaly: str = "malformed_request") -> None:
        super().__init__(reason)
        self.status, self.reason, self.anomaly = status, reason, anomaly


class IcapTimeout(IcapError):
    """The peer went silent mid-request (a stalled proxy, a slow-loris)."""

    def __init__(self, what: str) -> None:
        super().__init__(408, f"no data for the idle timeout while reading {what}", "idle_timeout")


class WireReader:
    """Buffered reads off a stream, each bounded in length and in idle time."""

    def __init__(self, reader: asyncio.StreamReader, idle_timeout_s: float) -> None:
        self._reader, self.idle_timeout_s = reader, idle_timeout_s
        self._buf = bytearray()
        self.eof = False
        self.received = 0

    async def _fill(self, what: str, timeout_s: float | None = None) -> bool:
        """More bytes into the buffer; False at the end of the stream."""
        if self.eof:
            return False
        try:
            data = await asyncio.wait_for(self._reader.read(READ_BYTES), timeout_s or self.idle_timeout_s)
        except TimeoutError:
            raise IcapTimeout(what) from None
        if not data:
            self.eof = True
            return False
        self.received += len(data)
        self._buf += data
        return True

    async def wait_request(self, keepalive_s: float) -> bool:
        """Wait for the first byte of the next request; False when the peer closed (or stayed silent for
        `keepalive_s` between requests: then the connection just ends)."""
        if self._buf:
            return True
        try:
            return await self._fill("the next request", keepalive_s)
        except IcapTimeout:
            return False

    async def read_until(self, sep: bytes, max_len: int, what: str, deadline: float | None = None) -> bytes:
        """Bytes up to and including `sep`; IcapError past `max_len`, at the end of the stream or (with
        `deadline`, a monotonic time) when the whole of it takes too long."""
        start = 0
        while True:
            end = self._buf.find(sep, start)
            if end >= 0 and end + len(sep) <= max_len:
                data = bytes(self._buf[: end + len(sep)])
                del self._buf[: end + len(sep)]
                return data
            if len(self._buf) >= max_len or end >= 0:
                raise IcapError(400, f"{what} longer than {max_len} bytes")
            start = max(0, len(self._buf) - len(sep) + 1)
            if deadline is not None and time.monotonic() > deadline:
                raise IcapTimeout(what)
            if not await self._fill(what):
                raise IcapError(400, f"connection closed in {what}")

    async def read_exact(self, n: int, what: str) -> bytes:
        while len(self._buf) < n:
            if not await self._fill(what):
                raise IcapError(400, f"connection closed in {what} ({len(self._buf)} of {n} bytes)")
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    async def read_some(self, n: int, what: str) -> bytes:
        """Between 1 and `n` bytes (n > 0)."""
        if not self._buf and not await self._fill(what):
            raise IcapError(400, f"connection closed in {what}")
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data


@dataclass(frozen=True, slots=True)
class HttpHead:
    """An encapsulated HTTP request or response header block, as sent (`raw`) and parsed."""

    raw: bytes
    start: tuple[str, str, str]             # (method, target, version) or (version, status, "")
    fields: tuple[tuple[str, str], ...]

    def value(self, name: str) -> str | None:
        """The first field called `name` (lower-case), stripped."""
        return next((v.strip() for n, v in self.fields if n.lower() == name), None)

    def values(self, name: str) -> list[str]:
        return [v for n, v in self.fields if n.lower() == name]


@dataclass(frozen=True, slots=True)
class IcapRequest:
    method: str
    uri: str
    fields: tuple[tuple[str, str], ...]
    encapsulated: tuple[tuple[str, int], ...]
    req_hdr: HttpHead | None
    res_hdr: HttpHead | None
    head_bytes: int                          # ICAP head + encapsulated header blocks

    def value(self, name: str) -> str | None:
        return next((v.strip() for n, v in self.fields if n.lower() == name), None)

    @property
    def body_kind(self) -> str:
        return self.encapsulated[-1][0] if self.encapsulated else "null-body"

    @property
    def has_body(self) -> bool:
        return self.body_kind in ("req-body", "res-body", "opt-body")

    @property
    def preview(self) -> int | None:
        text = self.value("preview")
        return int(text) if text is not None else None

    @property
    def allow_204(self) -> bool:
        return any(t.strip() == "204" for v in (n for k, n in self.fields if k.lower() == "allow")
                   for t in v.split(","))

    @property
    def service(self) -> str:
        """The service path of the request URI (`/egresswatch`)."""
        rest = self.uri.split("://", 1)[-1]
        return "/" + rest.split("/", 1)[1].split("?", 1)[0] if "/" in rest else "/"


def _fields(lines: list[bytes], what: str) -> tuple[tuple[str, str], ...]:
    if len(lines) > MAX_FIELDS:
        raise IcapError(400, f"{what} has more than {MAX_FIELDS} header fields")
    out = []
    for line in lines:
        name, colon, value = line.partition(b":")
        if not colon or not _FIELD_NAME.fullmatch(name):
            raise IcapError(400, f"{what} has a malformed header line ({len(line)} bytes)")
        out.append((name.decode("ascii"), value.strip(b" \t").decode("latin-1")))
    return tuple(out)


def _lines(block: bytes) -> list[bytes]:
    return [line.rstrip(b"\r") for line in block.split(b"\n")]


def parse_http_head(raw: bytes, kind: str) -> HttpHead:
    """An encapsulated `req-hdr` or `res-hdr` block (start line, fields, the blank line that ends it)."""
    if not raw.endswith(b"\r\n\r\n") or b"\r\n\r\n" in raw[:-4]:
        raise IcapError(400, f"Encapsulated {kind} block of {len(raw)} bytes does not end at the next offset")
    lines = _lines(raw[:-4])
    start: tuple[str, str, str] | None
    if kind == "req-hdr":
        start = parse_request_line(lines[0])
    else:
        m = _STATUS_LINE.fullmatch(lines[0])
        start = (f"HTTP/{m.group(1).decode()}.{m.group(2).decode()}", m.group(3).decode(), "") if m else None
    if start is None:
        raise IcapError(400, f"Encapsulated {kind} has no valid HTTP start line")
    return HttpHead(raw, start, _fields(lines[1:], f"Encapsulated {kind}"))


def _encapsulated(method: str, text: str | None) -> tuple[tuple[str, int], ...]:
    if text is None:
        if method == "OPTIONS":
            return ()
        raise IcapError(400, f"{method} without an Encapsulated header")
    entries: list[tuple[str, int]] = []
    for part in text.split(","):
        m = _ENTRY.fullmatch(part)
        if m is None:
            raise IcapError(400, "Encapsulated header is malformed")
        entries.append((m.group(1), int(m.group(2))))
    headers, bodies = _ALLOWED[method]
    names = [n for n, _ in entries]
    if names[-1] not in bodies or any(n not in headers for n in names[:-1]) or len(set(names)) != len(names) \
            or names[:-1] != [h for h in headers if h in names[:-1]]:
        raise IcapError(400, f"Encapsulated sections {','.join(names)[:80]} are not valid for {method}")
    offsets = [o for _, o in entries]
    if offsets[0] != 0 or any(b <= a for a, b in itertools.pairwise(offsets)):
        raise IcapError(400, "Encapsulated offsets do not start at 0 and increase")
    if offsets[-1] > MAX_HEAD_BYTES:
        raise IcapError(400, f"Encapsulated header blocks longer than {MAX_HEAD_BYTES} bytes")
    return tuple(entries)


async def read_request(r: WireReader) -> IcapRequest:
    """One ICAP request's head and encapsulated header blocks (the body is the caller's: `ChunkReader`)."""
    deadline = time.monotonic() + r.idle_timeout_s     # a head trickling in byte by byte ends too
    head = await r.read_until(b"\r\n\r\n", MAX_HEAD_BYTES, "the ICAP head", deadline)
    lines = _lines(head[:-4])
    m = _REQUEST_LINE.fullmatch(lines[0])
    if m is None:
        raise IcapError(400, f"malformed ICAP request line ({len(lines[0])} bytes)")
    method, uri = m.group(1).decode(), m.group(2).decode("latin-1")
    if (m.group(3), m.group(4)) != (b"1", b"0"):
        raise IcapError(505, "ICAP version not supported", "unsupported_version")
    if method not in METHODS:
        raise IcapError(405, "method not allowed: OPTIONS, REQMOD and RESPMOD are", "unsupported_method")
    fields = _fields(lines[1:], "ICAP head")
    request = IcapRequest(method, uri, fields, (), None, None, len(head))
    preview = request.value("preview")
    if preview is not None and not (preview.isascii() and preview.isdigit() and len(preview) <= 9):
        raise IcapError(400, "Preview header is not a number")
    encapsulated = _encapsulated(method, request.value("encapsulated"))
    blocks = (await r.read_exact(encapsulated[-1][1], "the encapsulated header blocks")
              if encapsulated else b"")
    if len(head) + len(blocks) > MAX_HEAD_BYTES:
        raise IcapError(400, f"ICAP head and encapsulated header blocks longer than {MAX_HEAD_BYTES} bytes")
    heads: dict[str, HttpHead] = {}
    for (name, start), (_, end) in itertools.pairwise(encapsulated):
        heads[name] = parse_http_head(blocks[start:end], name)
    return IcapRequest(method, uri, fields, encapsulated, heads.get("req-hdr"), heads.get("res-hdr"),
                       len(head) + len(blocks))


class ChunkReader:
    """The chunked body of one ICAP message, in pieces: `await next()` gives body bytes until it gives None
    at a zero-size chunk; `ieof` tells whether that chunk said `; ieof` (RFC 3507 §4.5: the preview held the
    whole body). After a preview's terminator the reader can go on with the rest (`100 Continue`)."""

    def __init__(self, r: WireReader) -> None:
        self._r = r
        self._left = 0             # data bytes of the current chunk not yet handed on
        self.ieof = False
        self.ended = False
        self.wire_bytes = 0        # chunk data bytes read, kept or not

    async def next(self) -> bytes | None:
        if self.ended:
            return None
        if self._left == 0:
            line = await self._r.read_until(b"\r\n", MAX_CHUNK_LINE, "a chunk-size line")
            m = _CHUNK.fullmatch(line[:-2])
            if m is None:
                raise IcapError(400, f"malformed chunk-size line ({len(line)} bytes)")
            size = int(m.group(1), 16)
            if size == 0:
                self.ieof = any(e.strip(b" \t") == b"ieof" for e in m.group(2).split(b";")[1:])
                await self._trailer()
                self.ended = True
                return None
            self._left = size
        data = await self._r.read_some(min(self._left, PIECE_BYTES), "a chunk's data")
        self._left -= len(data)
        self.wire_bytes += len(data)
        if self._left == 0 and await self._r.read_exact(2, "a chunk's end") != b"\r\n":
            raise IcapError(400, "a chunk's data is not followed by CRLF (its size does not match)")
        return data

    async def _trailer(self) -> None:
        for _ in range(MAX_TRAILER_LINES):
            if await self._r.read_until(b"\r\n", MAX_CHUNK_LINE * 16, "the chunked trailer") == b"\r\n":
                return
        raise IcapError(400, f"chunked trailer longer than {MAX_TRAILER_LINES} lines")

    def resume(self) -> None:
        """After `100 Continue`: the rest of the body follows as more chunks."""
        self.ended = False
        self.ieof = False

    async def drain(self) -> int:
        """Read the rest of the body without keeping it; the bytes read."""
        n = 0
        while (piece := await self.next()) is not None:
            n += len(piece)
        return n
