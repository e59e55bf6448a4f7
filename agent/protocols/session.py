"""The Session the pipeline attaches to a flow: protocol choice, then the protocol's parser.

TCP: the first client bytes go through the registry (`sniff`), then to the chosen handler — HTTP requests
are framed (RFC 9112) and handed to `on_request` when the flow is inspected, otherwise only the first Host
and the request count are kept, within a byte budget; TLS gives the ClientHello's server name (RFC 8446)
and the flow is then opaque; SOCKS5 (RFC 1928) names the destination, then the tunnelled bytes go through
the registry again; anything else is opaque at once. UDP: DNS responses (RFC 1035) feed name resolution
through `on_dns`; QUIC (RFC 9000) is marked encrypted.

A proxied flow's records (DESIGN §3) inside a SOCKS5 tunnel: dst_ip, dst_port and dst_country stay the
proxy's, the wire's destination — the bytes cross the border (or not) on the way to the proxy, and where it
sends them next is its own flow, seen where that is captured. server_name names the service the data is
for: the request's domain (in the Host slot, like an HTTP CONNECT authority), else the tunnelled protocol's
own names (TLS SNI, HTTP Host), else a DNS name seen for the requested address (`target_ip`), never the
proxy's. app is the innermost protocol understood: "http" or "tls" inside, "socks5" when nothing inside is.

The session owns buffering until a protocol is chosen (scapy's TCPSession idea); framing is the parsers'.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from agent.anomalies import AnomalySink
from agent.protocols import HTTP_PORTS, SNIFF_BYTES, datagram_app, sniff
from agent.protocols.dns import parse_answers
from agent.protocols.http import HttpRequest, HttpRequestStream
from agent.protocols.socks5 import CONNECT, Socks5Client
from agent.protocols.tls import NEED_MORE, parse_client_hello

log = logging.getLogger(__name__)

MAX_CLIENT_HELLO_BYTES = 65536   # a hello this long is not coming; stop buffering


class AppSession:
    """Session for one flow (see docs/internals.md, "sessions and protocols")."""

    # One per open flow with payload: slots keep it small (agent/config.py, max_flows).
    __slots__ = ("_decided", "_feed", "_hello", "_http", "_http_bytes", "_outer", "_prefix", "_socks",
                 "anomalies", "app", "dport", "encrypted", "flow_id", "host", "inspect", "inspected",
                 "max_body_bytes", "max_decompressed_bytes", "naming_budget", "on_dns", "on_request",
                 "requests", "sni", "sport", "target_ip", "wants_data")

    def __init__(self, flow_id: str, dport: int, *, max_body_bytes: int, max_decompressed_bytes: int,
                 naming_budget: int = 16384, inspect: bool, anomalies: AnomalySink,
                 on_request: Callable[[HttpRequest], None],
                 on_dns: Callable[[list[tuple[str, str]]], None], sport: int = 0) -> None:
        self.flow_id = flow_id
        self.dport = dport
        self.sport = sport
        self.max_body_bytes = max_body_bytes
        self.max_decompressed_bytes = max_decompressed_bytes
        self.naming_budget = naming_budget
        self.inspect = inspect
        self.anomalies = anomalies
        self.on_request = on_request
        self.on_dns = on_dns
        # What the pipeline reads after on_close.
        self.wants_data = True
        self.app = "unknown"
        self.sni: str | None = None
        self.host: str | None = None
        self.target_ip: str | None = None    # a tunnel's requested address: its DNS name names the flow
        self.requests = 0
        self.encrypted = False
        self.inspected = False
        self._decided = False
        self._prefix = b""                   # first client bytes until a protocol is chosen
        self._feed: Callable[[bytes], None] | None = None
        self._http: HttpRequestStream | None = None
        self._hello = b""                    # a ClientHello being collected (TLS only)
        self._http_bytes = 0
        self._socks: Socks5Client | None = None   # a SOCKS5 handshake being followed
        self._outer: str | None = None       # the tunnel the stream is inside of (then dport is the target's)

    # -- TCP ------------------------------------------------------------------------------------------

    def on_data(self, data: bytes) -> None:
        if not self.wants_data or not data:
            return
        if self._feed is not None:
            self._feed(data)
            return
        self._prefix += data
        app = sniff(bytes(self._prefix[:SNIFF_BYTES]), self.dport)
        if app is not None:
            self._choose(app)

    def on_gap(self, n: int) -> None:
        if not self.wants_data:
            return
        if self._http is not None:
            self._http.gap(n)
            self._after_http(self._http.feed(b""))
        elif not self._decided and not self._prefix and self.dport in HTTP_PORTS:
            # The connection's start is missing: HTTP can resync to the next request line.
            self._choose("http")
            if self._http is not None:
                self._http.gap(n)
        else:
            # A hole in a ClientHello, a handshake or before a protocol was recognised: nothing more to learn.
            if self.app == "tls" and self.sni is None:
                self.anomalies.add("tls", "client_hello_gap", f"{n} bytes missing", flow_id=self.flow_id)
            elif self._socks is not None:
                self.anomalies.add("socks5", "socks5_incomplete", f"{n} bytes missing in the handshake",
                                   flow_id=self.flow_id)
                self._socks = None
            self._decided = True
            self.wants_data = False

    def on_close(self) -> None:
        if self._http is not None:
            self._after_http(self._http.close())
        elif self.app == "tls" and self.wants_data and self._hello:
            self.anomalies.add("tls", "client_hello_incomplete", f"{len(self._hello)} bytes at close",
                               flow_id=self.flow_id)
        elif self._socks is not None:
            self.anomalies.add("socks5", "socks5_incomplete", f"handshake cut by the close, "
                                                              f"{self._socks.pending} bytes pending",
                               flow_id=self.flow_id)
        self._decided = True
        self.wants_data = False

    def _choose(self, app: str) -> None:
        self._decided = True
        if self._outer is not None and app in (self._outer, "unknown"):
            app = "unknown"     # nothing understood inside, or a tunnel in the tunnel: the flow keeps its app
        else:
            self.app = app
        prefix, self._prefix = self._prefix, b""
        self._feed = _STARTERS[app](self)
        if self._feed is None:
            self.wants_data = False
        elif prefix:
            self._feed(prefix)

    def _start_opaque(self) -> None:
        return None

    def _tunnel(self, port: int, first: bytes) -> None:
        """The rest of the stream is another protocol's: chosen afresh through the registry, with the tunnel's
        destination port for the port hints. One level only."""
        self._outer = self.app
        self.dport = port
        self._decided = False
        self._feed = None
        if first:
            self.on_data(first)

    def _start_socks5(self) -> Callable[[bytes], None]:
        self._socks = Socks5Client()
        return self._feed_socks5

    def _feed_socks5(self, data: bytes) -> None:
        client = self._socks
        assert client is not None
        rest = client.feed(data)
        if client.problem is not None:
            self.anomalies.add("socks5", *client.problem, flow_id=self.flow_id)
            self._socks = None
            self.wants_data = False
            return
        if rest is None:
            return
        self._socks = None
        target = client.target
        assert target is not None
        if target.rejected is not None:
            self.anomalies.add("socks5", "bad_host", f"domain {target.rejected} is no host name",
                               flow_id=self.flow_id)
        if target.command != CONNECT:
            # BIND (a peer connects in, after a second reply) and UDP ASSOCIATE (datagrams elsewhere) are not
            # followed: what this connection carries next is not the client's request to a server.
            self.wants_data = False
            return
        self.host, self.target_ip = target.host, target.ip
        self._tunnel(target.port, rest)

    def _start_tls(self) -> Callable[[bytes], None]:
        self.encrypted = True
        self._hello = bytearray()
        return self._feed_tls

    def _feed_tls(self, data: bytes) -> None:
        self._hello += data
        hello = parse_client_hello(bytes(self._hello))
        if hello is NEED_MORE:
            if len(self._hello) <= MAX_CLIENT_HELLO_BYTES:
                return
            self.anomalies.add("tls", "client_hello_too_long", f"over {MAX_CLIENT_HELLO_BYTES} bytes",
                               flow_id=self.flow_id)
        elif hello is None:
            self.anomalies.add("tls", "malformed_client_hello", f"{len(self._hello)} bytes",
                               flow_id=self.flow_id)
        else:
            self.sni = hello.sni
            if hello.rejected_sni is not None:
                self.anomalies.add("tls", "bad_host", f"server_name {hello.rejected_sni} is no host name",
                                   flow_id=self.flow_id)
        self._hello = b""
        self.wants_data = False

    def _start_http(self) -> Callable[[bytes], None]:
        # Without inspection bodies are only counted past, never kept or decoded.
        self._http = HttpRequestStream(self.max_body_bytes if self.inspect else 0,
                                       self.max_decompressed_bytes, self.anomalies, self.flow_id)
        return self._feed_http

    def _feed_http(self, data: bytes) -> None:
        assert self._http is not None
        self._http_bytes += len(data)
        self._after_http(self._http.feed(data))

    def _after_http(self, requests: list[HttpRequest]) -> None:
        for request in requests:
            self.requests += 1
            if self.host is None and self.requests == 1:
                self.host = request.host
            if self.inspect:
                if request.body or "?" in request.target:
                    self.inspected = True
                self.on_request(request)
        assert self._http is not None
        if self._http.done or (not self.inspect and self._http_bytes >= self.naming_budget):
            self.wants_data = False

    # -- UDP ------------------------------------------------------------------------------------------

    def on_datagram(self, outbound: bool, payload: bytes) -> None:
        if not self._decided:
            app = datagram_app(payload, (self.dport, self.sport))
            if app is None:
                return
            self._decided = True
            self.app = app
            self.encrypted = app == "quic"
        if self.app != "dns":
            return
        if outbound:
            self.requests += 1
            return
        answers = parse_answers(payload)
        if answers:
            self.on_dns(answers)


# Protocol name (registry, agent/protocols/__init__.py) -> what starts its handling; None: nothing to parse.
_STARTERS: dict[str, Callable[[AppSession], Callable[[bytes], None] | None]] = {
    "http": AppSession._start_http, "tls": AppSession._start_tls, "socks5": AppSession._start_socks5,
    "unknown": AppSession._start_opaque,
}
