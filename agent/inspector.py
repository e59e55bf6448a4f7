"""Request bodies in, detections and pi_values records out: the detectors' side of the agent.

`InlineInspector` runs the detectors in the capture process. `WorkerInspector` runs the very same code in
a forked worker process fed through a bounded queue, so that packet handling and content inspection use a
core each (Suricata's worker model, one level down): on a PI-dense export the detectors cost more than all
packet handling. Both write their records to the spool themselves, so neither side waits for the other;
per flow they only need to hear when the flow ended, which arrives in order on the same queue.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import logging
import multiprocessing as mp
import os
import queue
import signal
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from agent.anomalies import DEFAULT_MAX_PER_FLOW, AnomalySink
from agent.records import DetectionRecord, PiValueRecord
from agent.spool import Spool

if TYPE_CHECKING:   # the capture process never imports the detectors when workers run them
    from detectors.engine import Engine, FieldHit
    from detectors.important import ImportantHit

EngineFactory = Callable[[], "Engine"]

log = logging.getLogger(__name__)

FORM = "application/x-www-form-urlencoded"
IMPORTANT_DATA = "important_data"   # the catalog id of important-data candidates (one row per sub-category)
MAX_KEY_PATHS = 5
MAX_SAMPLES = 3
FLUSH_ROWS = 50_000            # pi_values rows held before a batch is written
BATCH_ITEMS = 128              # messages per queue item: one pickle per batch, not per request
BATCH_BYTES = 1 << 20
QUEUE_DEPTH = 32               # batches in flight: bounds memory, and back-pressures the capture side
WAIT_S = 1.0                   # between liveness checks of a worker while waiting on it
FLUSH = "flush"                # a queue item (FLUSH, 0): write what has ended so far


@dataclass(frozen=True, slots=True)
class InspectStats:
    detections: int
    pi_values: int


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

    types: dict[str, _TypeAgg] = field(default_factory=dict)
    values: dict[tuple[int, str, int], PiValueRecord] = field(default_factory=dict)
    important: dict[str, _TypeAgg] = field(default_factory=dict)     # by sub-category id


def request_key_base(flow_id: str, request_no: int) -> int:
    """64 bits naming one request of one flow; `record_key` derives each record's key from it."""
    digest = hashlib.blake2b(f"{flow_id}|{request_no}".encode(), digest_size=8).digest()
    return struct.unpack("<Q", digest)[0]


def record_key(base: int, record_index: int) -> int:
    """A signed int64 naming one record (JSON object, CSV row, form) of one request: the request's key
    mixed with the record index by an odd multiplier (a bijection, so distinct records never collide
    within a request), instead of a hash per record."""
    v = (base ^ (record_index * 0x9E3779B97F4A7C15)) & 0xFFFFFFFFFFFFFFFF
    return v - (1 << 64) if v >= 1 << 63 else v


class InlineInspector:
    """Runs the detectors where it is called; aggregates per flow; spools records in batches."""

    def __init__(self, engine: Engine, spool: Spool, anomalies: AnomalySink) -> None:
        self.engine = engine
        self.spool = spool
        self.anomalies = anomalies
        self._flows: dict[str, _FlowFindings] = {}
        self._detections: list[DetectionRecord] = []
        self._pi: list[PiValueRecord] = []
        self.detection_count = self.pi_count = 0

    def request(self, flow_id: str, request_no: int, target: str, body: bytes,
                content_type: str | None, at: date | None = None) -> None:
        found = self._flows.setdefault(flow_id, _FlowFindings())
        query = urlsplit(target).query if "?" in target else ""
        if query:
            # A GET can export as much as a POST: the query string is a form body too.
            self._collect(flow_id, request_no, found,
                          self.engine.inspect(query.encode("latin-1", "replace"), FORM, at=at).hits, "query")
        if body:
            inspection = self.engine.inspect(body, content_type, at=at)
            for name, detail in inspection.anomalies:
                self.anomalies.add("detector", name, detail, flow_id=flow_id)
            self._collect(flow_id, request_no, found, inspection.hits, "")
            self._collect_important(found, inspection.important)

    @staticmethod
    def _collect_important(found: _FlowFindings, hits: Iterable[ImportantHit]) -> None:
        # Candidates, not values: the evidence kept is where they were seen and which configured terms or
        # signatures matched (names from configs/important_data.yaml, never payload).
        for hit in hits:
            agg = found.important.get(hit.subcategory)
            if agg is None:
                agg = found.important[hit.subcategory] = _TypeAgg(important_subcategory=hit.subcategory)
            agg.occurrences += 1
            agg.confidence = max(agg.confidence, hit.confidence)
            if hit.key_path and len(agg.key_paths) < MAX_KEY_PATHS and hit.key_path not in agg.key_paths:
                agg.key_paths.append(hit.key_path)
            for term in hit.terms:
                if len(agg.samples) < MAX_SAMPLES and term not in agg.samples:
                    agg.samples.append(term)

    def _collect(self, flow_id: str, request_no: int, found: _FlowFindings, hits: Iterable[FieldHit],
                 prefix: str) -> None:
        # Per hit, in a PI-dense export: keep this loop lean (sensitivity and sub-category are per type).
        keys: dict[int, int] = {}
        base = request_key_base(flow_id, request_no)
        values, types = found.values, found.types
        for hit in hits:
            agg = types.get(hit.field_type)
            if agg is None:
                agg = types[hit.field_type] = _TypeAgg(sensitive=hit.sensitive,
                                                       important_subcategory=hit.important_subcategory)
            agg.occurrences += 1
            if hit.confidence > agg.confidence:
                agg.confidence = hit.confidence
            if len(agg.key_paths) < MAX_KEY_PATHS:
                path = f"{prefix}.{hit.key_path}" if prefix else hit.key_path
                if path not in agg.key_paths:
                    agg.key_paths.append(path)
            if hit.masked and len(agg.samples) < MAX_SAMPLES and hit.masked not in agg.samples:
                agg.samples.append(hit.masked)
            rk = keys.get(hit.record_index)
            if rk is None:
                rk = keys[hit.record_index] = record_key(base, hit.record_index)
            k = (rk, hit.field_type, hit.value_key)
            if k not in values:
                values[k] = PiValueRecord(flow_id, rk, hit.field_type, hit.value_key, hit.identifier,
                                          hit.sensitive)

    def flow_ended(self, flow_id: str) -> None:
        found = self._flows.pop(flow_id, None)
        if found is None:
            return
        self.anomalies.flow_ended(flow_id)     # detector anomalies are capped per flow too
        rows = [(field_type, agg) for field_type, agg in sorted(found.types.items())]
        by_id = sorted(found.important.items(), key=lambda kv: int(kv[0]))
        rows += [(IMPORTANT_DATA, agg) for _, agg in by_id]
        for field_type, agg in rows:
            self._detections.append(DetectionRecord(
                flow_id=flow_id, field_type=field_type, sensitive=agg.sensitive,
                important_subcategory=agg.important_subcategory, occurrences=agg.occurrences,
                key_paths=tuple(agg.key_paths), confidence=round(agg.confidence, 4),
                masked_samples=tuple(agg.samples)))
        self._pi.extend(found.values.values())
        self.detection_count += len(rows)
        self.pi_count += len(found.values)
        if len(self._pi) >= FLUSH_ROWS:
            self.flush()

    def flush(self) -> None:
        self.spool.write("detections", self._detections)
        self.spool.write("pi_values", self._pi)
        self._detections, self._pi = [], []

    def finish(self) -> InspectStats:
        for flow_id in list(self._flows):
            self.flow_ended(flow_id)
        self.flush()
        return InspectStats(self.detection_count, self.pi_count)


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
                if len(item) == 1:
                    inspector.flow_ended(item[0])
                elif len(item) == 2:      # (FLUSH, 0): a live capture's periodic flush
                    inspector.flush()
                    inspector.spool.write("anomalies", inspector.anomalies.drain())
                else:
                    inspector.request(*item)
        stats = inspector.finish()
        # The worker's own anomalies (detector errors) are spooled by the worker itself.
        inspector.spool.write("anomalies", inspector.anomalies.drain())
        outbox.put(("ok", stats))
    except BaseException as exc:  # report, never hang the capture side; the type only: a message may hold PI
        outbox.put(("error", f"{type(exc).__name__} in the detector worker"))
        raise


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
            outbox.put(("error", str(exc)))
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
                outbox.put(("pid", os.getpid()))
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
        self.batch: list[tuple] = []
        self.bytes = 0
        self._early: list[tuple] = []   # results read while looking for the pid message

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
                if msg[0] == "pid":
                    self.pid = msg[1]
                else:
                    self._early.append(msg)
        except queue.Empty:
            pass

    def send(self, payload: list[tuple] | None) -> None:
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
            if msg[0] == "pid":
                self.pid = msg[1]
                continue
            status, result = msg
            break
        if status != "ok":
            raise RuntimeError(result)
        return result


class WorkerInspector:
    """The inline inspector in `workers` forked processes; a flow always goes to the same one."""

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
        w.batch.append((flow_id, request_no, target, body, content_type, at))
        w.bytes += len(body)
        if len(w.batch) >= BATCH_ITEMS or w.bytes >= BATCH_BYTES:
            w.flush()

    def flow_ended(self, flow_id: str) -> None:
        w = self._for(flow_id)
        w.batch.append((flow_id,))
        if len(w.batch) >= BATCH_ITEMS:
            w.flush()

    def flush(self) -> None:
        """Have every worker write the records of the flows that ended so far (live capture)."""
        for w in self._workers:
            w.batch.append((FLUSH, 0))
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
