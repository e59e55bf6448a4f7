"""Content handed over to the agent instead of read off the wire: a proxy's ICAP transactions
(agent/icap.py) and a browser's HAR entries (agent/har.py), DESIGN §3 and §8.

Both sources hand over what a capture would have had to dig out of packets: who sent which HTTP messages
to which server. `HandoverSink` turns each `HandedFlow` into the records a capture writes: the messages go
through the same `Inspector` (detections, pi_values, with the same record keys), the flow gets one flows
row with visibility `proxy` or `har`, and bodies the source cut are anomalies. Records reach the same spool
(and so the same shipper) as a capture's.

The server's address: a HAR entry may carry the browser's `serverIPAddress`; a proxy knows the upstream
address only once it has connected (Squid passes it with the RESPMOD of the answer, not with the REQMOD of
the request). A flow added with `wait_for` is held, bodies included, until `address()` names its server or
`icap.address_wait_s` passes; then the name is resolved here and the row says so (`dst_ip_source`:
`proxy`, `browser`, `resolved`, or `unknown` with dst_ip 0.0.0.0). Country, cross-border and whether the
flow is an export the agent inspects are decided only then, with the same rules as for a captured flow.

Counted once (DESIGN §8): when the same agent also captures the proxy's egress on the wire
(`icap.proxy_networks`), the wire rows carry the bytes and the handed-over rows carry none
(`count_bytes=False`); persons and field types come from the handed-over content only, since the wire side
does not inspect the proxy's flows (agent/pipeline.py).

Single-threaded: the ICAP server calls it from one recorder thread, HAR import from the run itself.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import socket
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from agent.anomalies import AnomalySink
from agent.config import AgentConfig
from agent.coverage import CoverageFacts, uninspected_reason, visibility
from agent.destinations import Destinations
from agent.flows import InternalNetworks
from agent.inspection import Inspector, InspectStats
from agent.records import DST_IP_SOURCES, FlowRecord, utc
from agent.sampling import FlowSampler
from agent.spool import Spool

log = logging.getLogger(__name__)

__all__ = ["DST_IP_SOURCES", "UNKNOWN_ADDRESS", "HandedFlow", "HandedMessage", "HandoverSink",
           "handed_address", "resolve_name"]

CST = ZoneInfo("Asia/Shanghai")
UNKNOWN_ADDRESS = "0.0.0.0"
HANDED_VISIBILITIES = ("proxy", "har")
FLUSH_ROWS = 10_000                 # flows and anomaly rows held before a batch is written
MAX_WAITING = 10_000                # flows held for their server's address at once (oldest resolved first)
MAX_WAITING_BYTES = 64 << 20        # bodies held for them, all flows together
RESOLVE_CACHE = 10_000


@dataclass(frozen=True, slots=True)
class HandedMessage:
    """One HTTP message as the source handed it over: a request (its target's query string is inspected
    too), or the answer of a pull (target "")."""

    target: str
    body: bytes
    content_type: str | None
    truncated: bool = False      # the source cut the body (the browser, or icap.max_body_bytes)
    size: int | None = None      # the whole body's length when it was cut and the source said so


@dataclass(frozen=True, slots=True)
class HandedFlow:
    """One flow the source saw: an ICAP transaction, or the HAR entries of one connection.

    `key` is unique within the agent (deterministic where the source allows: a HAR file's digest and its
    connection id); the flow id is derived from it. `dst_ip` None: the source did not know the address."""

    key: str
    visibility: str                   # proxy | har
    ts_start: float
    ts_end: float
    server_name: str | None
    dst_port: int
    messages: tuple[HandedMessage, ...] = ()
    src_ip: str = UNKNOWN_ADDRESS     # HAR has no client address
    src_port: int = 0
    dst_ip: str | None = None
    app: str = "http"                 # http, http2, http3 as the source says
    alpn: str | None = None
    encrypted: bool = False           # reached its server over TLS (an https URL, a bumped CONNECT)
    initiator: str = "internal"       # "external": a pull, src is the internal server, dst the client abroad
    bytes_out: int = 0                # message bytes towards dst (headers and bodies as handed over)
    bytes_in: int = 0


def handed_address(value: object) -> str | None:
    """An address as a source wrote it, normalised: "[::1]" (Chrome's IPv6, a proxy's meta header) and a
    zone ("fe80::1%eth0") are stripped; None when it is no address (Squid writes "-" for one it lacks)."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        return str(ipaddress.ip_address(text.split("%", 1)[0]))
    except ValueError:
        return None


def resolve_name(name: str) -> str | None:
    """The first address the system resolver gives for `name`, None when it gives none."""
    try:
        infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return None
    return str(infos[0][4][0]) if infos else None


@dataclass(slots=True)
class _Waiting:
    flow: HandedFlow
    since: float
    size: int


class HandoverSink:
    """Handed-over flows in; flows rows, anomalies and (through the inspector) detections and pi_values
    out to the spool."""

    def __init__(self, config: AgentConfig, spool: Spool, inspector: Inspector, anomalies: AnomalySink, *,
                 resolve: Callable[[str], str | None] = resolve_name, count_bytes: bool = True,
                 address_wait_s: float = 30.0) -> None:
        self.config, self.spool, self.inspector, self.anomalies = config, spool, inspector, anomalies
        self.destinations = Destinations(list(config.mainland_networks))
        self.internal = InternalNetworks(list(config.internal_networks))
        self.sampler = FlowSampler(config.sampling.flow_rate)
        self.count_bytes = count_bytes
        self.address_wait_s = address_wait_s
        self._resolve = resolve
        self._resolved: OrderedDict[str, str | None] = OrderedDict()
        self._waiting: OrderedDict[str, _Waiting] = OrderedDict()
        self._waiting_bytes = 0
        self._rows: list[FlowRecord] = []
        self.flows = self.inspected = self.anomaly_count = 0

    # -- flows in ------------------------------------------------------------------------------------

    def add(self, flow: HandedFlow, *, wait_for: str | None = None, now: float | None = None) -> str:
        """Take one flow; returns its flow id. With `wait_for`, hold it until `address(wait_for, ip)` or
        `address_wait_s` after `now`; otherwise its records are made now."""
        if flow.visibility not in HANDED_VISIBILITIES:
            raise ValueError(f"handed-over flows are seen by proxy or har, not {flow.visibility!r}")
        flow_id = self.flow_id(flow)
        unnamed = wait_for is None or self.address_wait_s <= 0
        if flow.dst_ip is None and flow.initiator == "internal" and unnamed:
            self._complete_unnamed(flow)     # nobody will name the server: resolve its name now
            return flow_id
        if wait_for is None or flow.dst_ip is not None or self.address_wait_s <= 0:
            self._complete(flow, flow_id, flow.dst_ip, "proxy" if flow.visibility == "proxy" else "browser")
            return flow_id
        size = sum(len(m.body) for m in flow.messages)
        previous = self._waiting.pop(wait_for, None)
        if previous is not None:    # the same correlation id again: the first one will not be named now
            self._waiting_bytes -= previous.size
            self._complete_unnamed(previous.flow)
        self._waiting[wait_for] = _Waiting(flow, now if now is not None else flow.ts_end, size)
        self._waiting_bytes += size
        while self._waiting and (len(self._waiting) > MAX_WAITING or self._waiting_bytes > MAX_WAITING_BYTES):
            _, oldest = self._waiting.popitem(last=False)
            self._waiting_bytes -= oldest.size
            self._complete_unnamed(oldest.flow)
        return flow_id

    def address(self, correlation: str, ip: str) -> bool:
        """The source learned the server's address of a held flow (Squid's RESPMOD); False when no flow
        waits under `correlation` (never held, already expired or named)."""
        held = self._waiting.pop(correlation, None)
        if held is None:
            return False
        self._waiting_bytes -= held.size
        self._complete(held.flow, self.flow_id(held.flow), ip, "proxy")
        return True

    def tick(self, now: float, *, flush: bool = True) -> None:
        """Periodic work: flows that waited `address_wait_s` are named by resolving; rows to the spool
        (unless `flush` is False: a service ticks often and writes every `live.flush_interval_s`)."""
        while self._waiting:
            correlation, held = next(iter(self._waiting.items()))
            if now - held.since < self.address_wait_s:
                break
            del self._waiting[correlation]
            self._waiting_bytes -= held.size
            self._complete_unnamed(held.flow)
        if flush:
            self.flush()

    def flush(self) -> None:
        anomalies = self.anomalies.drain()
        self.anomaly_count += len(anomalies)
        self.spool.write("flows", self._rows)
        self.spool.write("anomalies", anomalies)
        self._rows = []
        self.inspector.flush()

    def finish(self) -> InspectStats:
        """Every held flow is named by resolving; everything is written."""
        for held in self._waiting.values():
            self._complete_unnamed(held.flow)
        self._waiting.clear()
        self._waiting_bytes = 0
        stats = self.inspector.finish()
        self.flush()
        return stats

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def flow_id(self, flow: HandedFlow) -> str:
        text = f"{self.config.agent_id}|{flow.visibility}|{flow.key}"
        return hashlib.blake2b(text.encode()).hexdigest()[:20]

    # -- records -------------------------------------------------------------------------------------

    def _complete_unnamed(self, flow: HandedFlow) -> None:
        ip = self._lookup(flow.server_name) if flow.server_name else None
        self._complete(flow, self.flow_id(flow), ip, "resolved" if ip else "unknown")

    def _lookup(self, name: str) -> str | None:
        if name in self._resolved:
            self._resolved.move_to_end(name)
            return self._resolved[name]
        ip = self._resolve(name)
        self._resolved[name] = ip
        if len(self._resolved) > RESOLVE_CACHE:
            self._resolved.popitem(last=False)
        return ip

    def _complete(self, flow: HandedFlow, flow_id: str, ip: str | None, source: str) -> None:
        if ip is None:
            ip, source = UNKNOWN_ADDRESS, "unknown"
        # A pull's recipient is its client, whose address the proxy gave (the internal server is src); a
        # push's recipient is the server.
        if flow.initiator == "internal":
            src, dst = flow.src_ip, ip
        else:
            src, dst = ip, flow.src_ip
            source = "unknown" if dst == UNKNOWN_ADDRESS else "proxy"
        country = self.destinations.country(dst)
        cross_border = self.destinations.cross_border(country)
        # HAR has no client address: what the browser sent left from the enterprise's side.
        egress = (cross_border and not self.internal.contains(dst)
                  and (src == UNKNOWN_ADDRESS or self.internal.contains(src)))
        sampled = self.sampler.sampled(src, flow.src_port, flow.server_name or dst, flow.dst_port, "tcp")
        inspect = egress and sampled and bool(flow.messages)
        truncated = False
        at = datetime.fromtimestamp(flow.ts_start, CST).date()
        for number, message in enumerate(flow.messages):
            if message.truncated:
                truncated = True
                whole = f" of {message.size}" if message.size is not None else ""
                self.anomalies.add(flow.visibility if flow.visibility == "har" else "icap", "body_truncated",
                                   f"message {number}: {len(message.body)} bytes{whole} handed over",
                                   flow_id=flow_id, ts=flow.ts_start)
            if inspect:
                self._inspect(flow_id, number, message, at)
        if inspect:
            self.inspector.flow_ended(flow_id)
        self.anomalies.flow_ended(flow_id)
        payload = sum(len(m.body) for m in flow.messages) or flow.bytes_out + flow.bytes_in
        facts = CoverageFacts(egress=egress, sampled=sampled, app=flow.app, payload_bytes=payload,
                              missed_bytes=0, encrypted=False, decrypted=False, decrypt_reason=None,
                              budget_exceeded=truncated, inspected=inspect, hint=flow.visibility)
        bytes_out, bytes_in = (flow.bytes_out, flow.bytes_in) if self.count_bytes else (0, 0)
        self._rows.append(FlowRecord(
            flow_id=flow_id, ts_start=utc(flow.ts_start), ts_end=utc(max(flow.ts_end, flow.ts_start)),
            src_ip=src, dst_ip=dst,
            src_port=flow.src_port if flow.initiator == "internal" else flow.dst_port,
            dst_port=flow.dst_port if flow.initiator == "internal" else flow.src_port,
            transport="udp" if flow.app == "http3" else "tcp", app=flow.app,
            server_name=self.destinations.server_name(None, flow.server_name, dst),
            dst_country=country, cross_border=cross_border,
            bytes_out=bytes_out, bytes_in=bytes_in,
            packets_out=0, packets_in=0, missed_bytes=0,
            encrypted=flow.encrypted, inspected=inspect,
            sample_weight=self.sampler.weight,
            requests=len(flow.messages),
            initiator=flow.initiator,
            visibility=visibility(facts), alpn=flow.alpn, uninspected_reason=uninspected_reason(facts),
            dst_ip_source=source,
        ))
        self.flows += 1
        self.inspected += inspect
        if len(self._rows) >= FLUSH_ROWS:
            self.flush()

    def _inspect(self, flow_id: str, number: int, message: HandedMessage, at: date) -> None:
        self.inspector.request(flow_id, number, message.target, message.body, message.content_type, at)
