"""The session of a TCP flow an external client opened to an internal server (DESIGN §3 `initiator =
external`): a pull, where the export is the server's answer.

Both directions are reassembled. The client's bytes (the flow's in direction, `in_sink`) go through an
ordinary `AppSession` — protocol choice, HTTP request framing, TLS server name — which names the flow and
counts its requests; request bodies are not kept, since they came from abroad. The server's bytes (the out
direction, this object's `on_data`) are framed as HTTP/1.x responses once the client side has spoken HTTP,
paired with the requests in order, and every response with content goes to `on_response`, within the same
budgets as a pushed request body: `max_body_bytes` per flow, `max_decompressed_bytes` per message.

The HTTP/2 handler of the next issue is to feed `on_response` in the same way (agent/protocols/http_body.py
holds what it shares with HTTP/1.x), so that pulls over h2 are inspected too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from agent.anomalies import AnomalySink
from agent.protocols.handler import Summary
from agent.protocols.http import HttpRequest
from agent.protocols.http_body import HttpResponse
from agent.protocols.http_response import HttpResponseStream
from agent.protocols.session import AppSession

__all__ = ["ServedSession"]

MAX_EARLY_BYTES = 65536   # server bytes held while the client side has not shown HTTP yet


def _ignore_request(request: HttpRequest) -> None:
    """The client side of a flow whose responses are not inspected hands no request over."""


class _ClientSide:
    """Where the flow table delivers the client's bytes: the client's `AppSession`, and then the server
    bytes that arrived before the requests they answer were whole (all of this delivery's requests are
    known by then, so pipelined responses pair in order)."""

    __slots__ = ("served",)

    def __init__(self, served: ServedSession) -> None:
        self.served = served

    @property
    def wants_data(self) -> bool:
        return self.served.client.wants_data

    def on_data(self, data: bytes) -> None:
        self.served.client.on_data(data)
        self.served.feed_early()

    def on_gap(self, n: int) -> None:
        self.served.client.on_gap(n)
        self.served.feed_early()


class ServedSession:
    """Session for a flow an external client initiated (see the module docstring)."""

    __slots__ = ("_early", "_stream", "anomalies", "client", "flow_id", "in_sink", "inspected",
                 "max_body_bytes", "max_decompressed_bytes", "on_response", "responses", "wants_data")

    def __init__(self, flow_id: str, server_port: int, client_port: int, *, max_body_bytes: int,
                 max_decompressed_bytes: int, inspect: bool, anomalies: AnomalySink,
                 on_response: Callable[[HttpResponse], None],
                 on_dns: Callable[[list[tuple[str, str]]], None]) -> None:
        self.flow_id = flow_id
        self.anomalies = anomalies
        self.max_body_bytes = max_body_bytes
        self.max_decompressed_bytes = max_decompressed_bytes
        self.on_response = on_response
        # inspect=True with no body budget: every request is framed and handed over (for pairing), none
        # keeps its body. Without inspection the client side only names the flow, within its naming budget.
        self.client = AppSession(
            flow_id, server_port, sport=client_port, max_body_bytes=0,
            max_decompressed_bytes=max_decompressed_bytes, inspect=inspect, anomalies=anomalies,
            on_request=self._request if inspect else _ignore_request, on_dns=on_dns)
        self.in_sink = _ClientSide(self)    # the flow table delivers the in direction (client bytes) here
        self.wants_data = inspect           # ... and the out direction (server bytes) to this object
        self.inspected = False
        self.responses = 0
        self._stream: HttpResponseStream | None = None
        self._early = bytearray()

    def summary(self) -> Summary:
        """What the pipeline reads: the client side names the flow and counts its requests; the flow is
        inspected when a response's content was."""
        return replace(self.client.summary(), inspected=self.inspected)

    # What tests read of a session.
    @property
    def app(self) -> str:
        return self.client.app

    @property
    def sni(self) -> str | None:
        return self.client.sni

    @property
    def host(self) -> str | None:
        return self.client.host

    @property
    def requests(self) -> int:
        return self.client.requests

    @property
    def encrypted(self) -> bool:
        return self.client.encrypted

    # -- the client's requests ------------------------------------------------------------------------

    def _request(self, request: HttpRequest) -> None:
        if not self.wants_data:
            return
        if self._stream is None:
            self._stream = HttpResponseStream(self.max_body_bytes, self.max_decompressed_bytes,
                                              self.anomalies, self.flow_id)
        self._stream.expect(request.method, request.target)

    def feed_early(self) -> None:
        """Frame the server bytes held until requests were known (called once the client's bytes of one
        delivery are parsed, and before any later server bytes)."""
        if self._early and self._stream is not None and self.wants_data:
            early, self._early = bytes(self._early), bytearray()
            self._responses(self._stream.feed(early))

    # -- the server's responses -----------------------------------------------------------------------

    def on_data(self, data: bytes) -> None:
        if not self.wants_data or not data:
            return
        if self._stream is not None:
            self.feed_early()               # held bytes first, whatever stopped their delivery
            self._responses(self._stream.feed(data))
            return
        if self.client.app not in ("http", "unknown"):
            self.wants_data = False         # TLS or another protocol: no response to frame
            return
        self._early += data
        if len(self._early) > MAX_EARLY_BYTES:
            # The server speaks first or the client never sends a request we understand: not HTTP.
            self._early = bytearray()
            self.wants_data = False

    def on_gap(self, n: int) -> None:
        if not self.wants_data:
            return
        if self._stream is not None:
            self.feed_early()
            self._stream.gap(n)
            self._responses(self._stream.feed(b""))
        else:
            self._early = bytearray()       # a response's start is missing before any request was seen
            self.wants_data = False

    def on_close(self) -> None:
        self.client.on_close()              # the last requests first: their responses pair with them
        self.feed_early()
        if self._stream is not None and self.wants_data:
            self._responses(self._stream.close())
        self._early = bytearray()
        self.wants_data = False

    def _responses(self, responses: list[HttpResponse]) -> None:
        for response in responses:
            self.responses += 1
            if response.body:
                self.inspected = True
                self.on_response(response)
        if self._stream is not None and self._stream.done:
            self.wants_data = False

    # -- UDP (never: inbound datagram flows keep the ordinary session) ----------------------------------

    def on_datagram(self, outbound: bool, payload: bytes) -> None:
        self.client.on_datagram(outbound, payload)
