"""How the service receives request bodies (DESIGN §9 "Hostile input"): against a size cap and a deadline,
in per-token and global slots, with CPU-heavy parsing off the event loop.

One `BodyGate` per app (on `app.state.bodies`, handed to routes by collector/deps.py). Batches wait for a
decoding slot rather than all decoding at once: each can hold max_upload_bytes in memory. A body is
received before a decoding slot is taken, under a deadline, and one token has at most
max_uploads_per_token uploads in flight: a slow or hostile agent holds only its own slots. Parsing a
filing holds a worker thread and the GIL for up to seconds: a few at a time, each token's in its own
slots, so that one token's documents cannot starve the thread pool the routes share.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from collector.auth import Principal
from collector.config import CollectorConfig, Limits
from collector.errors import RequestProblem, shown

__all__ = ["SMALL_BODY", "BodyGate"]

log = logging.getLogger(__name__)

SMALL_BODY = 64 * 1024     # JSON requests other than uploads (a check run)
T = TypeVar("T")


@dataclass(frozen=True, slots=True, eq=False)
class BodyGate:
    limits: Limits
    max_upload_bytes: int
    uploads: asyncio.Semaphore            # batches decoded at once
    parsing: asyncio.Semaphore            # documents parsed at once
    per_token: defaultdict[str, asyncio.Semaphore] = field(repr=False)

    @classmethod
    def of(cls, config: CollectorConfig) -> BodyGate:
        limits = config.limits
        return cls(limits, config.max_upload_bytes, asyncio.Semaphore(limits.max_concurrent_uploads),
                   asyncio.Semaphore(limits.max_concurrent_documents),
                   defaultdict(lambda: asyncio.Semaphore(limits.max_uploads_per_token)))

    def slot(self, who: Principal) -> asyncio.Semaphore:
        """The caller's own in-flight slots (uploads and documents alike)."""
        return self.per_token[who.name]

    async def read(self, request: Request, cap: int, what: str = "max_upload_bytes") -> bytes:
        """The whole body, or 413 past `cap` (declared or streamed), 408 past limits.upload_timeout_s."""
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > cap:
            raise RequestProblem(413, "body", f"body: {shown(declared, 24)} bytes exceeds {what} {cap}")

        async def receive() -> bytes:
            chunks, size = [], 0
            async for chunk in request.stream():
                size += len(chunk)
                if size > cap:
                    raise RequestProblem(413, "body", f"body: exceeds {what} {cap}")
                chunks.append(chunk)
            return b"".join(chunks)

        timeout = self.limits.upload_timeout_s
        try:
            return await asyncio.wait_for(receive(), timeout)
        except TimeoutError:
            raise RequestProblem(408, "body", f"body: not received within limits.upload_timeout_s "
                                 f"{timeout:g} s") from None
        except ClientDisconnect:
            # Nobody is left to answer; not a server error (no traceback in the log).
            log.info("%s %s: client disconnected during the body", request.method, request.url.path)
            raise RequestProblem(400, "body", "body: the client disconnected") from None

    async def document(self, who: Principal, request: Request, parse: Callable[..., T], *args: Any) -> T:
        """A filing or list body read in the caller's slots and parsed by `parse(body, *args, limits)` in
        the thread pool, a few at a time."""
        async with self.slot(who):
            body = await self.read(request, self.limits.max_document_bytes, "max_document_bytes")
            async with self.parsing:
                return await run_in_threadpool(functools.partial(parse, body, *args, self.limits))
