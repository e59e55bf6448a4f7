"""HTTP/1.x message framing shared by the request and the response framers (RFC 9112 §2–§7).

`MessageFramer` is everything `HttpRequestStream` (http.py) and `HttpResponseStream` (http_response.py)
do alike: line reading (tolerating bare LF), the header section (obs-fold, bounded size and field count),
body length by §6.3 from Transfer-Encoding (chunked with extensions and trailers, §7.1) or Content-Length,
bodies delimited by the close, content codings set up (`MessageBody`, http_body.py), holes in the stream,
the close, and the resync budget. A subclass supplies only what differs: its start line (`START` and
`RESYNC` handlers), what its head means for the body (`_start_body`: HEAD/204/304/1xx and pairing for
responses, CONNECT/Upgrade and body-less methods for requests) and the record it builds (`_complete`).
Malformed input is an anomaly and a resync, never an exception.

Each byte is looked at a bounded number of times whatever the segmentation: line searches resume where
the previous search stopped and consumed bytes are dropped from the front of the buffer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from agent.anomalies import AnomalySink, known_or_shape, shape
from agent.protocols.codings import REGISTERED
from agent.protocols.http_body import BodyBudget, MessageBody, MessageHead
from agent.protocols.http_syntax import CHUNK_SIZE, DIGITS, FIELD_NAMES, MAX_LINE, TCHAR, tokens

__all__ = ["CHUNK_DATA", "CHUNK_END", "CHUNK_SIZE_LINE", "FRAMING_HANDLERS", "HEADERS", "LENGTH",
           "MAX_FIELDS", "MAX_HEADER_BYTES", "PEEK", "RESYNC", "RESYNC_BUDGET", "START", "STOPPED",
           "TRAILERS", "TUNNEL", "UNTIL_CLOSE", "MessageFramer", "StartLine"]

MAX_HEADER_BYTES = 65536   # whole header section (or trailer section)
MAX_FIELDS = 256
RESYNC_BUDGET = 65536      # bytes skipped looking for a start line before framing gives up

# Parser states (PEEK only for requests: is what follows a body without length, or the next request?).
START, HEADERS, LENGTH, CHUNK_SIZE_LINE, CHUNK_DATA, CHUNK_END, TRAILERS, UNTIL_CLOSE, PEEK, RESYNC, \
    TUNNEL, STOPPED = range(12)
_STATE_NAMES = ("start", "headers", "body", "chunk_size", "chunk_data", "chunk_end", "trailers",
                "body_until_close", "peek", "resync", "tunnel", "stopped")



@dataclass(frozen=True, slots=True)
class StartLine:
    """How a framer names its start line in anomalies."""

    state: str        # the start state ("line", "status_line")
    name: str         # what a resync looks for ("request line", "status line")
    incomplete: str   # the anomaly for a start line cut by the close


H = TypeVar("H", bound=MessageHead)   # the message being framed
M = TypeVar("M")                      # the record a framed message becomes


class MessageFramer(Generic[H, M]):
    """Frames the messages of one direction of a connection; a subclass names the start line."""

    # One per open HTTP flow direction: slots and a class-level state table keep it small.
    __slots__ = ("_buf", "_msg", "_out", "_remaining", "_scan", "_skipped", "_state", "anomalies", "budget",
                 "flow_id", "max_decompressed_bytes", "rest")

    _handlers: ClassVar[dict[int, Callable[[Any], bool]]]   # state -> handler, set per subclass
    _START: ClassVar[StartLine]

    def __init__(self, max_body_bytes: int, max_decompressed_bytes: int, anomalies: AnomalySink,
                 flow_id: str | None = None) -> None:
        self.budget = BodyBudget(max_body_bytes)       # per stream (= per flow), across its messages
        self.max_decompressed_bytes = max_decompressed_bytes
        self.anomalies = anomalies
        self.flow_id = flow_id
        self._buf = bytearray()
        self._scan = 0                # where the search for the next LF resumes
        self._state = START
        self._msg: H | None = None
        self.rest = b""               # a tunnel's first bytes (after CONNECT or Upgrade), for its handler
        self._remaining = 0           # body or chunk bytes still to come
        self._skipped = 0             # bytes dropped while resyncing
        self._out: list[M] = []

    @property
    def done(self) -> bool:
        """True once the connection is a tunnel or framing gave up: later bytes are not HTTP/1.x messages."""
        return self._state in (TUNNEL, STOPPED)

    @property
    def tunnel(self) -> bool:
        return self._state == TUNNEL

    # -- public API ------------------------------------------------------------------------------------

    def feed(self, data: bytes) -> list[M]:
        if self.done or not data:
            return self._take()  # messages a gap() completed are handed over here too
        self._buf += data
        handlers = self._handlers
        while (handler := handlers.get(self._state)) is not None and handler(self):
            pass
        return self._take()

    def gap(self, n: int) -> None:
        """`n` bytes of the stream are missing at the current position."""
        if self.done or n <= 0:
            return
        state, msg = self._state, self._msg
        self._anomaly("content_gap", f"{n} bytes missing in state {self._state_name(state)}")
        if state in (LENGTH, CHUNK_DATA, UNTIL_CLOSE) and msg is not None and msg.body is not None:
            msg.body.cut()
            if state == UNTIL_CLOSE or n < self._remaining:
                self._remaining -= n
                return
            if n == self._remaining:
                self._remaining = 0
                if state == CHUNK_DATA:
                    self._state = CHUNK_END
                else:
                    self._finish()
                return
        if msg is not None:
            # Whatever was left of this message (its head, chunk framing, its body) fell into the hole.
            self._cut(msg, hole=True)
            self._emit()
        self._buf.clear()
        self._resync(after_line=False)

    def close(self) -> list[M]:
        """The connection ended: report what is pending (a body ended by the close, or cut short)."""
        state, msg = self._state, self._msg
        if msg is not None and state in (UNTIL_CLOSE, PEEK):
            self._emit()
        elif msg is not None:
            self._anomaly("message_incomplete", f"connection closed in state {self._state_name(state)}, "
                                                f"{self._remaining} body bytes outstanding")
            self._cut(msg, hole=False)
            self._emit()
        elif state == START and self._buf.strip(b"\r\n"):
            self._anomaly(self._START.incomplete, f"{len(self._buf)} bytes before the close")
        self._buf.clear()
        if state != TUNNEL:
            self._state = STOPPED
        return self._take()

    # -- what a subclass supplies ------------------------------------------------------------------------

    def _start_body(self, msg: H) -> None:
        """The header section of `msg` is complete: decide its body (`_frame_body` for the common rules)."""
        raise NotImplementedError

    def _complete(self, msg: H) -> M:
        """The record for a message framed to its end (or as far as it went)."""
        raise NotImplementedError

    def _after_malformed(self, line: bytes) -> bool | None:
        """A field line of a message whose start line was malformed: a handler's result if it starts the
        next message instead, None if it is a field line."""
        return None

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

    def _on_fields(self) -> bool:
        msg = self._msg
        assert msg is not None
        fields = msg.fields
        while True:
            line = self._next_line(MAX_LINE)
            if line is None:
                return False
            if msg.malformed and line != b"\0" and (again := self._after_malformed(line)) is not None:
                return again
            msg.header_bytes += len(line) + 2
            if line == b"\0" or msg.header_bytes > MAX_HEADER_BYTES:
                self._anomaly("header_section_too_long", f"over {MAX_HEADER_BYTES} bytes")
                self._cut(msg, hole=False)
                self._emit()
                self._resync(after_line=line == b"\0")   # an overlong line may still be in the buffer
                return True
            if not line:
                break
            if line[0] in b" \t":
                # RFC 9112 §5.2 obs-fold: replaced by a space and joined to the previous field value.
                if fields:
                    name, value = fields[-1]
                    fields[-1] = (name, f"{value} {line.strip().decode('latin-1')}")
                    self._anomaly("obs_fold", f"continuation of field {known_or_shape(name, FIELD_NAMES)}")
                continue
            raw_name, sep, raw_value = line.partition(b":")
            raw_name = raw_name.strip()
            if not sep or not raw_name or any(b not in TCHAR for b in raw_name):
                self._anomaly("malformed_field_line", f"line of {len(line)} bytes")
            elif len(fields) >= MAX_FIELDS:
                self._anomaly("too_many_fields", f"more than {MAX_FIELDS}")
            else:
                # ISO-8859-1 (RFC 9110 §5.5: obs-text) keeps every byte of a value recoverable.
                fields.append((raw_name.decode("ascii"), raw_value.strip(b" \t").decode("latin-1")))
        if self._state == TRAILERS:
            self._finish()
        else:
            self._start_body(msg)
        return True

    def _frame_body(self, msg: H, codings: list[str]) -> bool:
        """Body length by Transfer-Encoding or Content-Length (RFC 9112 §6.3 points 3–6), with `codings`
        (Content-Encoding) to undo. False: the message has neither field, the caller's rule applies."""
        te = tokens(msg.values("transfer-encoding"))
        cl = msg.values("content-length")
        if te:
            if cl:
                self._anomaly("transfer_encoding_and_content_length", "Transfer-Encoding wins")
            msg.body = self._body(codings + [c for c in te if c != "chunked"])
            if te[-1] == "chunked":
                self._state = CHUNK_SIZE_LINE
            else:
                self._anomaly("bad_transfer_encoding", f"final coding {known_or_shape(te[-1], REGISTERED)} "
                                                       "is not chunked; body ends at close")
                self._state = UNTIL_CLOSE
            return True
        if not cl:
            return False
        lengths = {v.strip() for v in tokens(cl)}
        if len(lengths) != 1 or not DIGITS.fullmatch(next(iter(lengths))):
            described = ", ".join(shape(v) for v in sorted(lengths)[:3])
            self._anomaly("bad_content_length",
                          f"{len(cl)} field(s), {len(lengths)} distinct values: {described}")
            msg.body = self._body(codings)
            self._state = UNTIL_CLOSE
            return True
        self._remaining = int(next(iter(lengths)))
        if self._remaining == 0:
            self._finish()
        else:
            msg.body = self._body(codings)
            self._state = LENGTH
        return True

    def _on_body_bytes(self) -> bool:
        n = min(self._remaining, len(self._buf))
        if n:
            assert self._msg is not None and self._msg.body is not None
            self._msg.body.add(self._buf[:n])   # past the flow's budget it is counted, not copied
            del self._buf[:n]
            self._remaining -= n
        if self._remaining:
            return False
        if self._state == CHUNK_DATA:
            self._state = CHUNK_END
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
            assert self._msg is not None
            self._cut(self._msg, hole=False)
            self._emit()
            self._resync(after_line=False)   # the bad line is consumed: what follows may be a start line
            return True
        self._remaining = int(m.group(1), 16)
        self._state = CHUNK_DATA if self._remaining else TRAILERS
        return True

    def _on_chunk_end(self) -> bool:
        if self._buf[:2] == b"\r\n" or self._buf[:1] == b"\n":
            del self._buf[: 1 if self._buf[:1] == b"\n" else 2]
        elif self._buf == b"\r" or not self._buf:
            return False
        else:
            self._anomaly("bad_chunk_terminator", "chunk data not followed by CRLF")
        self._state = CHUNK_SIZE_LINE
        return True

    def _on_until_close(self) -> bool:
        if self._buf:
            assert self._msg is not None and self._msg.body is not None
            self._msg.body.add(self._buf)
            self._buf.clear()
        return False

    # -- helpers ---------------------------------------------------------------------------------------

    def _body(self, codings: list[str]) -> MessageBody:
        return MessageBody(self.budget, codings, self.max_decompressed_bytes, self._anomaly)

    def _cut(self, msg: H, *, hole: bool) -> None:
        """The rest of `msg` is lost: to a hole in the stream (`hole`), or to framing that ended it early."""
        if msg.body is None:
            msg.body = self._body([])
        msg.body.cut()

    def _finish(self) -> None:
        self._emit()
        self._state = START

    def _resync(self, after_line: bool = False) -> None:
        """Look for the next start line (`after_line`: the buffer starts with the line that failed)."""
        self._scan = 0
        self._state = RESYNC

    def _skip(self, n: int) -> bool:
        """Drop `n` bytes while resyncing; False once that passed the resync budget and framing stopped."""
        del self._buf[:n]
        self._skipped += n
        if self._skipped <= RESYNC_BUDGET:
            return True
        self._anomaly("resync_failed", f"no {self._START.name} in {self._skipped} bytes; framing stops")
        self._stop()
        return False

    def _emit(self) -> None:
        msg = self._msg
        assert msg is not None
        self._msg = None
        self._out.append(self._complete(msg))

    def _stop(self, tunnel: bool = False) -> None:
        self._state = TUNNEL if tunnel else STOPPED
        if tunnel:
            self.rest = bytes(self._buf)
        self._buf.clear()

    def _take(self) -> list[M]:
        out, self._out = self._out, []
        return out

    def _state_name(self, state: int) -> str:
        return self._START.state if state == START else _STATE_NAMES[state]

    def _anomaly(self, name: str, detail: str) -> None:
        self.anomalies.add("http", name, detail, flow_id=self.flow_id)


# The states both framers handle alike (unbound): a subclass adds its START and RESYNC (and PEEK) handlers.
FRAMING_HANDLERS: dict[int, Callable[[Any], bool]] = {
    HEADERS: MessageFramer._on_fields, TRAILERS: MessageFramer._on_fields,
    LENGTH: MessageFramer._on_body_bytes, CHUNK_DATA: MessageFramer._on_body_bytes,
    CHUNK_SIZE_LINE: MessageFramer._on_chunk_size, CHUNK_END: MessageFramer._on_chunk_end,
    UNTIL_CLOSE: MessageFramer._on_until_close,
}
