"""IP fragment reassembly for IPv4 (RFC 791) and IPv6 (RFC 8200 §4.5), bounded in memory and time.

A datagram is keyed by (version, src, dst, identification, protocol) — the protocol is 0 for IPv6, whose
fragment identity is (src, dst, id) alone. Overlapping fragments are resolved first-wins, as RFC 5722
recommends dropping and as most IDS engines (Suricata's "first" policy) do for evasion resistance; a
later fragment with different bytes over the same range is reported. Incomplete datagrams are dropped
after `timeout_s` of capture time or when the table is full (oldest first), each with an anomaly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.anomalies import AnomalySink

MAX_DATAGRAM = 65535 + 8  # largest reassembled payload either protocol can describe (no jumbograms)

FragKey = tuple[int, str, str, int, int]


@dataclass(slots=True)
class _Datagram:
    first_ts: float
    pieces: dict[int, bytes] = field(default_factory=dict)  # offset -> bytes, disjoint (first wins)
    total: int = -1  # payload length, known once the last fragment (MF=0) arrived
    have: int = 0  # bytes held
    first_header: int = -1  # IPv6: the next-header value carried by the offset-0 fragment


class FragmentTable:
    """Holds fragments until their datagram is complete; `add` returns the reassembled payload then."""

    def __init__(self, anomalies: AnomalySink, max_datagrams: int = 4096, timeout_s: float = 30.0) -> None:
        self.anomalies = anomalies
        self.max_datagrams = max_datagrams
        self.timeout_s = timeout_s
        self._table: dict[FragKey, _Datagram] = {}  # insertion order = age
        self._next_sweep = 0.0

    def __len__(self) -> int:
        return len(self._table)

    def add(self, key: FragKey, ts: float, offset: int, more: bool, data: bytes, next_header: int = -1
            ) -> tuple[bytes, int] | None:
        """Add one fragment's payload at byte `offset`; return (payload, first next-header) when complete."""
        if ts >= self._next_sweep:
            self._sweep(ts)
        layer = "ip"
        end = offset + len(data)
        if end > MAX_DATAGRAM:
            self.anomalies.add(layer, "fragment_too_large", f"fragment ends at {end}", ts=ts)
            return None
        dg = self._table.get(key)
        if dg is None:
            if len(self._table) >= self.max_datagrams:
                oldest = next(iter(self._table))
                del self._table[oldest]
                self.anomalies.add(layer, "fragment_table_full", f"{self.max_datagrams} datagrams held",
                                   ts=ts)
            dg = self._table[key] = _Datagram(first_ts=ts)
        if not more:
            if dg.total >= 0 and dg.total != end:
                self.anomalies.add(layer, "fragment_inconsistent_length", f"last fragment ends at {end}, "
                                   f"earlier one at {dg.total}", ts=ts)
            elif dg.total < 0:
                dg.total = end
        if offset == 0 and dg.first_header < 0:
            dg.first_header = next_header
        self._insert(dg, offset, data, ts)
        if dg.total < 0 or dg.have < dg.total:
            return None
        # Pieces are disjoint, but a bogus fragment may lie past the end: count only what is inside.
        if sum(min(len(p), dg.total - off) for off, p in dg.pieces.items() if off < dg.total) < dg.total:
            return None
        del self._table[key]
        buf = bytearray(dg.total)
        for off, piece in dg.pieces.items():
            if off < dg.total:
                buf[off:off + len(piece)] = piece[:dg.total - off]
        return bytes(buf), dg.first_header

    def _insert(self, dg: _Datagram, offset: int, data: bytes, ts: float) -> None:
        """Store only the parts of [offset, offset+len) not held yet; compare the parts that are."""
        end = offset + len(data)
        pos = offset
        for off in sorted(dg.pieces):
            piece = dg.pieces[off]
            pend = off + len(piece)
            if pend <= pos:
                continue
            if off >= end:
                break
            if off > pos:
                self._store(dg, pos, data[pos - offset:off - offset])
            lo, hi = max(pos, off), min(end, pend)
            if data[lo - offset:hi - offset] != piece[lo - off:hi - off]:
                # Overlap with different content: an evasion attempt or corruption. First copy wins.
                self.anomalies.add("ip", "fragment_overlap_inconsistent", f"bytes {lo}..{hi}", ts=ts)
            pos = max(pos, pend)
            if pos >= end:
                return
        if pos < end:
            self._store(dg, pos, data[pos - offset:])

    @staticmethod
    def _store(dg: _Datagram, offset: int, data: bytes) -> None:
        if data:
            dg.pieces[offset] = data
            dg.have += len(data)

    def _sweep(self, now: float) -> None:
        # Checked at most once per second of capture time: the table is ordered by first arrival.
        self._next_sweep = now + 1.0
        limit = now - self.timeout_s
        for key in list(self._table):
            dg = self._table[key]
            if dg.first_ts > limit:
                break
            del self._table[key]
            self.anomalies.add("ip", "fragment_timeout",
                               f"datagram incomplete after {self.timeout_s:g}s ({dg.have} bytes held)")
