"""Wiring only: capture -> decode -> flows -> protocols -> detectors -> spool.

This is the one agent module that imports more than one stage. Per-flow state the pipeline needs (the
detector hits of an inspected flow) lives in a small accumulator keyed by the flow, so that the stages
themselves stay ignorant of each other.
"""

from __future__ import annotations

import hashlib
import logging
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from agent.anomalies import AnomalySink
from agent.capture import open_capture
from agent.config import AgentConfig, load_subject_key
from agent.decode import Decoder
from agent.destinations import Destinations
from agent.flows import Flow, FlowContext, FlowTable, InternalNetworks
from agent.protocols.http import HttpRequest
from agent.protocols.session import AppSession
from agent.records import DetectionRecord, FlowRecord, PiValueRecord, utc
from agent.sampling import FlowSampler
from agent.spool import Spool
from detectors.engine import Engine, FieldHit

log = logging.getLogger(__name__)

CONFIGS_DIR = Path(__file__).resolve().parent.parent / "configs"
FLUSH_ROWS = 50_000          # rows per record type held before a batch is written
EXPIRE_EVERY = 4096          # packets between idle scans: the scan is cheap but not free
MAX_KEY_PATHS = 5
MAX_SAMPLES = 3
FORM = "application/x-www-form-urlencoded"


@dataclass(slots=True)
class _TypeAgg:
    occurrences: int = 0
    confidence: float = 0.0
    sensitive: bool = False
    important_subcategory: str | None = None
    key_paths: list[str] = field(default_factory=list)
    samples: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _FlowFindings:
    """What the detectors found in one flow, until the flow ends."""

    requests: int = 0
    types: dict[str, _TypeAgg] = field(default_factory=dict)
    values: dict[tuple[int, str, int], PiValueRecord] = field(default_factory=dict)


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


def record_key(flow_id: str, request_no: int, record_index: int) -> int:
    """A signed int64 naming one record (JSON object, CSV row, form) of one request of one flow."""
    digest = hashlib.blake2b(f"{flow_id}|{request_no}|{record_index}".encode(), digest_size=8).digest()
    return struct.unpack("<q", digest)[0]


class Pipeline:
    """One agent run: feed it packets, then `finish()`; records go to the spool in batches."""

    def __init__(self, config: AgentConfig, spool: Spool, engine: Engine, *, strict: bool = False) -> None:
        self.config = config
        self.spool = spool
        self.engine = engine
        self.anomalies = AnomalySink(strict=strict)
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
            max_flows=config.limits.max_flows,
        ))
        self._findings: dict[str, _FlowFindings] = {}
        self._flows: list[FlowRecord] = []
        self._detections: list[DetectionRecord] = []
        self._pi: list[PiValueRecord] = []
        self.packets = self.decoded = self.flow_count = self.inspected = 0
        self.detection_count = self.pi_count = self.anomaly_count = 0

    # -- packets in -------------------------------------------------------------------------------

    def feed(self, frames: Iterable[tuple[float, int, bytes]]) -> None:
        decode, process = self.decoder.decode, self.table.process
        n = self.packets
        for ts, linktype, frame in frames:
            n += 1
            pkt = decode(ts, linktype, frame)
            if pkt is not None:
                self.decoded += 1
                process(pkt)
            if n % EXPIRE_EVERY == 0:
                self.table.expire(ts)
                self._flush_if_full()
        self.packets = n

    def finish(self) -> None:
        self.table.flush()
        self._flush(force=True)

    # -- flows -> sessions -------------------------------------------------------------------------

    def _session_for(self, flow: Flow) -> AppSession | None:
        limits, sampling = self.config.limits, self.config.sampling
        if flow.transport == "udp":
            # Only DNS answers (names for later flows) and QUIC (to mark encrypted egress) matter on UDP.
            if 53 not in (flow.sport, flow.dport) and flow.dport != 443:
                return None
            inspect = False
        else:
            country = self.destinations.country(flow.dst)
            inspect = (
                not self.table.ctx.internal.contains(flow.dst)
                and self.table.ctx.internal.contains(flow.src)
                and self.destinations.cross_border(country)
                and self.sampler.sampled(flow.src, flow.sport, flow.dst, flow.dport, flow.transport)
            )
        return AppSession(
            flow.flow_id, flow.dport,
            max_body_bytes=sampling.max_payload_bytes_per_flow,
            max_decompressed_bytes=limits.max_decompressed_bytes,
            inspect=inspect,
            anomalies=self.anomalies,
            on_request=self._request_handler(flow.flow_id),
            on_dns=self.destinations.observe_dns,
        )

    def _request_handler(self, flow_id: str) -> Callable[[HttpRequest], None]:
        def handle(request: HttpRequest) -> None:
            found = self._findings.setdefault(flow_id, _FlowFindings())
            request_no = found.requests
            found.requests += 1
            query = urlsplit(request.target).query if "?" in request.target else ""
            if query:
                self._collect(flow_id, request_no, found, self.engine.inspect(query.encode("latin-1",
                              "replace"), FORM).hits, prefix="query")
            if request.body:
                inspection = self.engine.inspect(request.body, request.content_type)
                for name, detail in inspection.anomalies:
                    self.anomalies.add("detector", name, detail, flow_id=flow_id)
                self._collect(flow_id, request_no, found, inspection.hits)
        return handle

    def _collect(self, flow_id: str, request_no: int, found: _FlowFindings, hits: Iterable[FieldHit],
                 prefix: str = "") -> None:
        for hit in hits:
            agg = found.types.setdefault(hit.field_type, _TypeAgg())
            agg.occurrences += 1
            agg.confidence = max(agg.confidence, hit.confidence)
            agg.sensitive = agg.sensitive or hit.sensitive
            agg.important_subcategory = agg.important_subcategory or hit.important_subcategory
            path = f"{prefix}.{hit.key_path}" if prefix else hit.key_path
            if len(agg.key_paths) < MAX_KEY_PATHS and path not in agg.key_paths:
                agg.key_paths.append(path)
            if len(agg.samples) < MAX_SAMPLES and hit.masked not in agg.samples:
                agg.samples.append(hit.masked)
            rk = record_key(flow_id, request_no, hit.record_index)
            found.values.setdefault((rk, hit.field_type, hit.value_key), PiValueRecord(
                flow_id=flow_id, record_key=rk, field_type=hit.field_type, value_key=hit.value_key,
                identifier=hit.identifier, sensitive=hit.sensitive))

    # -- flows -> records --------------------------------------------------------------------------

    def _flow_ended(self, flow: Flow) -> None:
        session: AppSession | None = flow.session
        country = self.destinations.country(flow.dst)
        sni = session.sni if session is not None else None
        host = session.host if session is not None else None
        found = self._findings.pop(flow.flow_id, None)
        self._flows.append(FlowRecord(
            flow_id=flow.flow_id, ts_start=utc(flow.ts_start), ts_end=utc(flow.ts_end),
            src_ip=flow.src, dst_ip=flow.dst, src_port=flow.sport, dst_port=flow.dport,
            transport=flow.transport,
            app=session.app if session is not None else "unknown",
            server_name=self.destinations.server_name(sni, host, flow.dst),
            dst_country=country, cross_border=self.destinations.cross_border(country),
            bytes_out=flow.bytes_out, bytes_in=flow.bytes_in,
            packets_out=flow.packets_out, packets_in=flow.packets_in,
            missed_bytes=flow.missed_bytes,
            encrypted=bool(session is not None and session.encrypted),
            inspected=bool(session is not None and session.inspected),
            sample_weight=self.sampler.weight,
            requests=session.requests if session is not None else 0,
        ))
        self.flow_count += 1
        if session is not None and session.inspected:
            self.inspected += 1
        if found is not None:
            for field_type, agg in sorted(found.types.items()):
                self._detections.append(DetectionRecord(
                    flow_id=flow.flow_id, field_type=field_type, sensitive=agg.sensitive,
                    important_subcategory=agg.important_subcategory, occurrences=agg.occurrences,
                    key_paths=tuple(agg.key_paths), confidence=round(agg.confidence, 4),
                    masked_samples=tuple(agg.samples)))
            self._pi.extend(found.values.values())
            self.detection_count += len(found.types)
            self.pi_count += len(found.values)

    def _flush_if_full(self) -> None:
        if max(len(self._flows), len(self._pi), len(self.anomalies.records)) >= FLUSH_ROWS:
            self._flush(force=True)

    def _flush(self, force: bool = False) -> None:
        anomalies = self.anomalies.drain()
        self.anomaly_count += len(anomalies)
        for record_type, rows in (("flows", self._flows), ("detections", self._detections),
                                  ("pi_values", self._pi), ("anomalies", anomalies)):
            self.spool.write(record_type, rows)
        self._flows, self._detections, self._pi = [], [], []


def build_engine(config: AgentConfig, configs_dir: Path = CONFIGS_DIR) -> Engine:
    return Engine.from_configs(configs_dir, load_subject_key(config.subject_key_file))


def run_capture(pcaps: list[Path], config: AgentConfig, out_dir: Path, *, strict: bool = False,
                engine: Engine | None = None,
                on_file: Callable[[Path], None] | None = None) -> Path:
    """Run the agent over capture files; records land in `out_dir` only if the whole run succeeds."""
    stats = run_capture_stats(pcaps, config, out_dir, strict=strict, engine=engine, on_file=on_file)
    return stats.records_dir


def run_capture_stats(pcaps: list[Path], config: AgentConfig, out_dir: Path, *, strict: bool = False,
                      engine: Engine | None = None,
                      on_file: Callable[[Path], None] | None = None) -> RunStats:
    engine = engine or build_engine(config)
    spool = Spool(Path(out_dir), config.agent_id, config.enterprise_id)
    with spool.staged() as staging:
        pipeline = Pipeline(config, staging, engine, strict=strict)
        for path in pcaps:
            if on_file is not None:
                on_file(path)
            pipeline.feed(open_capture(Path(path), pipeline.anomalies))
        pipeline.finish()
    log.info("%d packets, %d flows (%d inspected), %d detections, %d anomalies",
             pipeline.packets, pipeline.flow_count, pipeline.inspected, pipeline.detection_count,
             pipeline.anomaly_count)
    return RunStats(packets=pipeline.packets, decoded=pipeline.decoded, flows=pipeline.flow_count,
                    inspected_flows=pipeline.inspected, detections=pipeline.detection_count,
                    pi_values=pipeline.pi_count, anomalies=pipeline.anomaly_count,
                    records_dir=Path(out_dir))
