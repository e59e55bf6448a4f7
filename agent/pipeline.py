"""Wiring only: capture -> decode -> flows -> protocols -> detectors -> spool.

This is the one agent module that imports more than one stage. Per-flow state the pipeline needs (the
detector hits of an inspected flow) lives in a small accumulator keyed by the flow, so that the stages
themselves stay ignorant of each other.
"""

from __future__ import annotations

import gc
import itertools
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from agent.anomalies import AnomalySink
from agent.capture import open_capture
from agent.config import AgentConfig, load_subject_key
from agent.coverage import alpn_of, facts_of, uninspected_reason, visibility
from agent.decode import Decoder
from agent.destinations import Destinations
from agent.flows import Flow, FlowContext, FlowTable, InternalNetworks
from agent.inspection import Inspector
from agent.inspector import EngineFactory
from agent.inspector_worker import make_inspector
from agent.keylog import KeyLog
from agent.protocols.handler import Summary, Waiting
from agent.protocols.http import HttpRequest
from agent.protocols.http_body import HttpResponse
from agent.protocols.registry import MAX_UNDECIDED_DATAGRAMS, datagram_app, datagram_candidate
from agent.protocols.served import ServedSession
from agent.protocols.session import AppSession
from agent.records import CaptureStatsRecord, FlowRecord, utc
from agent.sampling import FlowSampler
from agent.spool import Spool
from detectors.catalog import load_catalog, load_policy
from detectors.configs import configs_dir

if TYPE_CHECKING:   # imported by the detector workers, not by the capture process
    from detectors.engine import Engine

log = logging.getLogger(__name__)

CONFIGS_DIR = configs_dir()
FLUSH_ROWS = 50_000          # flow and anomaly rows held before a batch is written
CST = ZoneInfo("Asia/Shanghai")
FLUSH_CHECK_EVERY = 4096     # packets between checks whether a batch is due (idle flows: FlowTable.process)


@dataclass(frozen=True, slots=True)
class RunStats:
    packets: int
    decoded: int
    flows: int
    inspected_flows: int
    detections: int
    pi_values: int
    anomalies: int
    records_dir: Path


class Pipeline:
    """One agent run: feed it packets, then `finish()`; records go to the spool in batches."""

    def __init__(self, config: AgentConfig, spool: Spool, engine_factory: EngineFactory, *,
                 strict: bool = False, source: str = "pcap") -> None:
        self.config = config
        self.spool = spool
        self.anomalies = AnomalySink(strict=strict, max_per_flow=config.limits.max_anomalies_per_flow)
        self.decoder = Decoder(self.anomalies)
        self.destinations = Destinations(list(config.mainland_networks))
        self.sampler = FlowSampler(config.sampling.flow_rate)
        self.table = FlowTable(FlowContext(
            agent_id=config.agent_id,
            internal=InternalNetworks(list(config.internal_networks)),
            session_factory=self._session_for,
            on_flow_end=self._flow_ended,
            anomalies=self.anomalies,
            idle_timeout_s=config.limits.idle_timeout_s,
            active_timeout_s=config.limits.active_timeout_s,
            max_flows=config.limits.max_flows,
            on_flow_interval=self._flow_interval,
        ))
        # A worker process runs the detectors beside the packet loop; strict runs stay in one process so
        # that a detector exception surfaces where the test can see it.
        self.inspector: Inspector = make_inspector(
            engine_factory, spool, self.anomalies, workers=config.detector_workers,
            max_anomalies_per_flow=config.limits.max_anomalies_per_flow, strict=strict)
        self._flows: list[FlowRecord] = []
        self._stats: list[CaptureStatsRecord] = []
        self._frozen = False
        self.packets = self.decoded = self.flow_count = self.inspected = 0
        self.detection_count = self.pi_count = self.anomaly_count = 0
        self.source = source
        self._next_flush: float | None = None
        self._next_stats = 0.0
        self._stats_totals: tuple[int, ...] = (0, 0, 0, 0, 0, 0)
        self._stats_since = self._last_packet_ts = 0.0
        # TLS / QUIC secrets: the configured key logs (followed as they grow) and those of pcapng Decryption
        # Secrets Blocks (open_capture adds them). Never written anywhere (DESIGN §8).
        self.keylog = KeyLog(config.tls.keylog_files)
        self._follows_keylogs = bool(config.tls.keylog_files)
        # Live runs only: handlers holding ciphertext for secrets not logged yet, with when they began.
        self._waiting: dict[int, tuple[Waiting, float]] = {}
        # A proxy that hands its content over ICAP to this agent (DESIGN §8): its egress is not inspected
        # here and its bytes are counted here only (agent/handover.py).
        self._proxies = InternalNetworks(list(config.icap.proxy_networks))

    # -- packets in -------------------------------------------------------------------------------

    def feed(self, frames: Iterable[tuple[float, int, bytes]]) -> None:
        # Everything alive now (modules, configs, the geo-IP table) lives for the whole run: keep the
        # cyclic collector from re-scanning it while millions of short-lived packets come and go.
        # Once per run: a later freeze would also make immortal whatever cyclic garbage exists at that moment
        # (a flow and its session refer to each other), a leak per capture file.
        if not self._frozen:
            gc.freeze()
            self._frozen = True
        decode, process = self.decoder.decode, self.table.process
        n = self.packets
        ts = self._last_packet_ts
        frames = iter(frames)
        first = next(frames, None)
        if first is None:
            return
        if not self._stats_since:
            self._stats_since = first[0]     # a capture file's stats interval starts at its first packet
        for ts, linktype, frame in itertools.chain((first,), frames):
            n += 1
            pkt = decode(ts, linktype, frame)
            self.packets = n     # current for a live capture's tick, which runs inside this loop
            if pkt is not None:
                self.decoded += 1
                process(pkt)
            if n % FLUSH_CHECK_EVERY == 0:
                self._flush_if_full()
        self.packets = n
        self._last_packet_ts = ts

    def finish(self, now: float | None = None, kernel_dropped: int = 0) -> None:
        self.table.flush()
        stats = self.inspector.finish()
        self.detection_count, self.pi_count = stats.detections, stats.pi_values
        self.write_stats(now, kernel_dropped)
        self._flush()

    # -- live capture: periodic work between packets ------------------------------------------------

    def tick(self, now: float, kernel_dropped: int = 0) -> None:
        """Wall-clock work of a live capture: idle flows end although no packet arrives, long flows are
        cut into intervals, and records reach the spool every `live.flush_interval_s`."""
        live = self.config.live
        self.table.expire(now)
        if self._next_flush is None:
            self._next_flush, self._next_stats = now + live.flush_interval_s, now + live.stats_interval_s
            self._stats_since = self._stats_since or now
        if now >= self._next_flush:
            self._next_flush = now + live.flush_interval_s
            self.table.cut_active(now, self.config.limits.active_timeout_s)   # also when no packet comes
            self._flush()
            self.inspector.flush()
        if now >= self._next_stats:
            self._next_stats = now + live.stats_interval_s
            self.write_stats(now, kernel_dropped)
        if self._waiting:
            self._retry_waiting(now)

    def _wait(self, handler: Waiting) -> None:
        self._waiting[id(handler)] = (handler, time.time())

    def _retry_waiting(self, now: float) -> None:
        """Ask the key log again for flows whose records wait for secrets; past `tls.key_wait_s` they count
        as no_secrets (the handler drops what it held)."""
        limit = self.config.tls.key_wait_s
        for key, (handler, since) in list(self._waiting.items()):
            handler.retry()
            if handler.waiting and now - since >= limit:
                handler.expire()
            if not handler.waiting:
                del self._waiting[key]

    def write_stats(self, now: float | None, kernel_dropped: int) -> CaptureStatsRecord:
        """One capture_stats row for the interval since the last one (log line included)."""
        now = now if now is not None else self._last_packet_ts
        totals = (self.packets, kernel_dropped, self.packets - self.decoded, self.flow_count,
                  self.table.stats["evicted"], self.spool.dropped_rows())
        last = self._stats_totals
        self._stats_totals = totals
        d = [t - b for t, b in zip(totals, last, strict=True)]
        record = CaptureStatsRecord(
            ts=utc(now), interval_s=round(max(0.0, now - self._stats_since), 3), source=self.source,
            packets_received=d[0], packets_kernel_dropped=d[1], packets_undecoded=d[2],
            flows_active=len(self.table), flows_ended=d[3], flows_evicted=d[4], spool_rows_dropped=d[5])
        self._stats_since = now
        log_level = logging.WARNING if d[1] or d[4] or d[5] else logging.INFO
        log.log(log_level, "capture %s: %d packets, %d dropped by the kernel, %d undecoded, %d flows open, "
                "%d ended, %d evicted, %d spool rows dropped", self.source, *d[:3], len(self.table), *d[3:])
        self._stats.append(record)     # written with the next flush: one file per flush, not per row
        return record

    def abort(self) -> None:
        self.inspector.close()

    # -- flows -> sessions -------------------------------------------------------------------------

    def _session_for(self, flow: Flow) -> AppSession | ServedSession | _DatagramProbe:
        if flow.transport == "udp" and not datagram_candidate((flow.dport, flow.sport)):
            # Known by content only (QUIC on any port): a small probe until a datagram says so, since most
            # UDP flows of a busy egress never will (a flood of them must not cost a session each).
            return _DatagramProbe(self, flow)
        return self._open_session(flow)

    def _open_session(self, flow: Flow) -> AppSession | ServedSession:
        limits, sampling = self.config.limits, self.config.sampling
        inspect = (self._egress(flow, self.destinations.cross_border(self.destinations.country(flow.dst)))
                   and self.sampler.sampled(flow.src, flow.sport, flow.dst, flow.dport, flow.transport)
                   and not self._proxies.contains(flow.src))
        if flow.inbound and flow.transport == "tcp":
            # A pull (rules.md): an external client asked an internal server; the answers are the export.
            return ServedSession(
                flow.flow_id, flow.sport, flow.dport,
                max_body_bytes=sampling.max_payload_bytes_per_flow,
                max_decompressed_bytes=limits.max_decompressed_bytes,
                inspect=inspect, anomalies=self.anomalies,
                on_response=_ToInspector(self.inspector, flow) if inspect else _ignore,
                on_dns=self.destinations.observe_dns)
        return AppSession(
            flow.flow_id, flow.dport,
            max_body_bytes=sampling.max_payload_bytes_per_flow,
            max_decompressed_bytes=limits.max_decompressed_bytes,
            inspect=inspect,
            anomalies=self.anomalies,
            on_request=_ToInspector(self.inspector, flow) if inspect else _ignore,
            on_dns=self.destinations.observe_dns,
            sport=flow.sport, udp=flow.transport == "udp",
            keylog=self.keylog if self._follows_keylogs or len(self.keylog) else None,
            key_wait_bytes=self.config.tls.key_wait_bytes,
            on_wait=self._wait if self.source != "pcap" else None,
        )

    # -- flows -> records --------------------------------------------------------------------------

    def _flow_ended(self, flow: Flow) -> None:
        record = self._record(flow)
        self._flows.append(record)
        self.flow_count += 1
        self.inspected += record.inspected
        self.inspector.flow_ended(flow.flow_id)
        if flow.closed_by is not None:      # its last row, not an interval: the per-flow anomaly count ends
            self.anomalies.flow_ended(flow.first_id)

    def _flow_interval(self, flow: Flow, now: float) -> None:
        """A long flow's interval so far becomes a row; the flow goes on under its next interval's id."""
        self._flow_ended(flow)
        session = flow.session
        flow.next_interval(now, session.summary().requests if session is not None else 0)

    def _record(self, flow: Flow) -> FlowRecord:
        session = flow.session
        summary = session.summary() if session is not None else _NOTHING
        country = self.destinations.country(flow.dst)
        out, in_, pkts_out, pkts_in, missed, requests = flow.delta(summary.requests)
        cross_border = self.destinations.cross_border(country)
        egress = self._egress(flow, cross_border)
        facts = facts_of(summary, egress=egress, payload_bytes=out + in_,
                         missed_bytes=missed, sampled=self.sampler.sampled(
                             flow.src, flow.sport, flow.dst, flow.dport, flow.transport))
        if egress and self._proxies.contains(flow.src):
            # The proxy's export: its content went through the detectors over ICAP (that flow's rows
            # hold the detections), its bytes count here.
            facts = replace(facts, hint="proxy", inspected=True)
        return FlowRecord(
            flow_id=flow.flow_id, ts_start=utc(flow.ts_start), ts_end=utc(max(flow.ts_end, flow.ts_start)),
            src_ip=flow.src, dst_ip=flow.dst, src_port=flow.sport, dst_port=flow.dport,
            transport=flow.transport,
            app=summary.app,
            # An inbound flow's name is the internal server's (DESIGN §3); its recipient is dst, the peer.
            # A SOCKS5 tunnel to an address: that address's DNS name, not the proxy's (protocols/session.py).
            server_name=self.destinations.server_name(summary.sni, summary.host,
                                                      self._named_address(flow, summary)),
            dst_country=country, cross_border=cross_border,
            bytes_out=out, bytes_in=in_, packets_out=pkts_out, packets_in=pkts_in, missed_bytes=missed,
            encrypted=summary.encrypted,
            inspected=facts.inspected,
            sample_weight=self.sampler.weight,
            requests=requests,
            initiator="external" if flow.inbound else "internal",
            visibility=visibility(facts), alpn=alpn_of(summary), uninspected_reason=uninspected_reason(facts),
        )

    def _egress(self, flow: Flow, cross_border: bool) -> bool:
        """An export the agent inspects when sampled: cross-border, from an internal source to an external
        destination (the session's choice, and the coverage reasons of its record)."""
        internal = self.table.ctx.internal
        return cross_border and internal.contains(flow.src) and not internal.contains(flow.dst)

    @staticmethod
    def _named_address(flow: Flow, summary: Summary) -> str:
        """The address whose DNS name may name the flow when no SNI or Host does."""
        if flow.inbound:
            return flow.src
        return summary.target_ip or flow.dst

    def _flush_if_full(self) -> None:
        if max(len(self._flows), len(self.anomalies.records)) >= FLUSH_ROWS:
            self._flush()

    def _flush(self) -> None:
        anomalies = self.anomalies.drain()
        self.anomaly_count += len(anomalies)
        self.spool.write("flows", self._flows)
        self.spool.write("anomalies", anomalies)
        self.spool.write("capture_stats", self._stats)
        self._flows, self._stats = [], []


class _ToInspector:
    """An inspected flow's messages to the inspector: its requests, or an inbound flow's responses (a
    pull's export). A two-slot object per flow rather than a closure (function, cells, counter), which a
    million open flows would each hold."""

    __slots__ = ("flow", "inspector", "number")

    def __init__(self, inspector: Inspector, flow: Flow) -> None:
        self.inspector, self.flow = inspector, flow
        self.number = 0       # requests handed over so far

    def __call__(self, message: HttpRequest | HttpResponse) -> None:
        flow = self.flow
        if isinstance(message, HttpResponse):
            # No target: the request's query string came from abroad, it is no export.
            number, target = message.number, ""
        else:
            # Every request of an inspected flow comes here, in order: 0, 1, 2… (record keys).
            number, target = self.number, message.target
            self.number += 1
        # The flow's date in China Standard Time: ages (minor_under_14) are taken on the day of export.
        at = datetime.fromtimestamp(flow.ts_start, CST).date()
        self.inspector.request(flow.flow_id, number, target, message.body, message.content_type, at)


_NOTHING = Summary()    # the summary of a flow without a session (a SYN-only flow, UDP nobody parses)


class _DatagramProbe:
    """The session of a UDP flow on no registered port until one of its first datagrams is a protocol the
    registry recognises by content; then the flow gets its real session, which reads that datagram first.
    Three slots instead of a session, a handler context and a chooser per flow."""

    __slots__ = ("flow", "pipeline", "tries")
    wants_data = False
    in_sink = None

    def __init__(self, pipeline: Pipeline, flow: Flow) -> None:
        self.pipeline, self.flow, self.tries = pipeline, flow, 0

    def on_datagram(self, outbound: bool, payload: bytes) -> None:
        flow = self.flow
        if self.tries >= MAX_UNDECIDED_DATAGRAMS:
            return
        if datagram_app(payload, (flow.dport, flow.sport)) is None:
            self.tries += 1
            return
        session = flow.session = self.pipeline._open_session(flow)
        session.on_datagram(outbound, payload)

    def on_data(self, data: bytes) -> None:
        return None

    def on_gap(self, n: int) -> None:
        return None

    def on_close(self) -> None:
        return None

    def summary(self) -> Summary:
        return _NOTHING


def _ignore(message: HttpRequest | HttpResponse) -> None:
    """A session that is not inspected hands no message over; this is its callback all the same."""



def build_engine(config: AgentConfig, configs_dir: Path = CONFIGS_DIR) -> Engine:
    from detectors.engine import Engine  # presidio and spaCy load here, in a worker when there is one

    return Engine.from_configs(configs_dir, load_subject_key(config.subject_key_file))


def _given(engine: Engine) -> Engine:
    return engine


def engine_factory(config: AgentConfig, engine: Engine | None = None) -> EngineFactory:
    """What builds the detectors' engine (in a worker when there is one): `engine` itself when given (tests
    share one), else one from the configs, checked here first so that a bad config fails fast."""
    if engine is not None:
        return partial(_given, engine)
    check_configs(config)
    return partial(build_engine, config)


def check_configs(config: AgentConfig, configs_dir: Path = CONFIGS_DIR) -> None:
    """Fail fast, in the capture process, on what a detector worker would otherwise fail on later."""
    load_policy(configs_dir / "policy.yaml", load_catalog(configs_dir / "field_types.yaml"))
    load_subject_key(config.subject_key_file)


def run_capture(pcaps: list[Path], config: AgentConfig, out_dir: Path, *, strict: bool = False,
                engine: Engine | None = None,
                on_file: Callable[[Path], None] | None = None) -> Path:
    """Run the agent over capture files; records land in `out_dir` only if the whole run succeeds."""
    stats = run_capture_stats(pcaps, config, out_dir, strict=strict, engine=engine, on_file=on_file)
    return stats.records_dir


def run_capture_stats(pcaps: list[Path], config: AgentConfig, out_dir: Path, *, strict: bool = False,
                      engine: Engine | None = None,
                      on_file: Callable[[Path], None] | None = None) -> RunStats:
    factory = engine_factory(config, engine)
    spool = Spool(Path(out_dir), config.agent_id, config.enterprise_id, config.spool_max_bytes)
    with spool.staged() as staging:
        pipeline = Pipeline(config, staging, factory, strict=strict)
        try:
            for path in pcaps:
                if on_file is not None:
                    on_file(path)
                pipeline.feed(open_capture(Path(path), pipeline.anomalies, secrets=pipeline.keylog))
            pipeline.finish()
        except BaseException:
            pipeline.abort()
            raise
    log.info("%d packets, %d flows (%d inspected), %d detections, %d anomalies",
             pipeline.packets, pipeline.flow_count, pipeline.inspected, pipeline.detection_count,
             pipeline.anomaly_count)
    return RunStats(packets=pipeline.packets, decoded=pipeline.decoded, flows=pipeline.flow_count,
                    inspected_flows=pipeline.inspected, detections=pipeline.detection_count,
                    pi_values=pipeline.pi_count, anomalies=pipeline.anomaly_count,
                    records_dir=Path(out_dir))
