"""HTTP/1.x response framing from the server's byte stream (RFC 9112 §4–§7, RFC 9110 §15).

`HttpResponseStream` turns the reassembled server-to-client direction of a connection into `HttpResponse`s
(agent/protocols/http_body.py): status line and header section (tolerating bare LF, obs-fold and empty
lines between messages), interim 1xx responses skipped, content length by RFC 9112 §6.3 — none for a
response to HEAD and for 1xx/204/304, a tunnel after a 2xx to CONNECT or a 101, Transfer-Encoding chunked
with extensions and trailers, Content-Length, else delimited by the close — and content codings undone.
Requests are paired with responses in order (`expect`, from the client side's request framer), which is
what pipelining needs: a response does not say which request it answers, and one to HEAD carries a
Content-Length but no content. Malformed input is an anomaly and a resync to the next status line, never an
exception; every byte is looked at a bounded number of times whatever the segmentation.

Reusable on purpose: the body budget, decoding and the has-body rule live in http_body.py so that the
HTTP/2 handler of the next issue produces the same `HttpResponse`s for the same inspection.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable

from agent.anomalies import AnomalySink, known_or_shape, shape
from agent.protocols.codings import REGISTERED
from agent.protocols.http_body import (
    BodyBudget,
    HttpResponse,
    PendingResponse,
    ResponseBody,
    add_field_line,
    has_body,
)
from agent.protocols.http_syntax import CHUNK_SIZE, DIGITS, MAX_LINE, tokens

__all__ = ["HttpResponse", "HttpResponseStream"]

MAX_HEADER_BYTES = 65536   # whole header section (or trailer section)
RESYNC_BUDGET = 65536      # bytes skipped looking for a status line before framing gives up
MAX_PENDING = 1024         # requests awaiting their response (pipelining depth) that are remembered
MAX_INTERIM = 64           # 1xx responses before one final response
STATUS_LINE = re.compile(rb"HTTP/(\d)\.(\d)[ \t]+(\d{3})(?:[ \t].*)?")
RESYNC_AT = re.compile(rb"HTTP/1\.\d[ \t]{1,4}\d{3}[ \t\r\n]")   # what a status line starts with

# Parser states.
_STATUS, _HEADERS, _LENGTH, _CHUNK_SIZE_LINE, _CHUNK_DATA, _CHUNK_END, _TRAILERS, _UNTIL_CLOSE, \
    _RESYNC, _TUNNEL, _STOPPED = range(11)
_STATE_NAMES = ("status_line", "headers", "body", "chunk_size", "chunk_data", "chunk_end", "trailers",
                "body_until_close", "resync", "tunnel", "stopped")


class HttpResponseStream:
    """Frames responses out of one connection's server-to-client bytes."""

    # One per inspected inbound HTTP flow: slots and a class-level state table keep it small.
    __slots__ = ("_buf", "_interim", "_msg", "_out", "_pending", "_remaining", "_resync_at", "_scan",
                 "_skipped", "_state", "anomalies", "budget", "flow_id", "max_decompressed_bytes",
                 "responses", "unpaired")

    def __init__(self, max_body_bytes: int, max_decompressed_bytes: int, anomalies: AnomalySink,
                 flow_id: str | None = None) -> None:
        self.budget = BodyBudget(max_body_bytes)        # per stream (= per flow), across its responses
        self.max_decompressed_bytes = max_decompressed_bytes
        self.anomalies = anomalies
        self.flow_id = flow_id
        self.responses = 0            # final responses reported so far
        self.unpaired = 0             # responses framed without knowing their request
        self._pending: deque[tuple[str, str]] = deque()
        self._buf = bytearray()
        self._scan = 0                # where the search for the next LF resumes
        self._state = _STATUS
        self._msg: PendingResponse | None = None
        self._remaining = 0
        self._skipped = 0
        self._resync_at = 0           # 1: the buffer starts with a bad line, look past its first byte
        self._interim = 0
        self._out: list[HttpResponse] = []

    @property
    def done(self) -> bool:
        """True once the connection is a tunnel or framing gave up: later bytes are not HTTP responses."""
        return self._state in (_TUNNEL, _STOPPED)

    @property
    def tunnel(self) -> bool:
        return self._state == _TUNNEL

    # -- public API ------------------------------------------------------------------------------------

    def expect(self, method: str, target: str) -> None:
        """A request went out on this connection; responses come back in request order (RFC 9112 §9.3.2)."""
        if len(self._pending) >= MAX_PENDING:
            self._anomaly("pipeline_too_deep", f"over {MAX_PENDING} requests awaiting a response")
            return
        self._pending.append((method, target))

    def feed(self, data: bytes) -> list[HttpResponse]:
        if self.done or not data:
            return self._take()
        self._buf += data
        while (handler := _HANDLERS.get(self._state)) is not None and handler(self):
            pass
        return self._take()

    def gap(self, n: int) -> None:
        """`n` bytes of the stream are missing at the current position."""
        if self.done or n <= 0:
            return
        state, msg = self._state, self._msg
        self._anomaly("content_gap", f"{n} bytes missing in state {_STATE_NAMES[state]}")
        if state in (_LENGTH, _CHUNK_DATA, _UNTIL_CLOSE) and msg is not None and msg.body is not None:
            msg.body.cut()
            if state == _UNTIL_CLOSE or n < self._remaining:
                self._remaining -= n
                return
            if n == self._remaining:
                self._remaining = 0
                if state == _CHUNK_DATA:
                    self._state = _CHUNK_END
                else:
                    self._finish()
                return
        if msg is not None:
            # Whatever was left of this response (its head, chunk framing, its body) fell into the hole.
            if msg.body is None:
                msg.body = self._body([])
            msg.body.cut()
            self._emit()
        self._buf.clear()
        self._resync(after_line=False)

    def close(self) -> list[HttpResponse]:
        """The connection ended: report what is pending (a body ended by the close, or cut short)."""
        state, msg = self._state, self._msg
        if msg is not None and state == _UNTIL_CLOSE:
            self._emit()
        elif msg is not None:
            self._anomaly("message_incomplete", f"connection closed in state {_STATE_NAMES[state]}, "
                                                f"{self._remaining} body bytes outstanding")
            if msg.body is not None:
                msg.body.cut()
            self._emit()
        elif state == _STATUS and self._buf.strip(b"\r\n"):
            self._anomaly("status_line_incomplete", f"{len(self._buf)} bytes before the close")
        self._buf.clear()
        if state != _TUNNEL:
            self._state = _STOPPED
        return self._take()

    # -- states ----------------------------------------------------------------------------------------

    def _next_line(self, limit: int) -> bytes | None:
        """The next line without its line ending, consumed; None if incomplete. Overlong lines → b"\\0"."""
        end = self._buf.find(b"\n", self._scan)
        if end < 0:
            self._scan = len(self._buf)
            return b"\0" if self._scan > limit else None
        line = bytes(self._buf[:end])
        del self._buf[: end + 1]
        self._scan = 0
        if len(line) > limit:
            return b"\0"
        return line[:-1] if line.endswith(b"\r") else line

    def _on_status(self) -> bool:
        # Empty lines between messages (a body's stray CRLF) are skipped, as clients do.
        buf, skip = self._buf, 0
        while skip < len(buf) and buf[skip] in b"\r\n":    # no lstrip: it would copy the whole buffer
            skip += 1
        if skip:
            del self._buf[:skip]
            self._scan = 0
        if not self._buf:
            return False
        if not b"HTTP/".startswith(bytes(self._buf[:5])):
            self._anomaly("malformed_status_line", "no HTTP-version at the start of a response")
            self._resync(after_line=False)      # what the buffer starts with is no status line
            return True
        line = self._next_line(MAX_LINE)
        if line is None:
            return False
        m = STATUS_LINE.fullmatch(line) if line != b"\0" else None
        if m is None:
            self._anomaly("malformed_status_line",
                          "overlong line" if line == b"\0" else f"line of {len(line)} bytes")
            self._resync(after_line=line == b"\0")   # an overlong line may still be in the buffer
            return True
        if m.group(1) != b"1":
            self._anomaly("unsupported_version", f"HTTP/{m.group(1).decode()}.{m.group(2).decode()}")
            self._stop()
            return False
        self._msg = PendingResponse(int(m.group(3)), f"HTTP/1.{m.group(2).decode()}")
        self._state = _HEADERS
        return True

    def _on_fields(self) -> bool:
        msg = self._msg
        assert msg is not None
        while True:
            line = self._next_line(MAX_LINE)
            if line is None:
                return False
            msg.header_bytes += len(line) + 2
            if line == b"\0" or msg.header_bytes > MAX_HEADER_BYTES:
                self._anomaly("header_section_too_long", f"over {MAX_HEADER_BYTES} bytes")
                if msg.body is not None:
                    msg.body.cut()
                self._emit()
                self._resync(after_line=line == b"\0")
                return True
            if not line:
                break
            add_field_line(msg.fields, line, self._anomaly)
        if self._state == _TRAILERS:
            self._finish()
            return True
        self._start_body(msg)
        return True

    def _start_body(self, msg: PendingResponse) -> None:
        """Content length per RFC 9112 §6.3, for the request this response answers."""
        if 100 <= msg.status < 200 and msg.status != 101:
            # Interim (100 Continue, 103 Early Hints): the final response to the same request follows.
            self._msg = None
            self._interim += 1
            if self._interim > MAX_INTERIM:
                self._anomaly("too_many_interim_responses", f"over {MAX_INTERIM} before a final one")
                self._stop()
            else:
                self._state = _STATUS
            return
        self._interim = 0
        if self._pending:
            msg.method, msg.target = self._pending.popleft()
        else:
            self.unpaired += 1   # its request was not seen (capture began mid-connection, or a gap)
        if msg.status == 101 or (msg.method == "CONNECT" and 200 <= msg.status < 300):
            self._emit()
            self._stop(tunnel=True)   # the rest of the connection is not HTTP/1.x
            return
        if not has_body(msg.method, msg.status):
            self._finish()
            return
        te = tokens(msg.values("transfer-encoding"))
        cl = msg.values("content-length")
        codings = tokens(msg.values("content-encoding"))
        if te:
            if cl:
                self._anomaly("transfer_encoding_and_content_length", "Transfer-Encoding wins")
            msg.body = self._body(codings + [c for c in te if c != "chunked"])
            if te[-1] == "chunked":
                self._state = _CHUNK_SIZE_LINE
            else:
                self._anomaly("bad_transfer_encoding", f"final coding {known_or_shape(te[-1], REGISTERED)} "
                                                       "is not chunked; body ends at close")
                self._state = _UNTIL_CLOSE
            return
        msg.body = self._body(codings)
        if cl:
            lengths = {v.strip() for v in tokens(cl)}
            if len(lengths) != 1 or not DIGITS.fullmatch(next(iter(lengths))):
                described = ", ".join(shape(v) for v in sorted(lengths)[:3])
                self._anomaly("bad_content_length",
                              f"{len(cl)} field(s), {len(lengths)} distinct values: {described}")
                self._state = _UNTIL_CLOSE
                return
            self._remaining = int(next(iter(lengths)))
            if self._remaining == 0:
                self._finish()
            else:
                self._state = _LENGTH
            return
        self._state = _UNTIL_CLOSE    # §6.3 point 8: a response without framing ends at the close

    def _body(self, codings: list[str]) -> ResponseBody:
        return ResponseBody(self.budget, codings, self.max_decompressed_bytes, self._anomaly)

    def _on_body_bytes(self) -> bool:
        n = min(self._remaining, len(self._buf))
        if n:
            self._add_body(self._buf[:n])
            del self._buf[:n]
            self._remaining -= n
        if self._remaining:
            return False
        if self._state == _CHUNK_DATA:
            self._state = _CHUNK_END
        else:
            self._finish()
        return True

    def _on_chunk_size(self) -> bool:
        line = self._next_line(4096)
        if line is None:
            return False
        m = CHUNK_SIZE.fullmatch(line)
        if m is None:
            self._anomaly("bad_chunk_size", f"chunk-size line of {len(line)} bytes")
            msg = self._msg
            assert msg is not None and msg.body is not None
            msg.body.cut()
            self._emit()
            self._resync(after_line=False)   # the bad line is consumed: what follows may be a status line
            return True
        self._remaining = int(m.group(1), 16)
        self._state = _CHUNK_DATA if self._remaining else _TRAILERS
        return True

    def _on_chunk_end(self) -> bool:
        if self._buf[:2] == b"\r\n" or self._buf[:1] == b"\n":
            del self._buf[: 1 if self._buf[:1] == b"\n" else 2]
        elif self._buf == b"\r" or not self._buf:
            return False
        else:
            self._anomaly("bad_chunk_terminator", "chunk data not followed by CRLF")
        self._state = _CHUNK_SIZE_LINE
        return True

    def _on_until_close(self) -> bool:
        if self._buf:
            self._add_body(self._buf)
            self._buf.clear()
        return False

    def _on_resync(self) -> bool:
        """Skip to the next status line, wherever it starts (after a hole it follows the lost body's tail
        directly). When the buffer starts with the line that failed, the search starts past its first
        byte, so that the same line is never taken again."""
        self._scan = 0
        buf = self._buf
        m = RESYNC_AT.search(buf, self._resync_at)
        if m is not None:
            return self._resynced(m.start())
        cut = max(self._resync_at, len(buf) - 16)   # keep a tail that may be a status line's split start
        del buf[:cut]
        self._skipped += cut
        self._resync_at = 0
        if self._skipped > RESYNC_BUDGET:
            self._anomaly("resync_failed", f"no status line in {self._skipped} bytes; framing stops")
            self._stop()
        return False

    def _resynced(self, at: int) -> bool:
        del self._buf[:at]
        self._skipped += at
        if self._skipped > RESYNC_BUDGET:
            self._anomaly("resync_failed", f"no status line in {self._skipped} bytes; framing stops")
            self._stop()
            return False
        self._skipped = 0
        # The responses that fell into the hole answered requests that cannot be told now: pairing restarts.
        self._pending.clear()
        self._state = _STATUS
        return True

    # -- helpers ---------------------------------------------------------------------------------------

    def _add_body(self, data: bytearray) -> None:
        msg = self._msg
        assert msg is not None and msg.body is not None
        if self.budget.exhausted:
            msg.body.truncated = True    # counted past without a copy: the flow's budget is spent
            return
        msg.body.add(bytes(data))

    def _finish(self) -> None:
        self._emit()
        self._state = _STATUS

    def _resync(self, after_line: bool) -> None:
        self._scan = 0
        self._resync_at = 1 if after_line else 0
        self._state = _RESYNC

    def _emit(self) -> None:
        msg = self._msg
        assert msg is not None
        self._msg = None
        self._out.append(msg.response(self.responses, self._anomaly, self.max_decompressed_bytes))
        self.responses += 1

    def _stop(self, tunnel: bool = False) -> None:
        self._state = _TUNNEL if tunnel else _STOPPED
        self._buf.clear()

    def _take(self) -> list[HttpResponse]:
        out, self._out = self._out, []
        return out

    def _anomaly(self, name: str, detail: str) -> None:
        self.anomalies.add("http", name, detail, flow_id=self.flow_id)


# State -> handler (unbound): what feed() runs until a handler says it needs more bytes.
_HANDLERS: dict[int, Callable[[HttpResponseStream], bool]] = {
    _STATUS: HttpResponseStream._on_status, _HEADERS: HttpResponseStream._on_fields,
    _TRAILERS: HttpResponseStream._on_fields, _LENGTH: HttpResponseStream._on_body_bytes,
    _CHUNK_DATA: HttpResponseStream._on_body_bytes, _CHUNK_SIZE_LINE: HttpResponseStream._on_chunk_size,
    _CHUNK_END: HttpResponseStream._on_chunk_end, _UNTIL_CLOSE: HttpResponseStream._on_until_close,
    _RESYNC: HttpResponseStream._on_resync,
}
