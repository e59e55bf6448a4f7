"""A run over recorded inputs, capture files and HAR archives mixed (`egress-agent run --har`,
`egress-collector selfcheck FILE.har`): one spool, one inspector, one set of records.

Capture files go through the wire pipeline (agent/pipeline.py) as in `run --pcap`; HAR files are read by
agent/har.py and their flows handed to a `HandoverSink` sharing the pipeline's inspector and anomaly sink,
so detections, pi_values and anomalies of both reach the same staged spool, published only if the whole
run succeeds. A run of HAR files only builds no pipeline (no capture_stats row: nothing was captured).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from agent.anomalies import AnomalySink
from agent.capture import open_capture
from agent.config import AgentConfig
from agent.handover import HandoverSink
from agent.har import HarLimits, read_har
from agent.inspector_worker import make_inspector
from agent.pipeline import Pipeline, RunStats, engine_factory
from agent.spool import Spool

if TYPE_CHECKING:
    from detectors.engine import Engine

log = logging.getLogger(__name__)

__all__ = ["run_inputs"]


def run_inputs(pcaps: list[Path], hars: list[Path], config: AgentConfig, out_dir: Path, *,
               engine: Engine | None = None, strict: bool = False,
               on_file: Callable[[Path], None] | None = None) -> RunStats:
    """Capture files, then HAR files, into the spool `out_dir`; raises `HarError` / `CaptureFormatError`
    naming the first bad file (and nothing is published)."""
    factory = engine_factory(config, engine)
    limits = HarLimits(max_bytes=config.har.max_bytes, max_entries=config.har.max_entries)
    spool = Spool(Path(out_dir), config.agent_id, config.enterprise_id, config.spool_max_bytes)
    with spool.staged() as staging:
        pipeline = Pipeline(config, staging, factory, strict=strict) if pcaps else None
        if pipeline is not None:
            anomalies, inspector = pipeline.anomalies, pipeline.inspector
        else:
            anomalies = AnomalySink(strict=strict, max_per_flow=config.limits.max_anomalies_per_flow)
            inspector = make_inspector(factory, staging, anomalies, workers=config.detector_workers,
                                       max_anomalies_per_flow=config.limits.max_anomalies_per_flow,
                                       strict=strict)
        sink = HandoverSink(config, staging, inspector, anomalies)
        entries = 0
        try:
            if pipeline is not None:
                for path in pcaps:
                    if on_file is not None:
                        on_file(path)
                    pipeline.feed(open_capture(Path(path), pipeline.anomalies, secrets=pipeline.keylog))
            for path in hars:
                if on_file is not None:
                    on_file(path)

                def invalid(name: str, detail: str, ts: float | None, _p: Path = path) -> None:
                    anomalies.add("har", name, f"{_p.name}: {detail}", ts=ts)

                for flow in read_har(Path(path), invalid, limits):
                    entries += len(flow.messages)
                    sink.add(flow)
            if pipeline is not None:
                sink.flush()
                pipeline.finish()
                detections, pi_values = pipeline.detection_count, pipeline.pi_count
            else:
                stats = sink.finish()
                detections, pi_values = stats.detections, stats.pi_values
        except BaseException:
            if pipeline is not None:
                pipeline.abort()
            else:
                inspector.close()
            raise
    flows = sink.flows + (pipeline.flow_count if pipeline else 0)
    inspected = sink.inspected + (pipeline.inspected if pipeline else 0)
    anomaly_count = sink.anomaly_count + (pipeline.anomaly_count if pipeline else 0)
    log.info("%d HAR entries in %d flows; %d flows in all (%d inspected), %d detections, %d anomalies",
             entries, sink.flows, flows, inspected, detections, anomaly_count)
    return RunStats(packets=pipeline.packets if pipeline else 0, decoded=pipeline.decoded if pipeline else 0,
                    flows=flows, inspected_flows=inspected, detections=detections, pi_values=pi_values,
                    anomalies=anomaly_count, records_dir=Path(out_dir))

