"""Request bodies in, detections and pi_values records out: the detectors' side of the agent.

`InlineInspector` runs the detectors in the capture process. `WorkerInspector` (agent/inspector_worker.py)
runs this very code in forked worker processes; both are an `Inspector` (agent/inspection.py).
"""

from __future__ import annotations

import hashlib
import logging
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from agent.anomalies import AnomalySink
from agent.inspection import Inspector, InspectStats
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

__all__ = ["EngineFactory", "InlineInspector", "InspectStats", "Inspector", "record_key", "request_key_base"]


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
    """Runs the detectors where it is called; aggregates per flow; spools records in batches (an
    `Inspector`)."""

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
        key_id = self.engine.key_id     # which deployment key hashed the values (its id, never the key)
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
                                          hit.sensitive, key_id=key_id)

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

    def close(self) -> None:
        """Nothing runs beside the caller: nothing to stop."""
