"""The Session the pipeline attaches to a flow: the flow table's calls, turned into handler calls.

The flow table speaks per direction (`on_data` / `on_gap` for the client's bytes, `in_sink` for the
server's, `on_datagram` on UDP, `on_close`); this module turns that into the protocol handler interface
(agent/protocols/handler.py) of the flow's root handler, a `Chooser` from the registry
(agent/protocols/registry.py), and gives the pipeline the flow's `summary()`.

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

from collections.abc import Callable
from typing import TYPE_CHECKING

from agent.anomalies import AnomalySink
from agent.protocols.handler import Handler, HandlerContext, Summary, Waiting
from agent.protocols.http import HttpRequest
from agent.protocols.registry import Chooser, DatagramChooser

if TYPE_CHECKING:
    from agent.keylog import KeyLog

__all__ = ["AppSession"]


class _ServerSide:
    """Where the flow table delivers the server's bytes, while the flow's handler wants them (TLS with
    secrets reads the server's handshake; a protocol not yet chosen holds a few early bytes)."""

    __slots__ = ("session",)

    def __init__(self, session: AppSession) -> None:
        self.session = session

    @property
    def wants_data(self) -> bool:
        return self.session.root.wants_server

    def on_data(self, data: bytes) -> None:
        root = self.session.root
        root.feed(data, False)
        self.session.wants_data = root.wants_client

    def on_gap(self, n: int) -> None:
        root = self.session.root
        root.gap(n, False)
        self.session.wants_data = root.wants_client


class AppSession:
    """Session for one flow (see docs/internals.md, "sessions and protocols")."""

    # One per open flow with payload: slots keep it small (agent/config.py, max_flows).
    __slots__ = ("in_sink", "root", "wants_data")

    in_sink: _ServerSide | None

    def __init__(self, flow_id: str, dport: int, *, max_body_bytes: int, max_decompressed_bytes: int,
                 naming_budget: int = 16384, inspect: bool, anomalies: AnomalySink,
                 on_request: Callable[[HttpRequest], None],
                 on_dns: Callable[[list[tuple[str, str]]], None], sport: int = 0,
                 keylog: KeyLog | None = None, key_wait_bytes: int = 1 << 20, udp: bool = False,
                 on_wait: Callable[[Waiting], None] | None = None) -> None:
        ctx = HandlerContext(
            flow_id=flow_id, anomalies=anomalies, inspect=inspect, max_body_bytes=max_body_bytes,
            max_decompressed_bytes=max_decompressed_bytes, on_request=on_request, on_dns=on_dns,
            naming_budget=naming_budget, keylog=keylog, key_wait_bytes=key_wait_bytes, on_wait=on_wait)
        self.root: Handler = DatagramChooser(ctx, (dport, sport)) if udp else Chooser(ctx, dport)
        self.wants_data = True
        # Only decryption reads the server's bytes (its handshake): without secrets that direction is not
        # even reassembled, as before handlers existed (tests/security/test_agent_flow_memory.py).
        self.in_sink = _ServerSide(self) if keylog is not None and not udp else None

    def summary(self) -> Summary:
        return self.root.summary()

    # What tests and the served session read; the pipeline reads `summary()` once per record.
    @property
    def app(self) -> str:
        return self.root.summary().app

    @property
    def sni(self) -> str | None:
        return self.root.summary().sni

    @property
    def host(self) -> str | None:
        return self.root.summary().host

    @property
    def target_ip(self) -> str | None:
        return self.root.summary().target_ip

    @property
    def requests(self) -> int:
        return self.root.summary().requests

    @property
    def encrypted(self) -> bool:
        return self.root.summary().encrypted

    @property
    def inspected(self) -> bool:
        return self.root.summary().inspected

    # -- TCP ------------------------------------------------------------------------------------------

    def on_data(self, data: bytes) -> None:
        if self.wants_data and data:
            root = self.root
            root.feed(data, True)
            self.wants_data = root.wants_client

    def on_gap(self, n: int) -> None:
        if self.wants_data:
            root = self.root
            root.gap(n, True)
            self.wants_data = root.wants_client

    def on_close(self) -> None:
        self.root.close()
        self.wants_data = False

    # -- UDP ------------------------------------------------------------------------------------------

    def on_datagram(self, outbound: bool, payload: bytes) -> None:
        self.root.feed(payload, outbound)
