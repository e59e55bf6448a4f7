"""The protocol registry: which handler a flow's bytes go to, as data rather than an if-chain.

A table of TCP entries, each a content sniffer, the ports where a weaker match is enough (Zeek's DPD
signatures plus well-known ports, nDPI's guess-by-port fallback) and the handler that takes the stream
(agent/protocols/handler.py). Content wins over the port: TLS on port 80 is TLS. A second table does the
same for UDP. Adding a protocol is one handler module plus one entry here.

- `sniff(first_bytes, dport)` — a TCP stream by its first client bytes: "http" (a method token and a space,
  RFC 9112 §3), "tls" (a handshake record, RFC 8446 §5.1), "socks5" (a greeting, RFC 1928 §3; a tunnel whose
  inner stream is sniffed again), "unknown", or None while more bytes are needed (never more than
  `SNIFF_BYTES`).
- `datagram_app(payload, ports)` — a UDP flow by port and first datagram: "dns" (RFC 1035 §4.2.1),
  "quic" (a long-header packet of a known version, RFC 9000 §17.2, RFC 9369, on any port), None while
  undecided.
- `Chooser` — the handler at the root of every TCP flow (and inside every tunnel): it holds the first bytes
  until `sniff` decides, then hands everything to the chosen entry's handler. `DatagramChooser` is its UDP
  counterpart.
"""


from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from agent.protocols import socks5
from agent.protocols.dns import DnsHandler
from agent.protocols.handler import Handler, HandlerContext, Opaque, Summary
from agent.protocols.http import HttpHandler
from agent.protocols.http2 import Http2Handler, is_h2_preface
from agent.protocols.http_syntax import HTTP_METHODS, bare_method, method_prefix
from agent.protocols.quic_wire import is_quic
from agent.protocols.socks5 import Socks5Handler
from agent.protocols.tls import TlsHelloHandler

SNIFF_BYTES = 24          # the HTTP/2 connection preface is the longest signature

# Registered methods are recognised on any port (http_syntax.HTTP_METHODS); on an HTTP port any method token
# will do (CCM_POST and other vendor methods are seen in the wild).
HTTP_PORTS = frozenset({80, 81, 591, 3128, 8000, 8008, 8080, 8081, 8088, 8888})
TLS_PORTS = frozenset({443, 465, 853, 993, 995, 8443})
SOCKS_PORTS = frozenset({1080})

MAX_TUNNEL_DEPTH = 3      # tunnels inside tunnels (SOCKS5 -> TLS -> HTTP) followed this deep
MAX_EARLY_SERVER_BYTES = 16384   # server bytes held while the client has not yet shown its protocol

# A sniffer answers True (this protocol), False (not it) or None (need more bytes).
SniffFn = Callable[[bytes, bool], "bool | None"]
# A TCP handler's start: the flow's context, and how to open a tunnel to a port (an inner `Chooser`).
StartFn = Callable[[HandlerContext, Callable[[int], Handler]], Handler]


@dataclass(frozen=True, slots=True)
class Sniffer:
    app: str
    ports: frozenset[int]   # ports where the protocol is expected (a looser content match is accepted)
    match: SniffFn
    start: StartFn          # the handler that takes the stream


def _tls(prefix: bytes, on_port: bool) -> bool | None:
    # ContentType handshake (22), ProtocolVersion major 3, minor 0 (SSL 3.0) .. 4.
    expected = (0x16, 0x03)
    for i, want in enumerate(expected[: len(prefix)]):
        if prefix[i] != want:
            return False
    if len(prefix) < 3:
        return None
    return prefix[2] <= 0x04


def _http(prefix: bytes, on_port: bool) -> bool | None:
    prefix = prefix.lstrip(b"\r\n")  # RFC 9112 §2.2: empty lines before the request line
    start = method_prefix(prefix)
    if start is False:
        return on_port and bare_method(prefix)   # `OPTIONS` alone on its line, a malformed request
    if start is None:
        return None
    return on_port or prefix[: prefix.index(b" ")] in HTTP_METHODS


def _tls_handler(ctx: HandlerContext, tunnel: Callable[[int], Handler]) -> Handler:
    # Secrets open an inspected flow; a flow that is not inspected is named by its hello alone.
    if ctx.keylog is not None and ctx.inspect:
        # cryptography loads with the first flow to open, not at every agent's start.
        from agent.protocols.tls_handler import TlsHandler
        return TlsHandler(ctx, tunnel)
    return TlsHelloHandler(ctx, tunnel)


def _quic_handler(ctx: HandlerContext) -> Handler:
    # aioquic (~50 ms to import) loads with the first QUIC flow, not at every agent's start.
    from agent.protocols.quic_handler import QuicHandler
    return QuicHandler(ctx)


def _h2(prefix: bytes, on_port: bool) -> bool | None:
    return is_h2_preface(prefix)


SNIFFERS: tuple[Sniffer, ...] = (
    Sniffer("tls", TLS_PORTS, _tls, _tls_handler),
    Sniffer("http2", frozenset(), _h2, Http2Handler),     # the preface (RFC 9113 §3.4): h2c, or h2 in TLS
    Sniffer("http", HTTP_PORTS, _http, HttpHandler),
    Sniffer("socks5", SOCKS_PORTS, socks5.sniff, Socks5Handler),
)
_BY_APP: dict[str, Sniffer] = {s.app: s for s in SNIFFERS}


def sniff(first_bytes: bytes, dport: int) -> str | None:
    """The application protocol of a TCP stream from its first client bytes, None if undecided yet."""
    if not first_bytes:
        return None
    prefix = bytes(first_bytes[:SNIFF_BYTES])
    more = len(prefix) < SNIFF_BYTES
    undecided = False
    for sniffer in SNIFFERS:
        verdict = sniffer.match(prefix, dport in sniffer.ports)
        if verdict:
            # An earlier entry that still needs bytes goes first (`PRI * HTTP/2.0…` is h2c, not a request
            # with a vendor method on an HTTP port).
            return None if undecided and more else sniffer.app
        undecided = undecided or verdict is None
    return None if undecided and more else "unknown"


DatagramStart = Callable[[HandlerContext], Handler]

# UDP port -> (app, content check or None when the port alone decides, the handler).
DATAGRAM_PORTS: dict[int, tuple[str, Callable[[bytes], bool] | None, DatagramStart]] = {
    53: ("dns", None, DnsHandler),
}
# Recognised by content on any port (QUIC v2 on 4443, HTTP/3 on 8443): a long header of a known version.
DATAGRAM_SNIFFERS: tuple[tuple[str, Callable[[bytes], bool], DatagramStart], ...] = (
    ("quic", is_quic, _quic_handler),
)
_DATAGRAM_BY_APP: dict[str, DatagramStart] = {
    **{app: start for app, _check, start in DATAGRAM_PORTS.values()},
    **{app: start for app, _check, start in DATAGRAM_SNIFFERS},
}
MAX_UNDECIDED_DATAGRAMS = 4     # a UDP flow none of whose first datagrams is recognised is left alone


def datagram_app(payload: bytes, ports: Iterable[int]) -> str | None:
    """The application protocol of a UDP flow from one datagram and the flow's ports; None if undecided."""
    for port in ports:
        entry = DATAGRAM_PORTS.get(port)
        if entry is not None and (entry[1] is None or entry[1](payload)):
            return entry[0]
    for app, check, _start in DATAGRAM_SNIFFERS:
        if check(payload):
            return app
    return None


def datagram_candidate(ports: Iterable[int]) -> bool:
    """Whether a UDP flow on these ports is one of the registry's by its port alone (DNS); a flow on other
    ports may still be recognised by content (`datagram_app`)."""
    return any(port in DATAGRAM_PORTS for port in ports)


class Chooser:
    """The handler at the root of a TCP flow or inside a tunnel: the client's first bytes are held until
    `sniff` names a protocol, then everything goes to that entry's handler. Server bytes that come first
    are held (within `MAX_EARLY_SERVER_BYTES`) for a handler that wants them."""

    __slots__ = ("_early", "_prefix", "ctx", "depth", "dport", "inner", "outer", "wants_client",
                 "wants_server")

    def __init__(self, ctx: HandlerContext, dport: int, outer: str | None = None, depth: int = 0) -> None:
        self.ctx = ctx
        self.dport = dport
        self.outer = outer          # the tunnel this stream is inside of: the same protocol again is opaque
        self.depth = depth
        self.inner: Handler | None = None
        self._prefix = b""
        self._early: list[bytes] | None = None     # made when a server speaks first (rare: one less object)
        self.wants_client = True
        self.wants_server = ctx.keylog is not None     # only decryption reads the server's side

    def feed(self, data: bytes, from_client: bool) -> None:
        inner = self.inner
        if inner is not None:
            inner.feed(data, from_client)
            self.wants_client, self.wants_server = inner.wants_client, inner.wants_server
        elif not from_client:
            early = self._early = self._early or []
            early.append(data)
            if sum(map(len, early)) > MAX_EARLY_SERVER_BYTES:
                self._early, self.wants_server = None, False    # a server-first protocol: none of ours
        elif data:
            self._prefix += data
            app = sniff(self._prefix[:SNIFF_BYTES], self.dport)
            if app is not None:
                self._choose(app)

    def gap(self, n: int, from_client: bool) -> None:
        if self.inner is not None:
            self.inner.gap(n, from_client)
            self.wants_client, self.wants_server = self.inner.wants_client, self.inner.wants_server
        elif not from_client:
            self._early, self.wants_server = None, False
        elif not self._prefix and self.dport in HTTP_PORTS:
            # The connection's start is missing: HTTP can resync to the next request line.
            self._choose("http")
            self.gap(n, True)
        else:
            # A hole before a protocol was recognised: nothing more to learn.
            self._choose("unknown")

    def close(self) -> None:
        if self.inner is not None:
            self.inner.close()
        self._prefix, self._early = b"", None
        self.wants_client = self.wants_server = False

    def summary(self) -> Summary:
        return self.inner.summary() if self.inner is not None else Summary()

    def _choose(self, app: str) -> None:
        entry = _BY_APP.get(app)
        if entry is None or app == self.outer or self.depth > MAX_TUNNEL_DEPTH:
            # Nothing understood, or a tunnel in the same tunnel: the flow keeps what the outer layer knows.
            inner: Handler = Opaque(Summary())
        else:
            inner = entry.start(self.ctx, self._tunnel)
        self.inner = inner
        prefix, early, self._prefix, self._early = self._prefix, self._early, b"", None
        if prefix:
            inner.feed(prefix, True)
        for data in early or ():
            inner.feed(data, False)
        self.wants_client, self.wants_server = inner.wants_client, inner.wants_server

    def _tunnel(self, port: int) -> Handler:
        app = self.inner.summary().app if self.inner is not None else None
        return Chooser(self.ctx, port or self.dport, outer=app, depth=self.depth + 1)


class DatagramChooser:
    """The handler at the root of a UDP flow: the first datagram that `datagram_app` recognises picks the
    handler; each later datagram goes to it whole."""

    __slots__ = ("ctx", "inner", "ports", "tried", "wants_client", "wants_server")

    def __init__(self, ctx: HandlerContext, ports: tuple[int, int]) -> None:
        self.ctx = ctx
        self.ports = ports
        self.inner: Handler | None = None
        self.tried = 0
        self.wants_client = self.wants_server = True

    def feed(self, data: bytes, from_client: bool) -> None:
        inner = self.inner
        if inner is None:
            app = datagram_app(data, self.ports)
            if app is None:
                self.tried += 1
                if self.tried >= MAX_UNDECIDED_DATAGRAMS:
                    self.inner = Opaque(Summary())    # not ours: later datagrams cost one call each
                return
            inner = self.inner = _DATAGRAM_BY_APP[app](self.ctx)
        inner.feed(data, from_client)

    def gap(self, n: int, from_client: bool) -> None:
        return None

    def close(self) -> None:
        if self.inner is not None:
            self.inner.close()
        self.wants_client = self.wants_server = False

    def summary(self) -> Summary:
        return self.inner.summary() if self.inner is not None else Summary()
