"""HTTP/1.x request framing from the client's byte stream (RFC 9112, with RFC 9110 semantics).

`HttpRequestStream` turns the reassembled out direction of a connection into `HttpRequest`s: request line
and header section (§2–§5, tolerating bare LF, obs-fold and leading empty lines), message body length by
§6.3 (Transfer-Encoding chunked with extensions and trailers §7.1, Content-Length, none), keep-alive and
pipelining, Content-Encoding / transfer codings (`codings.py`), CONNECT and Upgrade (§9.6, RFC 9110 §7.8)
after which the connection is a tunnel. Malformed input is an anomaly and a resync to the next plausible
request line, never an exception.

What requests and responses frame alike (lines, fields, body length, chunks, holes, budgets) is
agent/protocols/http_framing.py's `MessageFramer`; this module is the request line, its resync, and what a
request's method and fields add (CONNECT, Upgrade, body-less methods, a body without length).

Field values are decoded as ISO-8859-1 (RFC 9110 §5.5: obs-text), which keeps every byte recoverable; the
body stays bytes and its charset is left to the detectors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from agent.anomalies import AnomalySink, known_or_shape, shape
from agent.protocols.handler import Handler, HandlerContext, Summary, inspect_request
from agent.protocols.http_body import MessageHead
from agent.protocols.http_framing import (
    FRAMING_HANDLERS,
    HEADERS,
    PEEK,
    RESYNC,
    START,
    UNTIL_CLOSE,
    MessageFramer,
    StartLine,
)
from agent.protocols.http_syntax import (
    HTTP_METHODS,
    MAX_LINE,
    MAX_METHOD,
    bare_method,
    method_prefix,
    parse_request_line,
    peek_request,
    salvage_request_line,
    tokens,
    valid_host,
)

__all__ = ["HttpHandler", "HttpRequest", "HttpRequestStream", "method_prefix"]

_BODYLESS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE", "TRACE"})
_METHOD_NAMES = frozenset(m.decode().lower() for m in HTTP_METHODS)   # an anomaly may quote these


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


class _Request(MessageHead):
    """The request being framed."""

    __slots__ = ("method", "target", "version")

    def __init__(self, method: str, target: str, version: str, malformed: bool = False) -> None:
        super().__init__(malformed)
        self.method, self.target, self.version = method, target, version

    def first(self, name: str) -> str | None:
        vs = self.values(name)
        # Optional whitespace only (RFC 9110 §5.5): a control byte stays in the value and is judged with it.
        return vs[0].strip(" \t") if vs else None


class HttpRequestStream(MessageFramer[_Request, HttpRequest]):
    """Frames requests out of one connection's client-to-server bytes."""

    __slots__ = ("_upgrade", "requests")

    _START = StartLine(state="line", name="request line", incomplete="request_line_incomplete")

    def __init__(self, max_body_bytes: int, max_decompressed_bytes: int, anomalies: AnomalySink,
                 flow_id: str | None = None) -> None:
        super().__init__(max_body_bytes, max_decompressed_bytes, anomalies, flow_id)
        self.requests = 0             # requests reported so far
        # The client's bytes from an HTTP/2 preface on, once framing stopped at one (h2c after an Upgrade,
        # or prior knowledge on an HTTP port): what an HTTP/2 parser takes over with (http2.py).
        self._upgrade = False         # the last request asked for a protocol switch

    # -- states ----------------------------------------------------------------------------------------

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
                self._resync()
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
                self._resync()
                return True
            # Still a request (`OPTIONS HTTP/1.1`, `TRACE /HTTP/1.1`, HTTP/0.9's `GET /x`): counted, and its
            # fields read, since the Host after a broken line names the server as well as any other.
            method = salvaged[0]
            self._anomaly("malformed_request_line", f"line of {len(line)} bytes, kept as a "
                                                    f"{known_or_shape(method, _METHOD_NAMES)} request")
            self._msg = _Request(*salvaged, malformed=True)
            self._state = HEADERS
            return True
        method, target, version = parsed
        if version.startswith("HTTP/2") and method == "PRI":
            # The HTTP/2 connection preface (after `Upgrade: h2c`, or mid-stream): the rest of the connection
            # is HTTP/2's, handed on whole, preface included (agent/protocols/http2.py).
            self._buf[:0] = line + b"\r\n"
            self._stop(tunnel=True)
            return False
        if not version.startswith("HTTP/1."):
            self._anomaly("unsupported_version", version[:16])
            self._resync()
            return True
        self._msg = _Request(method, target, version)
        self._state = HEADERS
        return True

    def _after_malformed(self, line: bytes) -> bool | None:
        if parse_request_line(line) is None:
            return None
        # A broken request line followed straight by a well-formed one (HTTP/0.9 has no fields): the broken
        # request ends here.
        self._emit()
        self._state = START
        return self._start_request(line)

    def _start_body(self, msg: _Request) -> None:
        """Message body length per RFC 9112 §6.3, with what the request's method and fields add."""
        connection = tokens(msg.values("connection"))
        self._upgrade = bool(msg.values("upgrade")) and "upgrade" in connection
        if msg.method == "CONNECT" and not msg.malformed and valid_host(msg.target, port_required=True):
            self._emit()
            self._stop(tunnel=True)
            return
        # A CONNECT to no authority, or with a broken request line, opens no tunnel (the server must refuse
        # it, RFC 9110 §9.3.6): its bytes after it are read as HTTP still.
        codings = tokens(msg.values("content-encoding"))
        if self._frame_body(msg, codings):
            return
        if msg.method in _BODYLESS:
            self._finish()
            return
        # A request without framing has no body (§6.3 point 7); if what follows is not a request, the
        # client is sending one anyway (HTTP/1.0 style, ended by the close): decided when bytes arrive.
        msg.body = self._body(codings)
        self._state = PEEK

    def _on_peek(self) -> bool:
        verdict = peek_request(self._buf)
        if verdict is None:
            return False
        if verdict or self._upgrade:
            if self._msg is not None:
                self._emit()
            if verdict:
                self._upgrade = False
                self._state = START
            else:
                self._stop(tunnel=True)  # the server switched protocols (101); the rest is not HTTP/1.x
        else:
            self._anomaly("body_without_length", "request body delimited by the connection close")
            self._state = UNTIL_CLOSE
        return True

    def _on_resync(self) -> bool:
        self._scan = 0
        while self._buf:
            verdict = peek_request(self._buf)
            if verdict is None:
                return False
            if verdict:
                self._state = START
                return True
            end = self._buf.find(b"\n")
            if not self._skip(len(self._buf) if end < 0 else end + 1):
                return False
        return False

    # -- helpers ---------------------------------------------------------------------------------------

    def _finish(self) -> None:
        self._emit()
        self._state = PEEK if self._upgrade else START

    def _complete(self, msg: _Request) -> HttpRequest:
        body, truncated = msg.content(self._anomaly, self.max_decompressed_bytes)
        request = HttpRequest(
            method=msg.method, target=msg.target, version=msg.version, host=self._host(msg),
            headers=tuple(msg.fields), content_type=msg.first("content-type"), body=body,
            body_truncated=truncated, malformed=msg.malformed)
        self.requests += 1
        return request

    def _host(self, msg: _Request) -> str | None:
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



HttpRequestStream._handlers = {**FRAMING_HANDLERS, START: HttpRequestStream._on_line,
                               RESYNC: HttpRequestStream._on_resync, PEEK: HttpRequestStream._on_peek}


class HttpHandler:
    """The HTTP/1.x handler of a flow (agent/protocols/handler.py): frames the client's requests, hands an
    inspected flow's requests over, and names the flow by its first request's Host. Without inspection only
    `naming_budget` bytes are read. After CONNECT or an Upgrade the rest of the connection is another
    protocol's (TLS to the CONNECT authority, HTTP/2 after `Upgrade: h2c`): chosen afresh by `tunnel`."""

    __slots__ = ("_bytes", "_host", "_inner", "_inspected", "_requests", "_stream", "_truncated", "_tunnel",
                 "ctx", "wants_client", "wants_server")

    def __init__(self, ctx: HandlerContext, tunnel: Callable[[int], Handler]) -> None:
        self.ctx = ctx
        # Without inspection bodies are only counted past, never kept or decoded.
        self._stream = HttpRequestStream(ctx.max_body_bytes if ctx.inspect else 0, ctx.max_decompressed_bytes,
                                         ctx.anomalies, ctx.flow_id)
        self._tunnel = tunnel
        self._inner: Handler | None = None
        self._bytes = self._requests = 0
        self._host: str | None = None
        self._inspected = self._truncated = False
        self.wants_client, self.wants_server = True, False

    def feed(self, data: bytes, from_client: bool) -> None:
        if self._inner is not None:
            self._inner.feed(data, from_client)
            self._sync()
        elif from_client:
            self._bytes += len(data)
            self._after(self._stream.feed(data))

    def gap(self, n: int, from_client: bool) -> None:
        if self._inner is not None:
            self._inner.gap(n, from_client)
            self._sync()
        elif from_client:
            self._stream.gap(n)
            self._after(self._stream.feed(b""))

    def close(self) -> None:
        if self._inner is not None:
            self._inner.close()
        else:
            self._after(self._stream.close())
        self.wants_client = self.wants_server = False

    def summary(self) -> Summary:
        own = Summary(app="http", host=self._host, requests=self._requests, inspected=self._inspected,
                      truncated=self._truncated)
        return own if self._inner is None else own.inside(self._inner.summary())

    def _after(self, requests: list[HttpRequest]) -> None:
        ctx = self.ctx
        last: HttpRequest | None = None
        for request in requests:
            self._requests += 1
            if self._host is None and self._requests == 1:
                self._host = request.host
            seen, cut = inspect_request(ctx, request)
            self._inspected, self._truncated = self._inspected or seen, self._truncated or cut
            last = request
        stream = self._stream
        if stream.tunnel:
            self._open_tunnel(last)
        elif stream.done or (not ctx.inspect and self._bytes >= ctx.naming_budget):
            self.wants_client = False

    def _open_tunnel(self, request: HttpRequest | None) -> None:
        """CONNECT's authority names the port the tunnel goes to; an Upgrade stays on the flow's port (0:
        the tunnel's chooser keeps the one it was given)."""
        connect = request is not None and request.method == "CONNECT"
        port = request.target.rsplit(":", 1)[-1] if request is not None and connect else ""
        self._inner = self._tunnel(int(port) if port.isdigit() and len(port) <= 5 else 0)
        rest, self._stream.rest = self._stream.rest, b""
        if rest:
            self._inner.feed(rest, True)
        self._sync()

    def _sync(self) -> None:
        inner = self._inner
        assert inner is not None
        self.wants_client, self.wants_server = inner.wants_client, inner.wants_server
