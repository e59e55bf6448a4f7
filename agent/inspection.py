"""What the pipeline and the detector workers say to each other: the `Inspector` protocol both inspectors
implement, and the typed messages and replies that cross a worker's queues.

The pipeline depends on `Inspector` only, never on which inspector it got (agent/inspector.py). Messages are
frozen slotted dataclasses told apart by `match` on their type, not by tuple length; a worker's replies are
types too, not strings, so that the capture side cannot mistake a pid for a result.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Protocol


@dataclass(frozen=True, slots=True)
class InspectStats:
    detections: int
    pi_values: int


class Inspector(Protocol):
    """Message bodies in, detections and pi_values records out (to the spool), aggregated per flow."""

    def request(self, flow_id: str, request_no: int, target: str, body: bytes,
                content_type: str | None, at: date | None = None) -> None:
        """One message of a flow: `target`'s query string and `body` go through the detectors. A response
        of an inbound-initiated flow comes with target "" (its request's query came from outside)."""

    def flow_ended(self, flow_id: str) -> None:
        """The flow's records can be written: nothing more of it will come."""

    def flush(self) -> None:
        """Write the records of the flows that ended so far (a live capture's periodic flush)."""

    def finish(self) -> InspectStats:
        """End every flow still open, write everything, return the totals."""

    def close(self) -> None:
        """Stop without waiting for records (the run failed anyway)."""


# -- capture side -> worker -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Inspect:
    """One message of a flow to inspect (the arguments of `Inspector.request`)."""

    flow_id: str
    request_no: int
    target: str
    body: bytes
    content_type: str | None
    at: date | None


@dataclass(frozen=True, slots=True)
class FlowEnded:
    flow_id: str


@dataclass(frozen=True, slots=True)
class Flush:
    """Write what has ended so far (a live capture's periodic flush)."""


WorkerMessage = Inspect | FlowEnded | Flush


# -- worker -> capture side -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Started:
    """A forked worker's process id, so that the capture side can tell whether it is still there."""

    pid: int


@dataclass(frozen=True, slots=True)
class Finished:
    stats: InspectStats


@dataclass(frozen=True, slots=True)
class Failed:
    """The worker stopped; `reason` is one line without payload (an exception's type, a config error)."""

    reason: str


WorkerReply = Started | Finished | Failed
