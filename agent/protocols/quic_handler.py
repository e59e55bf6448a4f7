"""The QUIC handler of a UDP flow (agent/protocols/handler.py): `QuicFlow` (agent/protocols/quic.py) per
datagram — the Initial packets name the flow with no secrets (SNI, ALPN), and with logged secrets the
client's 1-RTT packets are opened and its HTTP/3 requests go to the same inspection as HTTP/1.x.

A flow that is not inspected is given no key log: its Initial names it and its 1-RTT packets are not even
parsed. app is "http3" once the client's application data was opened, else "quic".
"""

from __future__ import annotations

from agent.protocols.handler import HandlerContext, Summary, inspect_request
from agent.protocols.http import HttpRequest
from agent.protocols.quic import QuicFlow

__all__ = ["QuicHandler"]


class QuicHandler:
    """One QUIC connection (see the module docstring); each `feed` is one datagram."""

    __slots__ = ("_flow", "_inspected", "_registered", "_truncated", "ctx", "wants_client", "wants_server")

    def __init__(self, ctx: HandlerContext) -> None:
        self.ctx = ctx
        self._flow = QuicFlow(on_request=self._request, anomalies=ctx.anomalies,
                              keylog=ctx.keylog if ctx.inspect else None, flow_id=ctx.flow_id,
                              max_body_bytes=ctx.max_body_bytes,
                              max_decompressed_bytes=ctx.max_decompressed_bytes, inspect=ctx.inspect)
        self._inspected = self._registered = self._truncated = False
        self.wants_client = self.wants_server = True

    def feed(self, data: bytes, from_client: bool) -> None:
        self._flow.on_datagram(from_client, data)
        if not self.waiting:
            self._registered = False        # a later wait (for the next secret) registers again
        elif not self._registered and self.ctx.on_wait is not None:
            self._registered = True
            self.ctx.on_wait(self)

    def gap(self, n: int, from_client: bool) -> None:
        return None

    def close(self) -> None:
        self._flow.close()
        self.wants_client = self.wants_server = False

    @property
    def waiting(self) -> bool:
        """Protected packets are held for secrets not logged yet (the live pipeline retries, then expires)."""
        flow = self._flow
        return flow.keylog is not None and not flow.decrypted and flow.held_packets > 0

    def retry(self) -> None:
        self._flow.retry()

    def expire(self) -> None:
        self._flow.give_up()

    def summary(self) -> Summary:
        flow = self._flow
        return Summary(app="http3" if flow.decrypted else "quic", sni=flow.sni, alpn=flow.alpn,
                       requests=flow.requests, encrypted=True, decrypted=flow.decrypted,
                       inspected=self._inspected, reason=flow.reason,
                       truncated=self._truncated)

    def _request(self, request: HttpRequest) -> None:
        seen, cut = inspect_request(self.ctx, request)
        self._inspected, self._truncated = self._inspected or seen, self._truncated or cut
