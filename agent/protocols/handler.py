"""The protocol handler interface: what every application-protocol parser of a flow offers the session.

A handler gets one flow's bytes in order, each direction separately (`feed(data, from_client)`; on UDP
each call is one whole datagram), holes it will never see (`gap`), and the end (`close`). What it learned
for the flow's record is its `summary()`, a frozen `Summary`. Handlers nest: a tunnel (SOCKS5) or a
decryption layer (TLS with logged secrets) hands the bytes it carries to an inner handler chosen afresh
through the registry (agent/protocols/registry.py), exactly as if they had come off the wire, and merges the
inner summary into its own (`Summary.inside`).

`wants_client` / `wants_server` are plain attributes, read per delivery by the session: False once the
handler has nothing more to learn from that direction, after which that direction is no longer reassembled
for it (the flow table still counts its bytes).

Everything a handler needs from the pipeline comes in one frozen `HandlerContext` per flow: budgets, the
anomaly sink, whether the flow is inspected, where inspected requests go, where DNS answers go, and the
key log (None when no secrets were given).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

from agent.anomalies import AnomalySink

if TYPE_CHECKING:
    from agent.keylog import KeyLog
    from agent.protocols.http import HttpRequest

__all__ = ["Handler", "HandlerContext", "Opaque", "Summary", "Waiting", "inspect_request"]


@dataclass(frozen=True, slots=True)
class Summary:
    """What a handler learned of its flow, as the flow record needs it (DESIGN §3)."""

    app: str = "unknown"            # the innermost protocol understood
    sni: str | None = None          # TLS / QUIC server name
    host: str | None = None         # HTTP Host / :authority of the first request, or a tunnel's domain
    target_ip: str | None = None    # a tunnel's requested address: its DNS name names the flow
    alpn: str | None = None         # the server's choice when seen or decrypted
    requests: int = 0
    encrypted: bool = False         # opaque bytes on the wire (TLS, QUIC)
    decrypted: bool = False         # ... opened with logged secrets
    inspected: bool = False         # content went to the detectors
    reason: str | None = None       # why content that was there was not read (DESIGN §3 uninspected_reason)
    truncated: bool = False         # a budget cut a message's body (max_payload_bytes_per_flow, …)
    visibility: str | None = None   # a handler that knows how the content was seen (ICAP "proxy", HAR "har")

    def inside(self, inner: Summary) -> Summary:
        """This (outer) summary with what the inner handler learned: its app if it understood one, its
        names where the outer has none, its requests and inspection."""
        return replace(
            self,
            app=inner.app if inner.app != "unknown" else self.app,
            sni=self.sni or inner.sni,
            host=self.host or inner.host,
            target_ip=self.target_ip or inner.target_ip,
            alpn=self.alpn or inner.alpn,
            requests=self.requests + inner.requests,
            encrypted=self.encrypted or inner.encrypted,
            decrypted=self.decrypted or inner.decrypted,
            inspected=self.inspected or inner.inspected,
            reason=self.reason or inner.reason,
            truncated=self.truncated or inner.truncated,
            visibility=self.visibility or inner.visibility,
        )


@dataclass(frozen=True, slots=True)
class HandlerContext:
    """One flow's budgets and outlets, shared by all its handlers."""

    flow_id: str
    anomalies: AnomalySink
    inspect: bool                                # content goes to the detectors
    max_body_bytes: int                          # kept per flow
    max_decompressed_bytes: int                  # per message
    on_request: Callable[[HttpRequest], None]    # an inspected flow's requests, in order
    on_dns: Callable[[list[tuple[str, str]]], None]
    naming_budget: int = 16384                   # bytes read of an uninspected flow to name it
    keylog: KeyLog | None = None                 # secrets for TLS / QUIC, None: none were given
    key_wait_bytes: int = 1 << 20                # ciphertext held per flow while its secrets are awaited
    # A live run's list of handlers holding ciphertext for secrets not logged yet: it retries them as the
    # key log grows and gives up after tls.key_wait_s (None: a capture file, whose key logs are complete).
    on_wait: Callable[[Waiting], None] | None = None



class Waiting(Protocol):
    """A handler that may hold ciphertext for secrets not logged yet (TLS, QUIC)."""

    @property
    def waiting(self) -> bool: ...

    def retry(self) -> None: ...

    def expire(self) -> None: ...


class Handler(Protocol):
    """An application-protocol handler (see the module docstring)."""

    wants_client: bool
    wants_server: bool

    def feed(self, data: bytes, from_client: bool) -> None: ...

    def gap(self, n: int, from_client: bool) -> None: ...

    def close(self) -> None: ...

    def summary(self) -> Summary: ...


def inspect_request(ctx: HandlerContext, request: HttpRequest) -> tuple[bool, bool]:
    """An inspected flow's request to the detectors, alike for HTTP/1.x, HTTP/2 and HTTP/3: (content reached
    them — a body or a query string —, a budget cut the body). A flow not inspected hands nothing over."""
    if not ctx.inspect:
        return False, False
    ctx.on_request(request)
    return bool(request.body) or "?" in request.target, request.body_truncated


class Opaque:
    """A protocol the agent does not parse (or nothing understood inside a tunnel): nothing to read."""

    __slots__ = ("_summary", "wants_client", "wants_server")

    def __init__(self, summary: Summary) -> None:
        self._summary = summary
        self.wants_client = self.wants_server = False

    def feed(self, data: bytes, from_client: bool) -> None:
        return None

    def gap(self, n: int, from_client: bool) -> None:
        return None

    def close(self) -> None:
        return None

    def summary(self) -> Summary:
        return self._summary
