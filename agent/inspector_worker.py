"""The detectors in forked worker processes: `WorkerInspector`, an `Inspector` (agent/inspection.py).

`WorkerInspector` runs `InlineInspector` (agent/inspector.py) in a forked worker process fed through a
bounded queue, so that packet handling and content inspection use a core each (Suricata's worker model, one
level down): on a PI-dense export the detectors cost more than all packet handling. Both write their records
to the spool themselves, so neither side waits for the other; per flow they only need to hear when the flow
ended, which arrives in order on the same queue. Queue items are batches of typed messages (`Inspect`,
`FlowEnded`, `Flush`); the worker answers with `Started`, `Finished` or `Failed`.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import multiprocessing as mp
import os
import queue
import signal
from datetime import date
from typing import Any

from agent.anomalies import DEFAULT_MAX_PER_FLOW, AnomalySink
from agent.inspection import (
    Failed,
    Finished,
    FlowEnded,
    Flush,
    Inspect,
    Inspector,
    InspectStats,
    Started,
    WorkerMessage,
    WorkerReply,
)
from agent.inspector import EngineFactory, InlineInspector
from agent.spool import Spool

__all__ = ["WorkerInspector"]

log = logging.getLogger(__name__)

BATCH_ITEMS = 128              # messages per queue item: one pickle per batch, not per request
BATCH_BYTES = 1 << 20
QUEUE_DEPTH = 32               # batches in flight: bounds memory, and back-pressures the capture side
WAIT_S = 1.0                   # between liveness checks of a worker while waiting on it


def _parent_gone(parent: int) -> bool:
    """A worker whose parent died (kill -9 of the capture process) stops instead of waiting forever."""
    return os.getppid() != parent


def _serve(inspector: InlineInspector, inbox: mp.Queue, outbox: mp.Queue, parent: int) -> None:
    """Inspect batches until a None, then report the counts."""
    try:
        while True:
            try:
                batch = inbox.get(timeout=WAIT_S)
            except queue.Empty:
                if _parent_gone(parent):
                    return
                continue
            if batch is None:
                break
            for item in batch:
                _handle(inspector, item)
        stats = inspector.finish()
        # The worker's own anomalies (detector errors) are spooled by the worker itself.
        inspector.spool.write("anomalies", inspector.anomalies.drain())
        outbox.put(Finished(stats))
    except BaseException as exc:  # report, never hang the capture side; the type only: a message may hold PI
        outbox.put(Failed(f"{type(exc).__name__} in the detector worker"))
        raise


def _handle(inspector: InlineInspector, message: WorkerMessage) -> None:
    match message:
        case Inspect(flow_id, request_no, target, body, content_type, at):
            inspector.request(flow_id, request_no, target, body, content_type, at)
        case FlowEnded(flow_id):
            inspector.flow_ended(flow_id)
        case Flush():
            inspector.flush()
            inspector.spool.write("anomalies", inspector.anomalies.drain())
        case _:
            raise TypeError(f"not a worker message: {type(message).__name__}")


def _worker_main(factory: EngineFactory, spool: Spool, queues: list[tuple[mp.Queue, mp.Queue]],
                 capture_pid: int, per_flow: int) -> None:
    """The first worker builds the engine (imports and all, while the capture side already runs), then
    forks the others from itself — they inherit the built engine instead of each importing presidio and
    compiling the catalog again — and serves the first queue."""
    # Ctrl-C reaches the whole process group and systemd may signal the whole cgroup: the capture
    # process decides when to stop and tells the workers through their queues (or by dying).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        engine = factory()
    except ValueError as exc:   # a bad catalog or key: configuration, one line, no payload in it
        for _, outbox in queues:
            outbox.put(Failed(str(exc)))
        return
    # The engine, presidio and spaCy are long-lived: keep the cyclic collector from re-scanning them on
    # every full collection while bodies come and go.
    gc.freeze()
    me = os.getpid()
    children = []
    for inbox, outbox in queues[1:]:
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                outbox.put(Started(os.getpid()))
                _serve(InlineInspector(engine, spool, AnomalySink(max_per_flow=per_flow)), inbox, outbox, me)
            except BaseException:
                code = 1
            finally:
                outbox.close()
                outbox.join_thread()     # the result must leave before os._exit skips the queue's feeder
                os._exit(code)
        children.append(pid)
    _serve(InlineInspector(engine, spool, AnomalySink(max_per_flow=per_flow)), *queues[0], capture_pid)
    for pid in children:
        os.waitpid(pid, 0)


def _alive(pid: int) -> bool:
    """A forked worker's liveness without a Process handle: gone, or a zombie its parent has not reaped."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[-1].split()[0] != b"Z"
    except OSError:
        try:
            os.kill(pid, 0)
            return True
        except OSError:
            return False


class _Worker:
    """The capture side's end of one detector worker: its bounded queue of batches, and how to tell
    whether the process behind it is still there."""

    def __init__(self, ctx: Any, forked: bool) -> None:
        self.inbox: mp.Queue = ctx.Queue(maxsize=QUEUE_DEPTH)
        self.outbox: mp.Queue = ctx.Queue()
        self.forked = forked        # False: served by the first worker itself
        self.first: Any = None      # the first worker's Process (which forks the others)
        self.pid: int | None = None
        self.batch: list[WorkerMessage] = []
        self.bytes = 0
        self._early: list[WorkerReply] = []   # results read while looking for the Started message

    def alive(self) -> bool:
        if self.forked and self.pid is None:
            self._poll_pid()
        if not self.forked or self.pid is None:
            return bool(self.first.is_alive())   # the first worker, or not forked yet: alive with it
        return _alive(self.pid)

    def _poll_pid(self) -> None:
        try:
            while self.pid is None:
                msg = self.outbox.get_nowait()
                if isinstance(msg, Started):
                    self.pid = msg.pid
                else:
                    self._early.append(msg)
        except queue.Empty:
            pass

    def send(self, payload: list[WorkerMessage] | None) -> None:
        while True:
            try:
                self.inbox.put(payload, timeout=WAIT_S)
                return
            except queue.Full:
                if not self.alive():
                    raise RuntimeError("the detector worker stopped") from None

    def flush(self) -> None:
        if self.batch:
            self.send(self.batch)
            self.batch, self.bytes = [], 0

    def result(self) -> InspectStats:
        while True:
            if self._early:
                msg = self._early.pop(0)
            else:
                try:
                    msg = self.outbox.get(timeout=WAIT_S)
                except queue.Empty:
                    if not self.alive():
                        raise RuntimeError("the detector worker stopped without a result") from None
                    continue
            match msg:
                case Started(pid):
                    self.pid = pid
                case Finished(stats):
                    return stats
                case Failed(reason):
                    raise RuntimeError(reason)
                case _:
                    raise RuntimeError(f"unexpected reply from the detector worker: {type(msg).__name__}")


class WorkerInspector:
    """The inline inspector in `workers` forked processes; a flow always goes to the same one (an
    `Inspector`)."""

    def __init__(self, factory: EngineFactory, spool: Spool, workers: int = 1,
                 max_anomalies_per_flow: int = DEFAULT_MAX_PER_FLOW) -> None:
        # fork: the factory and spool need no pickling, and the first worker starts at once.
        ctx = mp.get_context("fork")
        self._workers = [_Worker(ctx, forked=n > 0) for n in range(max(1, workers))]
        queues = [(w.inbox, w.outbox) for w in self._workers]
        self._first = ctx.Process(target=_worker_main, name="egresswatch-detectors", daemon=True,
                                  args=(factory, spool, queues, os.getpid(), max_anomalies_per_flow))
        self._first.start()
        for w in self._workers:
            w.first = self._first

    def _for(self, flow_id: str) -> _Worker:
        # flow ids are hex digests: their last digits spread flows evenly.
        return self._workers[int(flow_id[-4:], 16) % len(self._workers)]

    def request(self, flow_id: str, request_no: int, target: str, body: bytes,
                content_type: str | None, at: date | None = None) -> None:
        w = self._for(flow_id)
        w.batch.append(Inspect(flow_id, request_no, target, body, content_type, at))
        w.bytes += len(body)
        if len(w.batch) >= BATCH_ITEMS or w.bytes >= BATCH_BYTES:
            w.flush()

    def flow_ended(self, flow_id: str) -> None:
        w = self._for(flow_id)
        w.batch.append(FlowEnded(flow_id))
        if len(w.batch) >= BATCH_ITEMS:
            w.flush()

    def flush(self) -> None:
        """Have every worker write the records of the flows that ended so far (live capture)."""
        for w in self._workers:
            w.batch.append(Flush())
            w.flush()

    def finish(self) -> InspectStats:
        for w in self._workers:
            w.flush()
            w.send(None)
        results = [w.result() for w in self._workers]
        self._first.join()
        return InspectStats(sum(r.detections for r in results), sum(r.pi_values for r in results))

    def close(self) -> None:
        """Stop the workers without waiting for their records (the run failed anyway)."""
        for w in self._workers[1:]:
            w.alive()   # learn a forked worker's pid if it has reported it
            if w.pid is not None and _alive(w.pid):
                with contextlib.suppress(OSError):
                    os.kill(w.pid, signal.SIGKILL)    # workers ignore SIGTERM (see _worker_main)
        if self._first.is_alive():
            self._first.kill()
        self._first.join(timeout=5)


def make_inspector(factory: EngineFactory, spool: Spool, anomalies: AnomalySink, *, workers: int,
                   max_anomalies_per_flow: int = DEFAULT_MAX_PER_FLOW, strict: bool = False) -> Inspector:
    """Detector worker processes beside the caller (`workers` of them), or the detectors inline when
    `workers` is 0 or the run is strict (a detector exception then surfaces where a test can see it)."""
    if workers and not strict:
        return WorkerInspector(factory, spool, workers, max_anomalies_per_flow=max_anomalies_per_flow)
    return InlineInspector(factory(), spool, anomalies)
