"""One direction of a TCP connection: sequence-space byte accounting and, when asked, in-order delivery.

Accounting (every TCP flow) follows Zeek's conn.log: a byte counts once however often it is retransmitted,
the SYN and FIN consume a sequence number but are not payload (RFC 9293 §3.4), and holes that are never
filled are both counted in the byte total and reported as missed. It costs an integer for the next expected
byte plus a short sorted list of out-of-order ranges; sequence numbers are unwrapped to 64 bits relative to
the next expected byte, so the 2**32 wraparound needs no special case. A stream whose SYN was not captured
starts at the first sequence number seen; bytes before that are treated as retransmissions.

Delivery (only for streams whose session wants data) hands contiguous bytes to `session.on_data` in order,
buffers out-of-order bytes up to a budget, then gives the hole up with `session.on_gap(n)`. The first copy
of a byte wins; a later copy that differs (checked against buffered bytes and a short tail of delivered
ones) is an anomaly, as in Suricata's and Zeek's "inconsistent retransmission" events.
"""

from __future__ import annotations

import logging
from bisect import bisect_right
from typing import Protocol

from agent.anomalies import AnomalySink

log = logging.getLogger(__name__)

FIN, SYN, RST = 0x01, 0x02, 0x04
MASK, HALF = 0xFFFFFFFF, 1 << 31
MAX_RANGES = 256  # out-of-order islands tracked before the oldest hole is given up
MAX_AHEAD = 1 << 30  # a segment this far beyond the next expected byte belongs to no stream we know
REBASE_BEHIND = 1 << 20  # first data this far before the handshake's ISN re-bases the stream
RECENT = 4096  # delivered bytes kept to compare retransmissions against


class StreamSink(Protocol):
    """Where one direction of a TCP flow is delivered in order (agent/reassembly.py), while it wants data."""

    @property
    def wants_data(self) -> bool: ...

    def on_data(self, data: bytes) -> None: ...

    def on_gap(self, n: int) -> None: ...



# The island "list" of every stream that never saw a segment out of order: empty, shared, immutable.
_NO_RANGES: tuple[()] = ()


def _end(r: list[int]) -> int:
    return r[1]


class TcpStream:
    """Sequence accounting for one direction; `enable_delivery` turns on reassembly for a session."""

    __slots__ = (
        "buffered",
        "bytes",
        "fin",
        "flow_id",
        "lo",
        "max_buffer",
        "missed",
        "nxt",
        "pending",
        "ranges",
        "recent",
        "reported",
        "session",
        "sink",
        "started",
        "syn",
    )

    def __init__(self, sink: AnomalySink, flow_id: str) -> None:
        self.sink = sink
        self.flow_id = flow_id
        self.started = False
        self.syn = False  # the stream's start is known from its SYN
        self.lo = 0  # absolute sequence number of the first byte counted
        self.nxt = 0  # absolute (unwrapped) sequence number of the next byte expected
        # Disjoint [start, end) islands beyond nxt, sorted. Created with the first out-of-order segment and
        # `reported` with the first anomaly: a flood of SYN-only flows holds neither (~330 bytes a stream).
        self.ranges: list[list[int]] | tuple[()] = _NO_RANGES
        self.bytes = 0
        self.missed = 0
        self.fin = False
        self.session: StreamSink | None = None
        self.pending: dict[int, bytes | int] | None = None  # start -> bytes, or a gap length (snaplen)
        self.buffered = 0
        self.max_buffer = 0
        self.recent = b""
        self.reported: set[str] | None = None

    def enable_delivery(self, session: StreamSink, max_buffer: int) -> None:
        self.session = session
        self.pending = {}
        self.max_buffer = max_buffer

    def stop_delivery(self) -> None:
        self.session = None
        self.pending = None
        self.buffered = 0
        self.recent = b""

    def segment(self, seq: int, flags: int, payload: bytes, truncated: int) -> None:
        """Account one segment; `truncated` bytes were on the wire after `payload` but not captured."""
        if flags & RST:
            return  # a RST's payload (diagnostic text, if any) is not stream data
        if not self.started or (flags & SYN and not self.bytes and not self.ranges):
            # A SYN with a new ISN before any data (a reset handshake, port reuse) restarts the count.
            self.started = True
            self.syn = bool(flags & SYN)
            self.nxt = self.lo = (seq + 1) & MASK if flags & SYN else seq
        if flags & SYN:
            seq += 1  # data on a SYN (TCP Fast Open, RFC 7413) starts after the SYN's sequence number
        plen = len(payload) + truncated
        if not plen:
            return
        nxt = self.nxt
        a = nxt + ((seq - nxt + HALF) & MASK) - HALF
        if a == nxt and not self.ranges and not truncated:
            self.nxt = a + plen  # in order with nothing buffered: the common case
            self.bytes += plen
            if self.session is not None:
                self._deliver(payload)
            return
        self._segment(a, a + plen, payload)

    def _segment(self, a: int, b: int, payload: bytes) -> None:
        nxt = self.nxt
        if not self.bytes and not self.ranges and (a - nxt > MAX_AHEAD or nxt - a > REBASE_BEHIND):
            # No data counted yet and the first data is nowhere near the handshake we saw (a middlebox
            # answering with its own ISN, port reuse): the data, not the handshake, fixes the start.
            self.nxt = nxt = self.lo = a
        c_end = a + len(payload)  # captured content is [a, c_end); [c_end, b) was cut by the snaplen
        keepalive = b == nxt and b - a == 1  # RFC 9293 §3.8.4: one junk byte just below nxt
        if a < self.lo <= b and not self.syn and not keepalive and self.lo - a <= REBASE_BEHIND:
            # Capture began mid-stream and this segment was sent before the first one we saw (reordering):
            # its earlier bytes are new sequence space. They are counted, not delivered (that moved on).
            self.bytes += self.lo - a
            self.lo = a
        if b <= nxt:
            if self.session is not None and not keepalive:
                self._check_recent(a, min(c_end, nxt), payload)
            return
        if a - nxt > MAX_AHEAD:
            self._report("tcp", "seq_out_of_window", f"segment {a - nxt} bytes beyond the next expected")
            return
        if a < nxt:
            if self.session is not None:
                self._check_recent(a, min(c_end, nxt), payload)
            payload = payload[nxt - a:]
            a = nxt
            c_end = max(c_end, nxt)
        ranges = self.ranges
        if ranges is _NO_RANGES:
            ranges = self.ranges = []
        i = bisect_right(ranges, a, key=_end)
        gaps: list[tuple[int, int]] = []
        pos = a
        for s, e in ranges[i:]:
            if s >= b:
                break
            if s > pos:
                gaps.append((pos, s))
            pos = max(pos, e)
            if pos >= b:
                break
        if pos < b:
            gaps.append((pos, b))
        # Merge [a, b) into the islands (touching ones too).
        j = i - 1 if i > 0 and ranges[i - 1][1] == a else i
        k, lo, hi = j, a, b
        while k < len(ranges) and ranges[k][0] <= b:
            lo, hi = min(lo, ranges[k][0]), max(hi, ranges[k][1])
            k += 1
        ranges[j:k] = [[lo, hi]]
        for s, e in gaps:
            self.bytes += e - s
            if e > c_end:
                self.missed += e - max(s, c_end)
        if self.pending is not None and not self.session.wants_data:
            self.stop_delivery()
        if self.pending is not None:
            self._buffer(a, c_end, payload, gaps)
        if ranges[0][0] <= self.nxt:
            old, self.nxt = self.nxt, ranges.pop(0)[1]
            if self.pending is not None:
                self._drain(old, self.nxt)
        while self.pending is not None and self.buffered > self.max_buffer and ranges:
            self._skip_hole()
        while len(ranges) > MAX_RANGES:
            self._skip_hole()

    def _buffer(self, a: int, c_end: int, payload: bytes, gaps: list[tuple[int, int]]) -> None:
        pending = self.pending
        assert pending is not None
        pos = a
        for s, e in gaps:
            if s > pos and pos < c_end:
                self._check_pending(pos, min(s, c_end), payload, a)
            if s < c_end:
                piece = payload[s - a:min(e, c_end) - a]
                pending[s] = piece
                self.buffered += len(piece)
            if e > c_end:
                pending[max(s, c_end)] = e - max(s, c_end)
            pos = e
        if pos < c_end:
            self._check_pending(pos, c_end, payload, a)

    def _check_pending(self, lo: int, hi: int, payload: bytes, a: int) -> None:
        """Compare the already-held bytes [lo, hi) with this copy (payload starts at `a`)."""
        assert self.pending is not None
        for s in sorted(self.pending):
            piece = self.pending[s]
            if isinstance(piece, int):
                continue
            e = s + len(piece)
            if e <= lo:
                continue
            if s >= hi:
                break
            x, y = max(s, lo), min(e, hi)
            if piece[x - s:y - s] != payload[x - a:y - a]:
                self._inconsistent(y - x)
                return

    def _check_recent(self, a: int, c_end: int, payload: bytes) -> None:
        base = self.nxt - len(self.recent)
        x, y = max(a, base), min(c_end, self.nxt)
        if x < y and self.recent[x - base:y - base] != payload[x - a:y - a]:
            self._inconsistent(y - x)

    def _inconsistent(self, n: int) -> None:
        self._report("tcp", "overlap_inconsistent", f"{n} retransmitted bytes differ from the first copy")

    def _drain(self, pos: int, end: int) -> None:
        """Deliver the held pieces tiling [pos, end), in order."""
        while pos < end and self.pending is not None:
            piece = self.pending.pop(pos, None)
            if piece is None:
                log.warning("reassembly lost track at offset %d; delivery stopped", pos)
                self.stop_delivery()
                return
            if isinstance(piece, int):
                self._gap(piece)
                pos += piece
            else:
                self.buffered -= len(piece)
                self._deliver(piece)
                pos += len(piece)

    def _skip_hole(self) -> None:
        """Give up the hole before the first island: it counts as sequence space but was never seen."""
        s, e = self.ranges.pop(0)
        hole = s - self.nxt
        self.missed += hole
        self.bytes += hole
        self.nxt = e
        if self.pending is not None:
            self._gap(hole)
            self._drain(s, e)

    def close(self) -> None:
        """End of stream: every remaining hole is given up, everything held is delivered."""
        while self.ranges:
            self._skip_hole()
        self.stop_delivery()

    def _deliver(self, data: bytes) -> None:
        session = self.session
        try:
            if not session.wants_data:
                self.stop_delivery()
                return
            session.on_data(data)
            wants = session.wants_data
        except Exception as e:  # a protocol parser bug must not stop the capture
            self._report("flow", "session_error", f"{type(e).__name__} in on_data")
            self.stop_delivery()
            return
        if not wants:
            self.stop_delivery()
            return
        recent = self.recent + data
        self.recent = recent[-RECENT:] if len(recent) > RECENT else recent

    def _gap(self, n: int) -> None:
        try:
            self.session.on_gap(n)
        except Exception as e:
            self._report("flow", "session_error", f"{type(e).__name__} in on_gap")
            self.stop_delivery()
        else:
            self.recent = b""  # bytes after a gap cannot be compared with those before it

    def _report(self, layer: str, name: str, detail: str) -> None:
        if self.reported is None:
            self.reported = set()
        elif name in self.reported:
            return  # once per stream: a broken stream would otherwise repeat it per segment
        self.reported.add(name)
        self.sink.add(layer, name, detail, flow_id=self.flow_id)
