"""The flow table: packets grouped into bidirectional flows, oriented internal -> external, with counters.

A flow is keyed by its 5-tuple in either direction. Its `src` is the internal side (the configured
internal networks); when both or neither side is internal it is the initiator. The initiator is the SYN
sender, else the side with the higher port (the ephemeral one), else the first packet's sender. A flow with
one internal side whose initiator is its `dst` — by that rule for TCP; for UDP, the first datagram's sender
unless it answers from a system port — is `inbound`: an external client opened it to an internal server
(DESIGN §3 `initiator = external`). Every TCP direction gets sequence-space accounting
(agent/reassembly.py); the out direction is reassembled and delivered only when the pipeline's session asks
for data, the in direction only to a session's `in_sink` (the client side of an inbound flow). A TCP flow's
session is made at its first payload byte, a UDP flow's at once: a SYN-only flow (a scan, a flood) holds no
session. Flows end on FIN from both sides, on RST, when idle, when evicted (least recently used, once
`max_flows` are open) or at `flush()`; then `session.on_close()` and `ctx.on_flow_end(flow)` run. Late
packets of a flow closed by FIN/RST are ignored unless they open a new connection with a SYN (port reuse).
Memory is bounded: flows by `max_flows`, buffers by `max_buffer_bytes`.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from agent.anomalies import AnomalySink
from agent.decode import TCP, Packet
from agent.reassembly import FIN, RST, SYN, StreamSink, TcpStream

if TYPE_CHECKING:
    from agent.protocols.handler import Summary

log = logging.getLogger(__name__)

ACK = 0x10
FlowKey = tuple[int, str, int, str, int]
EXPIRE_EVERY_S = 1.0  # capture seconds between idle scans driven by process()
CUT_SCANS_PER_TIMEOUT = 10   # scans for over-long flows per active timeout: a cut is at most 10 % late
MAX_CLOSED = 65536  # recently closed keys remembered to ignore their late packets
INTERNAL_CACHE = 65536   # addresses whose internal/external answer is cached
SERVICE_PORTS = 1024     # UDP ports below are servers' (RFC 6335 system ports)


class InternalNetworks:
    """The enterprise's own address space (agent.yaml `internal_networks`)."""

    def __init__(self, cidrs: Iterable[str]) -> None:
        self.networks = [ipaddress.ip_network(c, strict=False) for c in cidrs]
        self._cache: dict[str, bool] = {}

    def contains(self, ip: str) -> bool:
        hit = self._cache.get(ip)
        if hit is None:
            try:
                addr = ipaddress.ip_address(ip)
            except ValueError:
                return False
            hit = any(addr in net for net in self.networks if net.version == addr.version)
            if len(self._cache) >= INTERNAL_CACHE:
                self._cache.clear()  # asked once per new flow: a cold cache now and then is cheap
            self._cache[ip] = hit
        return hit


class Session(StreamSink, Protocol):
    """What the pipeline attaches to a flow (agent/protocols/session.py): the client's bytes come as a
    `StreamSink`, the server's to `in_sink` (None: not wanted), datagrams whole, then the close."""

    @property
    def in_sink(self) -> StreamSink | None: ...

    def on_datagram(self, outbound: bool, payload: bytes) -> None: ...

    def on_close(self) -> None: ...

    def summary(self) -> Summary: ...


@dataclass(slots=True)
class FlowContext:
    """Everything the table needs from the pipeline, in one object."""

    agent_id: str
    internal: InternalNetworks
    session_factory: Callable[[Flow], Session | None]
    on_flow_end: Callable[[Flow], None]
    anomalies: AnomalySink
    idle_timeout_s: float = 120.0
    active_timeout_s: float = 3600.0
    max_flows: int = 400_000             # agent.yaml limits.max_flows (memory per flow: agent/config.py)
    max_buffer_bytes: int = 1 << 20
    # Writes a long flow's interval and calls flow.next_interval (the pipeline owns the records).
    on_flow_interval: Callable[[Flow, float], None] | None = None


_ZERO_BASE = (0, 0, 0, 0, 0, 0)


def flow_id_for(agent_id: str, transport: str, src: str, sport: int, dst: str, dport: int, ts: float) -> str:
    """First 20 hex characters of BLAKE2b over the identifying fields, '|'-separated, timestamp in µs."""
    text = f"{agent_id}|{transport}|{src}|{sport}|{dst}|{dport}|{round(ts * 1_000_000)}"
    return hashlib.blake2b(text.encode()).hexdigest()[:20]


class Flow:
    """One bidirectional flow, owned and mutated by the table; the pipeline reads it at `on_flow_end`."""

    __slots__ = ("_in", "_out", "_udp_in", "_udp_out", "base", "closed_by", "dport", "dst", "first_id",
                 "flow_id", "inbound", "interval", "key", "packets_in", "packets_out", "session",
                 "session_due", "session_ok", "sport", "src", "transport", "ts_end", "ts_start")

    def __init__(self, key: FlowKey, src: str, sport: int, dst: str, dport: int, ts: float, agent_id: str,
                 anomalies: AnomalySink, inbound: bool = False) -> None:
        self.key = key
        self.inbound = inbound      # dst (the external side) initiated the flow: DESIGN §3 initiator
        self.transport = "tcp" if key[0] == TCP else "udp"
        self.src, self.sport, self.dst, self.dport = src, sport, dst, dport
        self.flow_id = self.first_id = flow_id_for(agent_id, self.transport, src, sport, dst, dport, ts)
        self.ts_start = self.ts_end = ts
        # Long flows are written in intervals (FlowTable.cut_active): the counters at the interval's start.
        self.interval = 0
        self.base = _ZERO_BASE
        self.packets_out = self.packets_in = 0
        self._udp_out = self._udp_in = 0
        tcp = key[0] == TCP
        self._out = TcpStream(anomalies, self.flow_id) if tcp else None
        self._in = TcpStream(anomalies, self.flow_id) if tcp else None
        self.session: Session | None = None
        self.session_due = tcp      # a TCP flow's session is made when its first payload byte arrives
        self.session_ok = True
        self.closed_by: str | None = None

    @property
    def bytes_out(self) -> int:
        return self._out.bytes if self._out is not None else self._udp_out

    @property
    def bytes_in(self) -> int:
        return self._in.bytes if self._in is not None else self._udp_in

    @property
    def missed_bytes(self) -> int:
        if self._out is None or self._in is None:
            return 0
        return self._out.missed + self._in.missed

    def totals(self, requests: int) -> tuple[int, int, int, int, int, int]:
        """(bytes_out, bytes_in, packets_out, packets_in, missed_bytes, requests) since the flow began."""
        return (self.bytes_out, self.bytes_in, self.packets_out, self.packets_in, self.missed_bytes, requests)

    def delta(self, requests: int) -> tuple[int, int, int, int, int, int]:
        """The same counters for the current interval only."""
        t, b = self.totals(requests), self.base
        return (t[0] - b[0], t[1] - b[1], t[2] - b[2], t[3] - b[3], t[4] - b[4], t[5] - b[5])

    def next_interval(self, ts: float, requests: int) -> None:
        """Start interval n+1 at `ts` under flow id "<first id>.<n+1>" (deterministic, like the first)."""
        self.base = self.totals(requests)
        self.interval += 1
        self.flow_id = f"{self.first_id}.{self.interval}"
        self.ts_start = ts

    def __repr__(self) -> str:
        return (f"Flow({self.flow_id} {self.transport} {self.src}:{self.sport} -> {self.dst}:{self.dport} "
                f"out={self.bytes_out} in={self.bytes_in} missed={self.missed_bytes} {self.closed_by})")


class FlowTable:
    """Flows in least-recently-used order (an OrderedDict), so idle scans and eviction look at the front."""

    def __init__(self, ctx: FlowContext) -> None:
        self.ctx = ctx
        self.flows: OrderedDict[FlowKey, Flow] = OrderedDict()
        self._closed: OrderedDict[FlowKey, float] = OrderedDict()
        self.stats: Counter[str] = Counter()
        self._next_expire = float("-inf")
        self._next_cut = float("-inf")

    def __len__(self) -> int:
        return len(self.flows)

    def process(self, pkt: Packet) -> Flow | None:
        """Account one packet; returns its flow, or None for a late packet of a closed flow."""
        ts = pkt.ts
        if ts >= self._next_expire:
            self._next_expire = ts + EXPIRE_EVERY_S
            self.expire(ts)
            if ts >= self._next_cut:
                # Long flows in capture files too, by capture time; O(open flows), so seldom.
                self._next_cut = ts + self.ctx.active_timeout_s / CUT_SCANS_PER_TIMEOUT
                self.cut_active(ts, self.ctx.active_timeout_s)
        src, dst, sport, dport = pkt.src, pkt.dst, pkt.sport, pkt.dport
        if src < dst or (src == dst and sport <= dport):
            key = (pkt.proto, src, sport, dst, dport)
        else:
            key = (pkt.proto, dst, dport, src, sport)
        flow = self.flows.get(key)
        if flow is None:
            if key in self._closed:
                if pkt.flags & (SYN | ACK) != SYN:
                    self.stats["late_packets"] += 1
                    return None
                del self._closed[key]
            flow = self._open(key, pkt)
        else:
            self.flows.move_to_end(key)
        if ts > flow.ts_end:
            flow.ts_end = ts
        out = src == flow.src and sport == flow.sport
        if flow._out is not None:
            if flow.session_due and (pkt.payload or pkt.truncated):
                self._start_session(flow)
            if out:
                flow.packets_out += 1
                st = flow._out
            else:
                flow.packets_in += 1
                st = flow._in
            flags = pkt.flags
            st.segment(pkt.seq, flags, pkt.payload, pkt.truncated)
            if flags & (FIN | RST):
                if flags & RST:
                    self._end(key, flow, "rst")
                else:
                    st.fin = True
                    if flow._out.fin and flow._in.fin:
                        self._end(key, flow, "fin")
        else:
            size = len(pkt.payload) + pkt.truncated
            if out:
                flow.packets_out += 1
                flow._udp_out += size
            else:
                flow.packets_in += 1
                flow._udp_in += size
            if flow.session is not None and flow.session_ok:
                try:
                    flow.session.on_datagram(out, pkt.payload)
                except Exception as e:  # a protocol parser bug must not stop the capture
                    self._session_failed(flow, e, "on_datagram")
        return flow

    def _open(self, key: FlowKey, pkt: Packet) -> Flow:
        ctx = self.ctx
        if len(self.flows) >= ctx.max_flows:
            _old_key, old = self.flows.popitem(last=False)
            self.stats["evicted"] += 1
            self._finish(old, "evicted")
        s_int, d_int = ctx.internal.contains(pkt.src), ctx.internal.contains(pkt.dst)
        if pkt.proto == TCP and pkt.flags & SYN:
            sender_initiated = not pkt.flags & ACK  # a SYN-ACK comes from the responder
        elif pkt.sport != pkt.dport:
            sender_initiated = pkt.sport > pkt.dport
        else:
            sender_initiated = True
        sender_is_src = s_int if s_int != d_int else sender_initiated
        if pkt.proto != TCP:
            # A datagram's sender opened the exchange (a broadcast, a query), unless it answers from a
            # service port to an ephemeral one (the capture began after the query).
            sender_initiated = not pkt.sport < SERVICE_PORTS <= pkt.dport
        # Inbound: exactly one side is internal and the other one opened the flow (when both or neither
        # side is internal, src is the initiator by construction).
        inbound = s_int != d_int and sender_initiated != sender_is_src
        if sender_is_src:
            flow = Flow(key, pkt.src, pkt.sport, pkt.dst, pkt.dport, pkt.ts, ctx.agent_id, ctx.anomalies,
                        inbound)
        else:
            flow = Flow(key, pkt.dst, pkt.dport, pkt.src, pkt.sport, pkt.ts, ctx.agent_id, ctx.anomalies,
                        inbound)
        self.flows[key] = flow
        self.stats["flows"] += 1
        if not flow.session_due:
            self._start_session(flow)
        return flow

    def _start_session(self, flow: Flow) -> None:
        """Attach the pipeline's session: a UDP flow's at once, a TCP flow's at its first payload (before
        that payload is accounted, so delivery starts with the stream's first byte). A SYN-only flow (a
        scan, a flood) never gets one: it is written exactly as a flow whose session saw nothing, and holds
        no session, parser or closure meanwhile."""
        flow.session_due = False
        ctx = self.ctx
        try:
            flow.session = ctx.session_factory(flow)
        except Exception as e:
            self._session_failed(flow, e, "session_factory")
        session = flow.session
        if flow._out is None or flow._in is None or session is None:
            return
        if session.wants_data:
            flow._out.enable_delivery(session, ctx.max_buffer_bytes)
        in_sink = session.in_sink      # the server's side, or an inbound flow's client side (served.py)
        if in_sink is not None and in_sink.wants_data:
            flow._in.enable_delivery(in_sink, ctx.max_buffer_bytes)

    def _end(self, key: FlowKey, flow: Flow, reason: str) -> None:
        del self.flows[key]
        self._closed[key] = flow.ts_end
        if len(self._closed) > MAX_CLOSED:
            self._closed.popitem(last=False)
        self.stats["closed_" + reason] += 1
        self._finish(flow, reason)

    def expire(self, now: float) -> None:
        """Close flows idle for longer than the idle timeout (the front of the LRU order is the oldest)."""
        limit = now - self.ctx.idle_timeout_s
        flows = self.flows
        while flows:
            flow = next(iter(flows.values()))
            if flow.ts_end > limit:
                break
            flows.popitem(last=False)
            self.stats["closed_idle"] += 1
            self._finish(flow, "idle")
        closed = self._closed
        while closed and next(iter(closed.values())) <= limit:
            closed.popitem(last=False)

    def cut_active(self, now: float, active_timeout_s: float) -> int:
        """Write every flow open longer than `active_timeout_s` as an interval and let it go on
        (`ctx.on_flow_interval`); returns how many were cut. O(open flows): call it seldom."""
        on_interval = self.ctx.on_flow_interval
        if on_interval is None:
            return 0
        limit = now - active_timeout_s
        cut = 0
        for flow in list(self.flows.values()):
            if flow.ts_start <= limit:
                on_interval(flow, now)
                cut += 1
        self.stats["intervals"] += cut
        return cut

    def flush(self) -> None:
        """Close every open flow (end of capture or shutdown)."""
        while self.flows:
            _key, flow = self.flows.popitem(last=False)
            self._finish(flow, "end")
        self._closed.clear()

    def _finish(self, flow: Flow, reason: str) -> None:
        flow.closed_by = reason
        if flow._out is not None and flow._in is not None:
            flow._out.close()
            flow._in.close()
        if flow.session is not None and flow.session_ok:
            try:
                flow.session.on_close()
            except Exception as e:
                self._session_failed(flow, e, "on_close")
        self.ctx.on_flow_end(flow)

    def _session_failed(self, flow: Flow, exc: Exception, where: str) -> None:
        flow.session_ok = False
        if flow._out is not None and flow._in is not None:
            flow._out.stop_delivery()
            flow._in.stop_delivery()
        # The exception text may quote payload: only its type goes into the record.
        self.ctx.anomalies.add("flow", "session_error", f"{type(exc).__name__} in {where}",
                               flow_id=flow.flow_id)
