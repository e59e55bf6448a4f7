"""The ICAP service's connections (RFC 3507; `egress-agent icap`, DESIGN §8): a monitor that never changes
or blocks a message.

One asyncio task per proxy connection, many transactions per connection (keep-alive). Peers outside
`icap.allow` are closed before a byte is read; past `icap.max_connections` a new connection gets
`503` and is closed. Per transaction (agent/icap_wire.py reads it):

* `OPTIONS` (any service path): `Methods` — both REQMOD and RESPMOD, or the one a path ending in `reqmod` or
  `respmod` implies (Squid only checks that its vectoring point's method is listed; RFC 3507 §4.10.2 wants
  one method per service URI, which such paths give) —, `Preview: icap.preview_bytes` with
  `Transfer-Preview: *` (Squid sends previews only to a service that advertises a size, and only for the
  file extensions `Transfer-Preview` lists), `Allow: 204`, `ISTag`, `Max-Connections`, `Options-TTL`.
* `REQMOD`: the whole body is read — after a preview that did not end with `ieof`, `100 Continue` asks for
  the rest. Then `204 No Content` when 204 is allowed (the client sent `Allow: 204`, or the preview held
  the whole body), else `200 OK` echoing the encapsulated message unchanged: its header block byte for
  byte and its body re-chunked, streamed back while it is read so nothing past `icap.max_body_bytes` is
  held. One `Exchange` per request goes to the recorder.
* `RESPMOD`: an answer to a client outside `internal_networks` is a pull (the export is the response): read
  like a REQMOD and recorded. An internal client's download is answered `204` right after its preview
  (not read further); its `X-Server-IP` names the waiting request's server (`Named`).
* Malformed input: one ICAP error (400, 405, 408, 505) with an `X-Error` header naming what is wrong, then
  close; an `icap/<name>` anomaly. A transaction whose answer already started is just closed.

The loop never waits on detectors, disk or DNS: exchanges go through a bounded `Backlog` to the one
recorder thread (agent/icap_service.py); when that falls behind, `put` waits (the proxy's ICAP timeouts
and `bypass=on` keep its users served meanwhile).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import logging
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from importlib.metadata import PackageNotFoundError, version

from agent.config import AgentConfig
from agent.flows import InternalNetworks
from agent.icap_backlog import Backlog
from agent.icap_flows import Exchange, Named, Problem, meta_ip
from agent.icap_wire import ChunkReader, IcapError, IcapRequest, WireReader, read_request

log = logging.getLogger(__name__)

__all__ = ["Counters", "IcapServer", "istag"]

MAX_PREVIEW = 1 << 20          # preview bytes held for an echo; a larger Preview header is refused


def istag() -> str:
    try:
        v = version("egresswatch")
    except PackageNotFoundError:    # pragma: no cover - run from a source tree without metadata
        v = "0"
    return f'"egresswatch-{v}"'


@dataclass(slots=True)
class Counters:
    connections: int = 0
    refused: int = 0
    transactions: int = 0
    body_bytes: int = 0
    errors: int = 0
    busy_503: int = 0


@dataclass(slots=True, eq=False)     # hashed by identity: a member of IcapServer.conns
class _Conn:
    busy: bool = False
    responded: bool = False            # the current transaction's answer has started
    echo: bool = False                 # ... and it is a 200 whose body is being echoed
    pending: bytes = b""               # ... or it is this, sent once the exchange is queued
    task: asyncio.Task[None] | None = field(default=None, repr=False)


def _peer_ip(writer: asyncio.StreamWriter) -> str | None:
    peer = writer.get_extra_info("peername")
    if not peer:
        return None
    try:
        ip = ipaddress.ip_address(str(peer[0]).split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


class IcapServer:
    """The connection handler of `asyncio.start_server`; exchanges go to `backlog`."""

    def __init__(self, config: AgentConfig, backlog: Backlog) -> None:
        icap = config.icap
        self.icap, self.backlog = icap, backlog
        self.allow = InternalNetworks(icap.allow)
        self.internal = InternalNetworks(config.internal_networks)
        self.istag = istag()
        self.start_ns = time.time_ns()
        self._numbers = itertools.count()
        self.counters = Counters()
        self.conns: set[_Conn] = set()
        self.stopping = False

    def key(self) -> str:
        return f"{self.start_ns}:{next(self._numbers)}"

    # -- connections ----------------------------------------------------------------------------------

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ip = _peer_ip(writer)
        if ip is None or not self.allow.contains(ip):
            self.counters.refused += 1
            log.debug("icap: refused a peer outside icap.allow")
            writer.close()
            return
        if len(self.conns) >= self.icap.max_connections or self.stopping:
            self.counters.busy_503 += 1
            writer.write(self._head(503, "Service Unavailable", [("X-Error", "too many connections")], True))
            await self._close(writer)
            return
        conn = _Conn(task=asyncio.current_task())
        self.conns.add(conn)
        self.counters.connections += 1
        r = WireReader(reader, self.icap.idle_timeout_s)
        try:
            while not self.stopping and await r.wait_request(self.icap.keepalive_timeout_s):
                conn.busy, conn.responded = True, False
                try:
                    keep = await self._transaction(r, writer, conn)
                except IcapError as e:
                    self.counters.errors += 1
                    await self.backlog.put(Problem(e.anomaly, e.reason))
                    if not conn.responded:
                        writer.write(self._head(e.status, _REASONS.get(e.status, "Bad Request"),
                                                [("X-Error", e.reason)], True))
                    break
                finally:
                    conn.busy = False
                if not keep:
                    break
        except (ConnectionError, TimeoutError):
            pass        # the proxy went away mid-answer: nothing to tell it
        except asyncio.CancelledError:
            pass        # stopping
        except Exception:
            self.counters.errors += 1
            log.exception("icap: a connection failed")
        finally:
            self.conns.discard(conn)
            await self._close(writer)

    async def _close(self, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.drain(), self.icap.idle_timeout_s)
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _send(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        writer.write(data)
        try:
            await asyncio.wait_for(writer.drain(), self.icap.idle_timeout_s)
        except TimeoutError:
            raise ConnectionError("the proxy reads no answer") from None

    # -- transactions ---------------------------------------------------------------------------------

    async def _transaction(self, r: WireReader, writer: asyncio.StreamWriter, conn: _Conn) -> bool:
        started = time.time()
        request = await read_request(r)
        self.counters.transactions += 1
        if request.method == "OPTIONS":
            if request.has_body:
                await ChunkReader(r).drain()
            conn.responded = True
            await self._send(writer, self._options(request))
            return request.value("connection") != "close"
        if (request.preview or 0) > MAX_PREVIEW:
            raise IcapError(400, f"Preview over {MAX_PREVIEW} bytes")
        client = meta_ip(request, "x-client-ip")
        pull = request.method == "RESPMOD" and client is not None and not self.internal.contains(client)
        record = request.method == "REQMOD" or pull
        head = request.req_hdr
        if request.method == "REQMOD" and head is not None and head.start[0] == "CONNECT":
            record = False   # a tunnel: its bumped requests come as their own REQMODs, each a flow
        kept, size = await self._exchange(request, r, writer, conn, keep=record, read_all=record)
        self.counters.body_bytes += size
        if record:
            await self.backlog.put(Exchange(self.key(), started, time.time(), request, kept, size, pull),
                                   len(kept))
        server = meta_ip(request, "x-server-ip")
        correlation = request.value("x-transaction-id")
        if request.method == "RESPMOD" and server and correlation:
            await self.backlog.put(Named(correlation, server))
        await self._finish(writer, conn)
        return request.value("connection") != "close"

    async def _exchange(self, request: IcapRequest, r: WireReader, writer: asyncio.StreamWriter, conn: _Conn,
                        *, keep: bool, read_all: bool) -> tuple[bytes, int]:
        """Read the body as the protocol asks and answer (all but an echo's last chunk, see `_finish`);
        (body bytes kept — at most icap.max_body_bytes —, body bytes read)."""
        kept = bytearray()
        limit = self.icap.max_body_bytes if keep else 0
        size = 0
        conn.responded = False
        conn.echo = False

        def take(piece: bytes) -> None:
            nonlocal size
            size += len(piece)
            if len(kept) < limit:
                kept.extend(piece[: limit - len(kept)])

        if not request.has_body:
            allowed = request.allow_204 or request.preview is not None   # a null-body preview is whole
            await self._answer(writer, conn, request, allowed)
            return bytes(kept), size
        chunks = ChunkReader(r)
        preview: bytearray | None = None
        if request.preview is not None:
            preview = bytearray()
            while (piece := await chunks.next()) is not None:
                preview += piece
                if len(preview) > request.preview:
                    raise IcapError(400, "preview longer than its Preview header")
                take(piece)
            if chunks.ieof or not read_all:
                await self._answer(writer, conn, request, True)
                return bytes(kept), size
            conn.responded = True
            await self._send(writer, b"ICAP/1.0 100 Continue\r\n\r\n")
            chunks.resume()
        if not request.allow_204:
            await self._start_echo(writer, conn, request)
            if preview:
                await self._send(writer, _chunk(bytes(preview)))
        while (piece := await chunks.next()) is not None:
            take(piece)
            if conn.echo:
                await self._send(writer, _chunk(piece))
        if not conn.echo:
            await self._answer(writer, conn, request, True)
        return bytes(kept), size

    async def _answer(self, writer: asyncio.StreamWriter, conn: _Conn, request: IcapRequest,
                      allowed_204: bool) -> None:
        if allowed_204:
            conn.responded = True
            conn.pending = self._head(204, "No Content", [("Encapsulated", "null-body=0")])
        else:
            await self._start_echo(writer, conn, request, body=False)

    async def _start_echo(self, writer: asyncio.StreamWriter, conn: _Conn, request: IcapRequest, *,
                          body: bool = True) -> None:
        """`200 OK` with the encapsulated HTTP header block as received; the body follows as chunks."""
        hdr = request.req_hdr if request.method == "REQMOD" else request.res_hdr
        raw = hdr.raw if hdr is not None else b""
        kind = "req" if request.method == "REQMOD" else "res"
        parts = ([f"{kind}-hdr=0"] if hdr is not None else []) + [f"{kind}-body={len(raw)}" if body
                                                                 else f"null-body={len(raw)}"]
        conn.responded = True
        conn.echo = body
        conn.pending = b""
        await self._send(writer, self._head(200, "OK", [("Encapsulated", ", ".join(parts))]) + raw)
        if not body:
            conn.pending = b""

    async def _finish(self, writer: asyncio.StreamWriter, conn: _Conn) -> None:
        """The answer's last part, sent once the exchange is queued (the request is recorded before the
        proxy forwards it, so the RESPMOD that names its server finds it waiting)."""
        end = b"0\r\n\r\n" if conn.echo else conn.pending
        conn.echo, conn.pending = False, b""
        if end:
            await self._send(writer, end)

    # -- answers --------------------------------------------------------------------------------------

    def _head(self, status: int, reason: str, fields: list[tuple[str, str]], close: bool = False) -> bytes:
        lines = [f"ICAP/1.0 {status} {reason}", f"Date: {formatdate(usegmt=True)}", f"ISTag: {self.istag}",
                 "Server: egresswatch", *(f"{n}: {v}" for n, v in fields)]
        if close:
            lines += ["Connection: close", "Encapsulated: null-body=0"]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _options(self, request: IcapRequest) -> bytes:
        path = request.service.rstrip("/").lower()
        methods = ("REQMOD" if path.endswith("reqmod") else "RESPMOD" if path.endswith("respmod")
                   else "REQMOD, RESPMOD")
        return self._head(200, "OK", [
            ("Methods", methods), ("Service", "egresswatch ICAP monitor"),
            ("Max-Connections", str(self.icap.max_connections)),
            ("Options-TTL", str(self.icap.options_ttl_s)),
            ("Allow", "204"), ("Preview", str(self.icap.preview_bytes)), ("Transfer-Preview", "*"),
            ("Encapsulated", "null-body=0")])


_REASONS = {400: "Bad Request", 405: "Method Not Allowed", 408: "Request Timeout",
            503: "Service Unavailable", 505: "ICAP Version Not Supported"}


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data) if data else b""
