"""The TLS handler of a flow with logged secrets (agent/protocols/handler.py).

Both directions go to a `TlsDecryptor` (agent/protocols/tls_decrypt.py); the application data it opens is
handed, per direction and in order, to an inner handler chosen afresh through the registry — HTTP/1.1 and
HTTP/2 run inside TLS exactly as on the wire. The flow's record: app is the innermost protocol understood
("http2" for decrypted h2, "tls" when nothing was opened), visibility comes from `decrypted`, and `reason`
says why ciphertext stayed closed (no_secrets, unsupported_cipher, decrypt_failed, capture_gap).

A flow that is not inspected (domestic, not sampled) never gets this handler: its hello names it, and its
ciphertext is not worth opening (agent/protocols/registry.py chooses).
"""

from __future__ import annotations

from collections.abc import Callable

from agent.protocols.handler import Handler, HandlerContext, Summary
from agent.protocols.tls_decrypt import TlsDecryptor

__all__ = ["TlsHandler"]


class TlsHandler:
    """TLS opened with the flow's logged secrets (see the module docstring)."""

    __slots__ = ("_dec", "_inner", "_registered", "_tunnel", "ctx", "wants_client", "wants_server")

    def __init__(self, ctx: HandlerContext, tunnel: Callable[[int], Handler]) -> None:
        assert ctx.keylog is not None
        self.ctx = ctx
        self._tunnel = tunnel
        self._inner: Handler | None = None
        self._registered = False        # handed to ctx.on_wait while records wait for their secrets
        self._dec = TlsDecryptor(ctx.keylog, flow_id=ctx.flow_id, anomalies=ctx.anomalies,
                                 on_plaintext=self._plaintext, key_wait_bytes=ctx.key_wait_bytes)
        self.wants_client = self.wants_server = True

    def feed(self, data: bytes, from_client: bool) -> None:
        self._dec.feed(data, from_client)
        self._sync()

    def gap(self, n: int, from_client: bool) -> None:
        self._dec.gap(n, from_client)
        self._sync()

    def close(self) -> None:
        if self._dec.waiting and self.ctx.keylog is not None:
            # The client logs a connection's secrets as its handshake ends, moments before a short
            # connection may close: read what was appended, whatever the key log's refresh interval.
            self.ctx.keylog.refresh()
        self._dec.close()
        if self._inner is not None:
            self._inner.close()
        self.wants_client = self.wants_server = False

    @property
    def waiting(self) -> bool:
        """Records are held for secrets not logged yet (the live pipeline retries, then expires)."""
        return self._dec.waiting

    def retry(self) -> None:
        self._dec.retry()
        self._sync()

    def expire(self) -> None:
        self._dec.expire()
        self._sync()

    def summary(self) -> Summary:
        dec = self._dec
        hello = dec.client_hello
        # Opened: application data decrypted, or application keys that work on a connection that carried
        # none (a session-ticket handshake, an alert): content-less, not closed.
        opened = dec.decrypted or dec.opened
        own = Summary(app="tls", sni=hello.sni if hello is not None else None,
                      alpn=dec.alpn, encrypted=True, decrypted=opened, reason=None if opened else dec.reason)
        return own if self._inner is None else own.inside(self._inner.summary())

    def _plaintext(self, data: bytes, from_client: bool) -> None:
        inner = self._inner
        if inner is None:
            inner = self._inner = self._tunnel(0)
        inner.feed(data, from_client)

    def _sync(self) -> None:
        dec, inner = self._dec, self._inner
        # The decryptor stops reading a direction when it gave up (no keys, a failed tag, a hole). Once
        # application data flows, the inner handler decides what it still wants: HTTP/1.1 never needs the
        # server's side, whose records then are not even decrypted.
        client, server = dec.reading(True), dec.reading(False)
        if inner is not None and dec.decrypted:
            client, server = client and inner.wants_client, server and inner.wants_server
        if not self.waiting:
            self._registered = False        # a later wait (for the next secret) registers again
        elif not self._registered and self.ctx.on_wait is not None:
            self._registered = True
            self.ctx.on_wait(self)
        self.wants_client, self.wants_server = client, server
