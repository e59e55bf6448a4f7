"""Anomalies as data (Zeek's weird.log): malformed, truncated or unexpected input becomes a record, not
a crash.

A parser that meets bad input calls `AnomalySink.add` and carries on. Tests construct the sink with
`strict=True` so that a parser bug surfaces as an exception instead of hiding in a counter.
"""

from __future__ import annotations

import logging
from collections import Counter

from agent.records import AnomalyRecord, utc

log = logging.getLogger(__name__)


class AnomalyError(Exception):
    """Raised by a strict sink instead of recording an anomaly."""


class AnomalySink:
    """Collects anomaly records; bounded so that a fuzzed capture cannot grow it without limit."""

    def __init__(self, strict: bool = False, max_records: int = 100_000) -> None:
        self.strict = strict
        self.max_records = max_records
        self.records: list[AnomalyRecord] = []
        self.counts: Counter[str] = Counter()
        self.dropped = 0

    def add(self, layer: str, name: str, detail: str, flow_id: str | None = None,
            ts: float | None = None) -> None:
        # detail must never carry payload bytes: callers pass lengths, offsets and header names only.
        self.counts[name] += 1
        if self.strict:
            raise AnomalyError(f"{layer}/{name}: {detail}")
        if len(self.records) >= self.max_records:
            self.dropped += 1
            return
        self.records.append(AnomalyRecord(flow_id=flow_id, layer=layer, name=name, detail=detail,
                                          ts=utc(ts) if ts is not None else None))

    def drain(self) -> list[AnomalyRecord]:
        """Hand over the records collected so far (the spool writes them in batches)."""
        out, self.records = self.records, []
        return out
