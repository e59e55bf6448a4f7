"""uvicorn's HTTP/1.1 protocol with two guards it does not have by itself (outside review of issue 9: an
unauthenticated flood of 20,000 idle connections took every file descriptor, stalled /healthz and every
tenant's upload, and asyncio logged a traceback on each failed accept — 927 MB of log in four minutes).

- A connection must send a complete request head within `header_timeout_s` of opening (and of finishing
  its previous response: uvicorn's keep-alive timeout); otherwise it is closed. Bodies have their own
  deadline in the service (`limits.upload_timeout_s`).
- At most `max_connections` are open: a new one beyond that closes the oldest connection that has not
  sent a request yet (an idle flood evicts itself, not the clients that are being served), or, when
  every connection is busy, itself.

Built per service by `guarded_protocol(listen)` and handed to `uvicorn.run(http=…)`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from collector.config import Listen

__all__ = ["GuardedH11Protocol", "guarded_protocol"]


class GuardedH11Protocol(H11Protocol):
    header_timeout_s: float = 10.0
    max_connections: int = 1000

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._opened = time.monotonic()
        self._head_timer: asyncio.TimerHandle | None = self.loop.call_later(self.header_timeout_s,
                                                                            self._head_timeout)
        if len(self.connections) > self.max_connections:
            idle = [c for c in self.connections
                    if isinstance(c, GuardedH11Protocol) and c is not self and c._waiting_for_head()]
            victim = min(idle, key=lambda c: c._opened) if idle else self
            victim._close("over max_connections")

    def _waiting_for_head(self) -> bool:
        return self.cycle is None and not self.transport.is_closing()

    def handle_events(self) -> None:
        super().handle_events()
        if self.cycle is not None and self._head_timer is not None:   # a request head arrived
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self._waiting_for_head():
            self._close("no request head within header_timeout_s")

    def _close(self, why: str) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        self.logger.debug("closing %s: %s", self.client, why)
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if getattr(self, "_head_timer", None) is not None:
            self._head_timer.cancel()        # type: ignore[union-attr]
            self._head_timer = None
        super().connection_lost(exc)


def guarded_protocol(listen: Listen) -> type[GuardedH11Protocol]:
    """A protocol class carrying this service's limits (uvicorn instantiates it per connection)."""
    attrs: dict[str, Any] = {"header_timeout_s": listen.header_timeout_s,
                             "max_connections": listen.max_connections}
    return type("ServiceH11Protocol", (GuardedH11Protocol,), attrs)
