"""The hand-off from the ICAP event loop to its recorder thread, bounded by items and by body bytes.

`put` is awaited in the loop and waits (without blocking the loop) while the backlog is full; the recorder
thread takes items with `get` and reports each one `done`, which frees its room from the loop's side. One
item always fits, whatever its size, so a body of `icap.max_body_bytes` can never wait forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue

__all__ = ["STOP", "Backlog"]

STOP = object()      # the last item: the recorder finishes


class Backlog:
    def __init__(self, max_items: int = 1024, max_bytes: int = 64 << 20) -> None:
        self.max_items, self.max_bytes = max_items, max_bytes
        self._queue: queue.SimpleQueue[tuple[object, int]] = queue.SimpleQueue()
        self._items = self._bytes = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._room: asyncio.Event | None = None

    def _fits(self, size: int) -> bool:
        return self._items == 0 or (self._items < self.max_items and self._bytes + size <= self.max_bytes)

    async def put(self, item: object, size: int = 0) -> None:
        if self._room is None:
            self._loop, self._room = asyncio.get_running_loop(), asyncio.Event()
        while not self._fits(size):
            self._room.clear()
            await self._room.wait()
        self._items += 1
        self._bytes += size
        self._queue.put((item, size))

    def put_stop(self) -> None:
        """The recorder's last item (from the loop's thread, or any thread once the loop has ended)."""
        self._queue.put((STOP, 0))

    def get(self, timeout_s: float) -> tuple[object, int] | None:
        """The next item (recorder thread); None when none came within `timeout_s`."""
        try:
            return self._queue.get(timeout=max(0.0, timeout_s))
        except queue.Empty:
            return None

    def done(self, size: int) -> None:
        """The recorder thread is through with an item of `size` bytes."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):     # the loop closed meanwhile: nobody waits for room
            loop.call_soon_threadsafe(self._release, size)

    def _release(self, size: int) -> None:
        self._items -= 1
        self._bytes -= size
        if self._room is not None:
            self._room.set()
