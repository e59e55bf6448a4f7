"""The agent as a long-running service on an interface (DESIGN §8 `egress-agent run --iface`).

    LiveSource frames -> Pipeline (tick: idle flows, intervals, periodic flush, capture_stats) -> Spool
                                                            Shipper thread: spool -> collector, retries

Runs until SIGINT or SIGTERM; then every open flow is closed and written, the detector workers write what
they hold, a last capture_stats row is written, and the shipper gets one more pass (bounded, so a dead
collector cannot hold the stop hostage — agent/shiploop.py). Records reach the spool every
`live.flush_interval_s` meanwhile, each file atomically, so a `kill -9` loses at most what was in memory
and never leaves a half-written file.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import FrameType

from agent.config import AgentConfig
from agent.inspector import EngineFactory
from agent.live import LiveSource
from agent.pipeline import Pipeline, build_engine, check_configs
from agent.shiploop import ShipLoop, last_pass
from agent.shipper import Shipper
from agent.spool import Spool

log = logging.getLogger(__name__)

__all__ = ["LiveStats", "run_live"]

@dataclass(frozen=True, slots=True)
class LiveStats:
    packets: int
    kernel_dropped: int
    flows: int
    inspected_flows: int
    detections: int
    pi_values: int
    shipped: int
    pending: int


def run_live(iface: str, bpf: str | None, config: AgentConfig, out_dir: Path, *,
             collector: tuple[str, str] | None = None, stop: threading.Event | None = None,
             engine_factory: EngineFactory | None = None) -> LiveStats:
    """Capture on `iface` until SIGINT/SIGTERM (or `stop` is set). `collector`: (url, token)."""
    stop = stop or threading.Event()
    if engine_factory is None:
        check_configs(config)
        engine_factory = partial(build_engine, config)
    source = LiveSource(iface, bpf, config.live.promiscuous)
    spool = Spool(out_dir, config.agent_id, config.enterprise_id, config.spool_max_bytes)
    spool.remove_partial()    # a kill -9 during a write; complete files of that run are shipped as usual
    previous = _install_stop_handlers(stop)
    stopping = threading.Event()     # the shipper's: set when capture ends, so a retry wait ends too
    shipper = (Shipper(collector[0], collector[1], out_dir, timeout_s=10.0, stop=stopping)
               if collector else None)
    loop = ShipLoop(shipper, config.live.ship_interval_s, stopping) if shipper else None
    pipeline = Pipeline(config, spool, engine_factory, source=iface)
    try:
        if loop is not None:
            loop.start()

        def tick(now: float) -> None:
            pipeline.tick(now, source.read_kernel_stats()[1])

        pipeline.feed(source.frames(stop.is_set, tick))
        log.info("stopping: writing %d open flow(s)", len(pipeline.table))
        pipeline.finish(time.time(), source.read_kernel_stats()[1])
    except BaseException:
        pipeline.abort()
        raise
    finally:
        source.close()
        _restore(previous)
        if loop is not None:
            loop.stopping.set()
            loop.join()
    shipped, pending = (loop.shipped if loop else 0), 0
    if shipper is not None:
        last, pending = last_pass(shipper)
        shipped += last
    return LiveStats(pipeline.packets, source.kernel_dropped, pipeline.flow_count, pipeline.inspected,
                     pipeline.detection_count, pipeline.pi_count, shipped, pending)


def _install_stop_handlers(stop: threading.Event) -> dict[int, object]:
    """SIGINT and SIGTERM set the stop flag (the capture loop sees it within a poll interval)."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def handle(signum: int, _frame: FrameType | None) -> None:
        log.info("%s: stopping", signal.Signals(signum).name)
        stop.set()

    return {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}


def _restore(previous: dict[int, object]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)  # type: ignore[arg-type]
