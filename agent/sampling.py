"""Which flows get payload inspection, and the weight that makes estimates unbiased (DESIGN §5, §10).

The decision is a pure function of the flow's endpoints, so both directions and every packet of a flow,
and every agent seeing the same flow, decide alike (the same idea as Suricata's flow hash and nfstream's
deterministic sampling). `sample_weight` = 1 / rate for flows eligible for inspection.
"""

from __future__ import annotations

import hashlib
import struct


class FlowSampler:
    """Deterministic flow sampling at `rate` (0 < rate <= 1)."""

    def __init__(self, rate: float, salt: bytes = b"egresswatch") -> None:
        if not 0.0 < rate <= 1.0:
            raise ValueError(f"sampling.flow_rate must be in (0, 1], got {rate}")
        self.rate = rate
        self.weight = 1.0 / rate
        self._salt = salt
        # Compare a 64-bit hash against a threshold instead of computing a float per flow.
        self._threshold = int(rate * (1 << 64))

    def sampled(self, src: str, sport: int, dst: str, dport: int, transport: str) -> bool:
        if self.rate >= 1.0:
            return True
        a, b = sorted(((src, sport), (dst, dport)))  # direction-independent
        key = f"{transport}|{a[0]}|{a[1]}|{b[0]}|{b[1]}".encode()
        h = struct.unpack("<Q", hashlib.blake2b(key, digest_size=8, key=self._salt).digest())[0]
        return h < self._threshold
