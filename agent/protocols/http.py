"""HTTP/1.x request framing from the client's byte stream (RFC 9112, with RFC 9110 semantics).

`HttpRequestStream` turns the reassembled out direction of a connection into `HttpRequest`s: request line
and header section (§2–§5, tolerating bare LF, obs-fold and leading empty lines), message body length by
§6.3 (Transfer-Encoding chunked with extensions and trailers §7.1, Content-Length, none), keep-alive and
pipelining, Content-Encoding / transfer codings (`codings.py`), CONNECT and Upgrade (§9.6, RFC 9110 §7.8)
after which the connection is a tunnel. Malformed input is an anomaly and a resync to the next plausible
request line, never an exception.

Each byte is looked at a bounded number of times whatever the segmentation: line searches resume where
the previous search stopped and consumed bytes are dropped from the front of the buffer.

Field values are decoded as ISO-8859-1 (RFC 9110 §5.5: obs-text), which keeps every byte recoverable; the
body stays bytes and its charset is left to the detectors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from agent.anomalies import AnomalySink, known_or_shape, shape
from agent.protocols.codings import REGISTERED, Decoder, unsupported
from agent.protocols.http_syntax import (
    CHUNK_SIZE,
    DIGITS,
    FIELD_NAMES,
    HTTP_METHODS,
    MAX_LINE,
    MAX_METHOD,
    TCHAR,
    bare_method,
    method_prefix,
    parse_request_line,
    peek_request,
    salvage_request_line,
    tokens,
    valid_host,
)

__all__ = ["HttpRequest", "HttpRequestStream", "method_prefix"]

MAX_HEADER_BYTES = 65536   # whole header section (or trailer section)
MAX_FIELDS = 256
RESYNC_BUDGET = 65536      # garbage skipped while looking for a request line before giving up
_BODYLESS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE", "TRACE"})
_METHOD_NAMES = frozenset(m.decode().lower() for m in HTTP_METHODS)   # an anomaly may quote these

# Parser states.
_LINE, _HEADERS, _LENGTH, _CHUNK_SIZE_LINE, _CHUNK_DATA, _CHUNK_END, _TRAILERS, _UNTIL_CLOSE, _PEEK, \
    _RESYNC, _TUNNEL, _STOPPED = range(12)
_STATE_NAMES = ("line", "headers", "body", "chunk_size", "chunk_data", "chunk_end", "trailers",
                "body_until_close", "peek", "resync", "tunnel", "stopped")


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    target: str
    version: str                          # "HTTP/1.1"
    host: str | None                      # authority of an absolute-form target, else the Host field
    headers: tuple[tuple[str, str], ...]  # as sent (names keep their case), trailer fields appended
    content_type: str | None
    body: bytes                           # after content / transfer decoding, at most the budgets
    body_truncated: bool
    malformed: bool = False               # the request line was malformed; the request was kept all the same


class _Message:
    """The request being framed."""

    __slots__ = ("body", "decoder", "fields", "header_bytes", "kept", "malformed", "method", "raw_body",
                 "target", "truncated", "version")

    def __init__(self, method: str, target: str, version: str, malformed: bool = False) -> None:
        self.method, self.target, self.version = method, target, version
        self.malformed = malformed
        self.fields: list[tuple[str, str]] = []
        self.header_bytes = 0
        self.raw_body = bytearray()   # framed body bytes kept (before decoding), at most max_body_bytes
        self.kept = 0
        self.decoder: Decoder | None = None
        self.truncated = False

    def values(self, name: str) -> list[str]:
        return [v for n, v in self.fields if n.lower() == name]

    def first(self, name: str) -> str | None:
        vs = self.values(name)
        # Optional whitespace only (RFC 9110 §5.5): a control byte stays in the value and is judged with it.
        return vs[0].strip(" \t") if vs else None


class HttpRequestStream:
    """Frames requests out of one connection's client-to-server bytes."""

    # One per open HTTP flow: slots and a class-level state table keep it small (agent/config.py, max_flows).
    __slots__ = ("_buf", "_msg", "_out", "_remaining", "_scan", "_skipped", "_state", "_upgrade", "anomalies",
                 "body_bytes_kept", "flow_id", "max_body_bytes", "max_decompressed_bytes", "requests")

    def __init__(self, max_body_bytes: int, max_decompressed_bytes: int, anomalies: AnomalySink,
                 flow_id: str | None = None) -> None:
        self.max_body_bytes = max(0, max_body_bytes)   # per stream (= per flow), across its requests
        self.body_bytes_kept = 0
        self.max_decompressed_bytes = max_decompressed_bytes
        self.anomalies = anomalies
        self.flow_id = flow_id
        self.requests = 0             # requests reported so far
        self._buf = bytearray()
        self._scan = 0                # where the search for the next LF resumes
        self._state = _LINE
        self._msg: _Message | None = None
        self._remaining = 0           # body or chunk bytes still to come
        self._upgrade = False         # the last request asked for a protocol switch
        self._skipped = 0             # bytes dropped while resyncing
        self._out: list[HttpRequest] = []

    @property
    def done(self) -> bool:
        """True once the connection is a tunnel or framing gave up: later bytes are not HTTP requests."""
        return self._state in (_TUNNEL, _STOPPED)

    @property
    def tunnel(self) -> bool:
        return self._state == _TUNNEL

    # -- public API ------------------------------------------------------------------------------------

    def feed(self, data: bytes) -> list[HttpRequest]:
        if self.done or not data:
            return self._take()  # requests a gap() completed are handed over here too
        self._buf += data
        while (handler := _HANDLERS.get(self._state)) is not None and handler(self):
            pass
        return self._take()

    def gap(self, n: int) -> None:
        """`n` bytes of the stream are missing at the current position."""
        if self.done or n <= 0:
            return
        state = self._state
        self._anomaly("content_gap", f"{n} bytes missing in state {_STATE_NAMES[state]}")
        if state in (_LENGTH, _CHUNK_DATA, _UNTIL_CLOSE) and self._msg is not None:
            self._msg.truncated = True
            if self._msg.decoder is not None:
                self._msg.decoder.cut = True   # a coded stream cannot decode across a hole
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
        if self._msg is not None:
            # Whatever was left of this request (headers, chunk framing, its body) fell into the hole.
            self._msg.truncated = True
            self._emit()
        self._buf.clear()
        self._scan = 0
        self._state = _RESYNC

    def close(self) -> list[HttpRequest]:
        """The connection ended: report what is pending (a body ended by the close, or cut short)."""
        state, msg = self._state, self._msg
        if msg is not None and state in (_UNTIL_CLOSE, _PEEK):
            self._emit()
        elif msg is not None:
            self._anomaly("message_incomplete", f"connection closed in state {_STATE_NAMES[state]}, "
                                                f"{self._remaining} body bytes outstanding")
            msg.truncated = True
            self._emit()
        elif state == _LINE and self._buf.strip(b"\r\n"):
            self._anomaly("request_line_incomplete", f"{len(self._buf)} bytes before the close")
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

    def _on_line(self) -> bool:
        # RFC 9112 §2.2: empty lines before a request line are ignored.
        while self._buf[:1] in (b"\r", b"\n"):
            if self._buf[:1] == b"\n":
                del self._buf[:1]
            elif self._buf[:2] == b"\r\n":
                del self._buf[:2]
            elif len(self._buf) == 1:
                return False  # a lone CR: wait for its LF
            else:
                break
            self._scan = 0
        if not self._buf:
            return False
        if method_prefix(self._buf) is False:
            bare = bare_method(self._buf)
            if bare is None:
                return False
            if not bare:
                self._anomaly("malformed_request_line", f"no method token in the first {MAX_METHOD} bytes")
                self._state = _RESYNC
                return True
        line = self._next_line(MAX_LINE)
        if line is None:
            return False
        return self._start_request(line)

    def _start_request(self, line: bytes) -> bool:
        parsed = parse_request_line(line) if line != b"\0" else None
        if parsed is None:
            salvaged = salvage_request_line(line) if line != b"\0" else None
            if salvaged is None:
                self._anomaly("malformed_request_line",
                              "overlong line" if line == b"\0" else f"line of {len(line)} bytes")
                self._state = _RESYNC
                return True
            # Still a request (`OPTIONS HTTP/1.1`, `TRACE /HTTP/1.1`, HTTP/0.9's `GET /x`): counted, and its
            # fields read, since the Host after a broken line names the server as well as any other.
            method = salvaged[0]
            self._anomaly("malformed_request_line", f"line of {len(line)} bytes, kept as a "
                                                    f"{known_or_shape(method, _METHOD_NAMES)} request")
            self._msg = _Message(*salvaged, malformed=True)
            self._state = _HEADERS
            return True
        method, target, version = parsed
        if version.startswith("HTTP/2") and method == "PRI":
            self._anomaly("http2_prior_knowledge", "HTTP/2 connection preface; framing stops")
            self._stop()
            return False
        if not version.startswith("HTTP/1."):
            self._anomaly("unsupported_version", version[:16])
            self._state = _RESYNC
            return True
        self._msg = _Message(method, target, version)
        self._state = _HEADERS
        return True

    def _on_fields(self) -> bool:
        msg = self._msg
        assert msg is not None
        while True:
            line = self._next_line(MAX_LINE)
            if line is None:
                return False
            if msg.malformed and line != b"\0" and parse_request_line(line) is not None:
                # A broken request line followed straight by a well-formed one (HTTP/0.9 has no fields):
                # the broken request ends here.
                self._emit()
                self._state = _LINE
                return self._start_request(line)
            msg.header_bytes += len(line) + 2
            if line == b"\0" or msg.header_bytes > MAX_HEADER_BYTES:
                self._anomaly("header_section_too_long", f"over {MAX_HEADER_BYTES} bytes")
                msg.truncated = True
                self._emit()
                self._state = _RESYNC
                return True
            if not line:
                break
            if line[0] in b" \t":
                # RFC 9112 §5.2 obs-fold: replaced by a space and joined to the previous field value.
                if msg.fields:
                    name, value = msg.fields[-1]
                    msg.fields[-1] = (name, f"{value} {line.strip().decode('latin-1')}")
                    self._anomaly("obs_fold", f"continuation of field {known_or_shape(name, FIELD_NAMES)}")
                continue
            name, sep, value = line.partition(b":")
            name = name.strip()
            if not sep or not name or any(b not in TCHAR for b in name):
                self._anomaly("malformed_field_line", f"line of {len(line)} bytes")
                continue
            if len(msg.fields) >= MAX_FIELDS:
                self._anomaly("too_many_fields", f"more than {MAX_FIELDS}")
                continue
            msg.fields.append((name.decode("ascii"), value.strip(b" \t").decode("latin-1")))
        if self._state == _TRAILERS:
            self._emit()
            self._state = _PEEK if self._upgrade else _LINE
            return True
        self._start_body(msg)
        return True

    def _start_body(self, msg: _Message) -> None:
        """Message body length per RFC 9112 §6.3."""
        connection = tokens(msg.values("connection"))
        self._upgrade = bool(msg.values("upgrade")) and "upgrade" in connection
        te = tokens(msg.values("transfer-encoding"))
        cl = msg.values("content-length")
        codings = tokens(msg.values("content-encoding"))
        if msg.method == "CONNECT" and not msg.malformed and valid_host(msg.target, port_required=True):
            self._emit()
            self._stop(tunnel=True)
            return
        # A CONNECT to no authority, or with a broken request line, opens no tunnel (the server must refuse
        # it, RFC 9110 §9.3.6): its bytes after it are read as HTTP still.
        if te:
            if cl:
                self._anomaly("transfer_encoding_and_content_length", "Transfer-Encoding wins")
            chunked = te[-1] == "chunked"
            self._set_decoder(msg, codings + [c for c in te if c != "chunked"])
            if chunked:
                self._state = _CHUNK_SIZE_LINE
            else:
                self._anomaly("bad_transfer_encoding", f"final coding {known_or_shape(te[-1], REGISTERED)} "
                                                       "is not chunked; body ends at close")
                self._state = _UNTIL_CLOSE
            return
        if cl:
            lengths = {v.strip() for v in tokens(cl)}
            if len(lengths) != 1 or not DIGITS.fullmatch(next(iter(lengths))):
                described = ", ".join(shape(v) for v in sorted(lengths)[:3])
                self._anomaly("bad_content_length",
                              f"{len(cl)} field(s), {len(lengths)} distinct values: {described}")
                self._set_decoder(msg, codings)
                self._state = _UNTIL_CLOSE
                return
            self._remaining = int(next(iter(lengths)))
            if self._remaining == 0:
                self._finish()
                return
            self._set_decoder(msg, codings)
            self._state = _LENGTH
            return
        if msg.method in _BODYLESS:
            self._finish()
            return
        # A request without framing has no body (§6.3 point 7); if what follows is not a request, the
        # client is sending one anyway (HTTP/1.0 style, ended by the close): decided when bytes arrive.
        self._set_decoder(msg, codings)
        self._state = _PEEK

    def _set_decoder(self, msg: _Message, codings: list[str]) -> None:
        bad = unsupported(codings)
        if bad:
            self._anomaly("unsupported_coding", ",".join(known_or_shape(c, REGISTERED) for c in bad[:4])
                          + (f" and {len(bad) - 4} more" if len(bad) > 4 else ""))
        elif any(c != "identity" for c in codings):
            msg.decoder = Decoder(codings, self.max_decompressed_bytes)

    def _finish(self) -> None:
        self._emit()
        self._state = _PEEK if self._upgrade else _LINE

    def _on_body_bytes(self) -> bool:
        n = min(self._remaining, len(self._buf))
        if n:
            self._add_body(bytes(self._buf[:n]))
            del self._buf[:n]
            self._remaining -= n
        if self._remaining:
            return False
        if self._state == _CHUNK_DATA:
            self._state = _CHUNK_END
            return True
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
            self._msg.truncated = True
            self._emit()
            self._state = _RESYNC
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
            self._add_body(bytes(self._buf))
            self._buf.clear()
        return False

    def _on_peek(self) -> bool:
        verdict = peek_request(self._buf)
        if verdict is None:
            return False
        if verdict or self._upgrade:
            if self._msg is not None:
                self._emit()
            if verdict:
                self._upgrade = False
                self._state = _LINE
            else:
                self._stop(tunnel=True)  # the server switched protocols (101); the rest is not HTTP/1.x
        else:
            self._anomaly("body_without_length", "request body delimited by the connection close")
            self._state = _UNTIL_CLOSE
        return True

    def _on_resync(self) -> bool:
        self._scan = 0
        while self._buf:
            verdict = peek_request(self._buf)
            if verdict is None:
                return False
            if verdict:
                self._state = _LINE
                return True
            end = self._buf.find(b"\n")
            cut = len(self._buf) if end < 0 else end + 1
            del self._buf[:cut]
            self._skipped += cut
            if self._skipped > RESYNC_BUDGET:
                self._anomaly("resync_failed", f"no request line in {self._skipped} bytes; framing stops")
                self._stop()
                return False
        return False

    # -- helpers ---------------------------------------------------------------------------------------

    def _add_body(self, data: bytes) -> None:
        msg = self._msg
        assert msg is not None
        # The budget is the flow's (sampling.max_payload_bytes_per_flow), shared by all its requests: a
        # keep-alive connection with a thousand requests gets no more inspection than one big request.
        room = self.max_body_bytes - self.body_bytes_kept
        if len(data) > room:
            msg.truncated = True
            data = data[: max(0, room)]
        if not data:
            return
        msg.kept += len(data)
        self.body_bytes_kept += len(data)
        dec = msg.decoder
        if dec is None:
            msg.raw_body += data
            return
        if not dec.out:
            msg.raw_body += data  # kept until decoding yields output: a body mislabelled as coded
        dec.feed(data)
        if dec.out and msg.raw_body:
            msg.raw_body = bytearray()

    def _emit(self) -> None:
        msg = self._msg
        assert msg is not None
        self._msg = None
        body: bytes = bytes(msg.raw_body)
        dec = msg.decoder
        if dec is not None:
            if dec.limited:
                self._anomaly("decompression_limit", f"{dec.name} body over {self.max_decompressed_bytes} "
                                                     "bytes decoded; kept the decoded prefix")
                msg.truncated = True
            elif dec.error is not None:
                self._anomaly("decompression_error", f"{dec.name}: {len(dec.out)} bytes decoded")
                msg.truncated = True
            if dec.error is None or dec.out:
                body = bytes(dec.out)  # else: a body mislabelled as coded is inspected as it is
        self._out.append(HttpRequest(
            method=msg.method, target=msg.target, version=msg.version, host=self._host(msg),
            headers=tuple(msg.fields), content_type=msg.first("content-type"), body=body,
            body_truncated=msg.truncated, malformed=msg.malformed))
        self.requests += 1

    def _host(self, msg: _Message) -> str | None:
        """The server the request names: an absolute-form target's authority (RFC 9112 §3.2.2) or CONNECT's
        authority-form target (§3.2.3), else the Host field. A candidate that is no server's name (a phone
        number, a person's name, control bytes) is an anomaly that only says what it looked like, and the next
        candidate is asked: nothing that is not a host name may become the flow's server_name."""
        authority = None
        if "://" in msg.target[:16]:
            authority = msg.target.split("://", 1)[1].split("/", 1)[0].split("?", 1)[0].rsplit("@", 1)[-1]
        elif msg.method == "CONNECT":
            authority = msg.target
        if authority:
            if valid_host(authority, port_required=msg.method == "CONNECT"):
                return authority
            form = "CONNECT" if msg.method == "CONNECT" else "absolute-form"
            self._anomaly("bad_host", f"{form} target {shape(authority[:MAX_LINE])} is no authority; "
                                      "the Host field is used")
        host = msg.first("host")
        if host and not valid_host(host):
            self._anomaly("bad_host", f"{shape(host[:MAX_LINE])} is no host name")
            return None
        return host or None

    def _stop(self, tunnel: bool = False) -> None:
        self._state = _TUNNEL if tunnel else _STOPPED
        self._buf.clear()

    def _take(self) -> list[HttpRequest]:
        out, self._out = self._out, []
        return out

    def _anomaly(self, name: str, detail: str) -> None:
        self.anomalies.add("http", name, detail, flow_id=self.flow_id)


# State -> handler (unbound): what feed() runs until a handler says it needs more bytes.
_HANDLERS: dict[int, Callable[[HttpRequestStream], bool]] = {
    _LINE: HttpRequestStream._on_line, _HEADERS: HttpRequestStream._on_fields,
    _TRAILERS: HttpRequestStream._on_fields, _LENGTH: HttpRequestStream._on_body_bytes,
    _CHUNK_DATA: HttpRequestStream._on_body_bytes, _CHUNK_SIZE_LINE: HttpRequestStream._on_chunk_size,
    _CHUNK_END: HttpRequestStream._on_chunk_end, _UNTIL_CLOSE: HttpRequestStream._on_until_close,
    _PEEK: HttpRequestStream._on_peek, _RESYNC: HttpRequestStream._on_resync,
}
