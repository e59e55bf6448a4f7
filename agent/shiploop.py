"""Shipping beside a long-running agent (`run --iface`, `icap`): a thread that ships the spool every
interval, and the bounded last pass at stop (agent/runner.py, agent/icap_service.py).

The last pass has its own deadline (`STOP_SHIP_S`) and two attempts per file, so a dead collector cannot
hold the stop hostage; what it did not take stays spooled for the next start.
"""

from __future__ import annotations

import logging
import threading
import time

from agent.shipper import Shipper

log = logging.getLogger(__name__)

__all__ = ["STOP_SHIP_S", "ShipLoop", "last_pass"]

STOP_SHIP_S = 10.0


class ShipLoop(threading.Thread):
    """Ships the spool every `interval_s` until stopped; the stop pass is `last_pass`."""

    def __init__(self, shipper: Shipper, interval_s: float, stopping: threading.Event) -> None:
        super().__init__(name="egresswatch-shipper", daemon=True)
        self.shipper, self.interval_s = shipper, interval_s
        self.stopping = stopping
        self.shipped = 0

    def run(self) -> None:
        while not self.stopping.wait(self.interval_s):
            try:
                self.shipped += self.shipper.ship_pending().shipped
            except Exception:   # never let shipping take the capture down; the files stay spooled
                log.exception("shipping failed; retrying in %.0f s", self.interval_s)


def last_pass(shipper: Shipper) -> tuple[int, int]:
    """One more shipping pass at stop, then the shipper is closed: (shipped, pending)."""
    shipper.stop = None           # the stop pass: its own deadline, two attempts per file
    shipper.max_attempts = 2
    result = shipper.ship_pending(deadline=time.monotonic() + STOP_SHIP_S)
    shipper.close()
    return result.shipped, result.pending
