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

What requests and responses frame alike is agent/protocols/http_framing.py's `MessageFramer`; this module
is the status line, its resync, interim responses and pairing. Reusable on purpose: the body budget,
decoding and the has-body rule live in http_body.py so that the HTTP/2 handler of the next issue produces the
same `HttpResponse`s for the same inspection.
"""

from __future__ import annotations

import re
from collections import deque

from agent.anomalies import AnomalySink
from agent.protocols.http_body import HttpResponse, PendingResponse, has_body
from agent.protocols.http_framing import (
    FRAMING_HANDLERS,
    HEADERS,
    RESYNC,
    START,
    UNTIL_CLOSE,
    MessageFramer,
    StartLine,
)
from agent.protocols.http_syntax import MAX_LINE, tokens

__all__ = ["HttpResponse", "HttpResponseStream"]

MAX_PENDING = 1024         # requests awaiting their response (pipelining depth) that are remembered
MAX_INTERIM = 64           # 1xx responses before one final response
STATUS_LINE = re.compile(rb"HTTP/(\d)\.(\d)[ \t]+(\d{3})(?:[ \t].*)?")
RESYNC_AT = re.compile(rb"HTTP/1\.\d[ \t]{1,4}\d{3}[ \t\r\n]")   # what a status line starts with


class HttpResponseStream(MessageFramer[PendingResponse, HttpResponse]):
    """Frames responses out of one connection's server-to-client bytes."""

    __slots__ = ("_interim", "_pending", "_resync_at", "responses", "unpaired")

    _START = StartLine(state="status_line", name="status line", incomplete="status_line_incomplete")

    def __init__(self, max_body_bytes: int, max_decompressed_bytes: int, anomalies: AnomalySink,
                 flow_id: str | None = None) -> None:
        super().__init__(max_body_bytes, max_decompressed_bytes, anomalies, flow_id)
        self.responses = 0            # final responses reported so far
        self.unpaired = 0             # responses framed without knowing their request
        self._pending: deque[tuple[str, str]] = deque()
        self._resync_at = 0           # 1: the buffer starts with a bad line, look past its first byte
        self._interim = 0

    def expect(self, method: str, target: str) -> None:
        """A request went out on this connection; responses come back in request order (RFC 9112 §9.3.2)."""
        if len(self._pending) >= MAX_PENDING:
            self._anomaly("pipeline_too_deep", f"over {MAX_PENDING} requests awaiting a response")
            return
        self._pending.append((method, target))

    # -- states ----------------------------------------------------------------------------------------

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
        self._state = HEADERS
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
                self._state = START
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
        codings = tokens(msg.values("content-encoding"))
        if not self._frame_body(msg, codings):
            msg.body = self._body(codings)
            self._state = UNTIL_CLOSE    # §6.3 point 8: a response without framing ends at the close

    def _on_resync(self) -> bool:
        """Skip to the next status line, wherever it starts (after a hole it follows the lost body's tail
        directly). When the buffer starts with the line that failed, the search starts past its first
        byte, so that the same line is never taken again."""
        self._scan = 0
        buf = self._buf
        m = RESYNC_AT.search(buf, self._resync_at)
        if m is not None:
            if not self._skip(m.start()):
                return False
            self._skipped = 0
            # The responses that fell into the hole answered requests that cannot be told now: pairing
            # restarts.
            self._pending.clear()
            self._state = START
            return True
        cut = max(self._resync_at, len(buf) - 16)   # keep a tail that may be a status line's split start
        self._resync_at = 0
        self._skip(cut)
        return False

    # -- helpers ---------------------------------------------------------------------------------------

    def _cut(self, msg: PendingResponse, *, hole: bool) -> None:
        # A response cut short in its head by framing has no content to call truncated; one lost to a
        # hole has.
        if hole or msg.body is not None:
            super()._cut(msg, hole=hole)

    def _resync(self, after_line: bool = False) -> None:
        super()._resync(after_line)
        self._resync_at = 1 if after_line else 0

    def _complete(self, msg: PendingResponse) -> HttpResponse:
        response = msg.response(self.responses, self._anomaly, self.max_decompressed_bytes)
        self.responses += 1
        return response


HttpResponseStream._handlers = {**FRAMING_HANDLERS, START: HttpResponseStream._on_status,
                                RESYNC: HttpResponseStream._on_resync}
