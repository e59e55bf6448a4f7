"""`egress-agent icap`: the ICAP service as a long-running process (DESIGN §8).

    proxy --ICAP--> IcapServer (asyncio, agent/icap.py) --Backlog--> Recorder thread --> HandoverSink
         HandoverSink --> inspector (detector workers), Spool --> ShipLoop thread --> collector

The event loop only reads and answers ICAP. One recorder thread owns the `HandoverSink` (it is
single-threaded): it turns exchanges into flows (agent/icap_flows.py; body decoding happens there),
names held requests when a RESPMOD gives their server's address, and ticks every second (held flows past
`icap.address_wait_s` are resolved, rows reach the spool). Detector workers are forked before any thread
starts. The listening socket is bound first, so a port in use is one error line before anything else.

SIGINT/SIGTERM: stop accepting, end idle connections, give transactions in flight `STOP_GRACE_S`, then the
recorder finishes (every held flow resolved, everything written) and the shipper makes its last pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from agent.anomalies import AnomalySink
from agent.config import AgentConfig
from agent.handover import HandedFlow, HandoverSink, resolve_name
from agent.icap import IcapServer
from agent.icap_backlog import STOP, Backlog
from agent.icap_flows import Exchange, Named, Problem, exchange_flow
from agent.inspection import Inspector, InspectStats
from agent.inspector import EngineFactory, InlineInspector
from agent.inspector_worker import WorkerInspector
from agent.pipeline import build_engine, check_configs
from agent.shiploop import ShipLoop, last_pass
from agent.shipper import Shipper
from agent.spool import Spool
from detectors.inputs import InputError

log = logging.getLogger("agent.icap")

__all__ = ["IcapListenError", "IcapStats", "Recorder", "parse_listen", "run_icap"]

STOP_GRACE_S = 5.0      # transactions in flight at stop get this long to finish


class IcapListenError(InputError):
    """The service cannot listen (a bad address, a port in use): one line."""


@dataclass(frozen=True, slots=True)
class IcapStats:
    transactions: int
    flows: int
    inspected_flows: int
    detections: int
    pi_values: int
    errors: int
    refused: int
    shipped: int
    pending: int


def parse_listen(text: str) -> tuple[str, int]:
    """`HOST:PORT` or `[V6]:PORT` as (host, port)."""
    host, colon, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not colon or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise IcapListenError(f"--listen {text!r}: expected HOST:PORT")
    return host, int(port)


class Recorder(threading.Thread):
    """The one thread that owns the sink: backlog items in, records out (see the module docstring)."""

    def __init__(self, sink: HandoverSink, backlog: Backlog, max_decompressed_bytes: int,
                 tick_s: float = 1.0) -> None:
        super().__init__(name="egresswatch-icap-recorder", daemon=True)
        self.sink, self.backlog, self.tick_s = sink, backlog, tick_s
        self.max_decompressed_bytes = max_decompressed_bytes
        self.stats = InspectStats(0, 0)
        self.failed = False
        self.handled = 0

    def run(self) -> None:
        next_tick = time.monotonic() + self.tick_s
        while True:
            got = self.backlog.get(next_tick - time.monotonic())
            if got is not None:
                item, size = got
                if item is STOP:
                    break
                try:
                    self._handle(item)
                except Exception:
                    log.exception("icap: recording a transaction failed")
                finally:
                    self.handled += 1
                    self.backlog.done(size)
            if time.monotonic() >= next_tick:
                next_tick = time.monotonic() + self.tick_s
                try:
                    self.sink.tick(time.time())
                except Exception:
                    log.exception("icap: writing records failed; retrying at the next tick")
        try:
            self.stats = self.sink.finish()
        except Exception:
            self.failed = True
            log.exception("icap: the last records could not be written")

    def _handle(self, item: object) -> None:
        sink = self.sink
        if isinstance(item, Exchange):
            problems: list[tuple[str, str]] = []
            flow, wait_for = exchange_flow(item, self.max_decompressed_bytes,
                                           lambda name, detail: problems.append((name, detail)))
            flow_id = sink.flow_id(flow)
            for name, detail in problems:
                sink.anomalies.add("http", name, detail, flow_id=flow_id, ts=flow.ts_start)
            self._add(flow, wait_for)
        elif isinstance(item, Named):
            sink.address(item.correlation, item.ip)
        elif isinstance(item, Problem):
            sink.anomalies.add("icap", item.name, item.detail, ts=time.time())

    def _add(self, flow: HandedFlow, wait_for: str | None) -> None:
        self.sink.add(flow, wait_for=wait_for, now=time.time())


def _inspector(config: AgentConfig, spool: Spool, factory: EngineFactory,
               anomalies: AnomalySink) -> Inspector:
    if config.detector_workers:
        return WorkerInspector(factory, spool, config.detector_workers,
                               max_anomalies_per_flow=config.limits.max_anomalies_per_flow)
    return InlineInspector(factory(), spool, anomalies)


def _bind(host: str, port: int) -> socket.socket:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family = infos[0][0]
        return socket.create_server((host, port), family=family, backlog=128, reuse_port=False)
    except OSError as e:
        raise IcapListenError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None


def run_icap(config: AgentConfig, out_dir: Path, *, listen: str | None = None,
             collector: tuple[str, str] | None = None, stop: threading.Event | None = None,
             engine_factory: EngineFactory | None = None,
             resolve: Callable[[str], str | None] = resolve_name,
             ready: Callable[[tuple[str, int]], None] | None = None) -> IcapStats:
    """Serve ICAP until SIGINT/SIGTERM (or `stop` is set). `collector`: (url, token). `ready` is called
    with the bound address once connections are accepted."""
    stop = stop or threading.Event()
    if engine_factory is None:
        check_configs(config)
        engine_factory = partial(build_engine, config)
    sock = _bind(*parse_listen(listen or config.icap.listen))
    spool = Spool(out_dir, config.agent_id, config.enterprise_id, config.spool_max_bytes)
    spool.remove_partial()
    anomalies = AnomalySink(max_per_flow=config.limits.max_anomalies_per_flow)
    inspector = _inspector(config, spool, engine_factory, anomalies)     # forks before any thread starts
    sink = HandoverSink(config, spool, inspector, anomalies, resolve=resolve,
                        count_bytes=not config.icap.proxy_networks, address_wait_s=config.icap.address_wait_s)
    backlog = Backlog(max_bytes=max(64 << 20, 2 * config.icap.max_body_bytes))
    recorder = Recorder(sink, backlog, config.limits.max_decompressed_bytes)
    stopping = threading.Event()
    shipper = (Shipper(collector[0], collector[1], out_dir, timeout_s=10.0, stop=stopping)
               if collector else None)
    ship_loop = ShipLoop(shipper, config.live.ship_interval_s, stopping) if shipper else None
    server = IcapServer(config, backlog)
    recorder.start()
    if ship_loop is not None:
        ship_loop.start()
    try:
        asyncio.run(_serve(server, sock, stop, ready, config.live.stats_interval_s))
    except BaseException:
        backlog.put_stop()
        recorder.join()
        inspector.close()
        raise
    finally:
        sock.close()
        stopping.set()
        if ship_loop is not None:
            ship_loop.join()
    backlog.put_stop()
    recorder.join()
    if recorder.failed:
        raise RuntimeError("the ICAP service's last records could not be written (see the log)")
    shipped, pending = (ship_loop.shipped if ship_loop else 0), 0
    if shipper is not None:
        last, pending = last_pass(shipper)
        shipped += last
    c = server.counters
    return IcapStats(c.transactions, sink.flows, sink.inspected, recorder.stats.detections,
                     recorder.stats.pi_values, c.errors, c.refused, shipped, pending)


async def _serve(server: IcapServer, sock: socket.socket, stop: threading.Event,
                 ready: Callable[[tuple[str, int]], None] | None, report_s: float) -> None:
    loop = asyncio.get_running_loop()
    listener = await asyncio.start_server(server.handle, sock=sock)
    host, port = sock.getsockname()[:2]
    log.info("icap: listening on %s:%d", host, port)
    if ready is not None:
        ready((host, port))
    signals = []
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, partial(_on_signal, sig, stop))
            signals.append(sig)
    reporter = asyncio.create_task(_report(server, report_s))
    try:
        await loop.run_in_executor(None, stop.wait)
    finally:
        server.stopping = True
        listener.close()
        reporter.cancel()
        for sig in signals:
            loop.remove_signal_handler(sig)
        await _drain(server)
    log.info("icap: stopped after %d transactions", server.counters.transactions)


def _on_signal(sig: signal.Signals, stop: threading.Event) -> None:
    log.info("%s: stopping", sig.name)
    stop.set()


async def _drain(server: IcapServer) -> None:
    """Idle connections end now; those in a transaction get `STOP_GRACE_S`."""
    for conn in list(server.conns):
        if not conn.busy and conn.task is not None:
            conn.task.cancel()
    tasks = [c.task for c in server.conns if c.task is not None]
    if tasks:
        _, late = await asyncio.wait(tasks, timeout=STOP_GRACE_S)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)


async def _report(server: IcapServer, every_s: float) -> None:
    last = (0, 0, 0, 0)
    while True:
        await asyncio.sleep(every_s)
        c = server.counters
        now = (c.transactions, c.body_bytes, c.errors, c.refused)
        d = [a - b for a, b in zip(now, last, strict=True)]
        last = now
        level = logging.WARNING if d[2] else logging.INFO
        with contextlib.suppress(Exception):
            log.log(level, "icap: %d transactions, %d body bytes, %d errors, %d refused, %d connections open",
                    *d, len(server.conns))
