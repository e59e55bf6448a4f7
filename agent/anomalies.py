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

_SEPARATORS = frozenset(" -_.:/()+")


def shape(value: str) -> str:
    """What an attacker-controlled value looks like, never the value: `digits(11)`, `digits+separators(13)`,
    `letters(8)`, `alphanumeric(10)`, `non-ascii(2)`, `text(20)`. Enough to tell a phone number in a
    header from a typo, and nothing a person could be found by."""
    if not value:
        return "empty"
    n = len(value)
    digits = sum(c.isdigit() for c in value)
    if digits == n:
        kind = "digits"
    elif digits and all(c.isdigit() or c in _SEPARATORS for c in value):
        kind = "digits+separators"
    elif not value.isascii():
        kind = "non-ascii"
    elif value.isalpha():
        kind = "letters"
    elif value.isalnum():
        kind = "alphanumeric"
    else:
        kind = "text"
    return f"{kind}({n})"


def known_or_shape(value: str, known: frozenset[str]) -> str:
    """A protocol keyword from `known` (lower-case) as it is; anything else only by its shape."""
    return value if value.lower() in known else shape(value)


class AnomalyError(Exception):
    """Raised by a strict sink instead of recording an anomaly."""


DEFAULT_MAX_PER_FLOW = 20   # agent.yaml limits.max_anomalies_per_flow


class AnomalySink:
    """Collects anomaly records; bounded so that a fuzzed capture cannot grow it without limit.

    Two bounds: `max_records` for the run (what is held until the next spool write), and `max_per_flow`
    for any one flow, so that a connection sending thousands of bad header lines cannot crowd out the
    other flows' anomalies. A capped flow gets one `flow/anomalies_suppressed` record at its end
    (`flow_ended`) saying how many of which were left out; `counts` keeps counting all of them.
    """

    def __init__(self, strict: bool = False, max_records: int = 100_000,
                 max_per_flow: int = DEFAULT_MAX_PER_FLOW) -> None:
        self.strict = strict
        self.max_records = max_records
        self.max_per_flow = max_per_flow
        self.records: list[AnomalyRecord] = []
        self.counts: Counter[str] = Counter()
        self.dropped = 0
        self.suppressed = 0
        self._per_flow: dict[str, int] = {}            # records so far, for flows that have any
        self._held_back: dict[str, Counter[str]] = {}  # suppressed names, for capped flows only

    def add(self, layer: str, name: str, detail: str, flow_id: str | None = None,
            ts: float | None = None) -> None:
        # detail must never carry payload bytes: callers pass lengths, offsets and header names only.
        self.counts[name] += 1
        if self.strict:
            raise AnomalyError(f"{layer}/{name}: {detail}")
        if flow_id is not None:
            n = self._per_flow.get(flow_id, 0)
            if n >= self.max_per_flow:
                self._held_back.setdefault(flow_id, Counter())[f"{layer}/{name}"] += 1
                self.suppressed += 1
                return
            self._per_flow[flow_id] = n + 1
        self._append(AnomalyRecord(flow_id=flow_id, layer=layer, name=name, detail=detail,
                                   ts=utc(ts) if ts is not None else None))

    def flow_ended(self, flow_id: str) -> None:
        """Forget the flow's count; a capped flow gets its suppression note now."""
        self._per_flow.pop(flow_id, None)
        held = self._held_back.pop(flow_id, None)
        if held:
            names = ", ".join(f"{name} {n}" for name, n in held.most_common(4))
            self._append(AnomalyRecord(
                flow_id=flow_id, layer="flow", name="anomalies_suppressed", ts=None,
                detail=f"{held.total()} more anomalies of this flow not recorded "
                       f"(limits.max_anomalies_per_flow={self.max_per_flow}): {names}"))

    def _append(self, record: AnomalyRecord) -> None:
        if len(self.records) >= self.max_records:
            self.dropped += 1
            return
        self.records.append(record)

    def drain(self) -> list[AnomalyRecord]:
        """Hand over the records collected so far (the spool writes them in batches)."""
        out, self.records = self.records, []
        return out
