"""QUIC frames in a decrypted packet payload (RFC 9000 §19) and bounded reassembly of their byte streams.

`walk_frames` yields the frames that carry bytes (CRYPTO, STREAM, RESET_STREAM) and steps over every other
frame by its wire layout; a frame type it does not know has no length to step over, so the walk stops there
(`FrameError`). `Reassembly` turns a stream's frames (any order, overlapping, retransmitted) into in-order
bytes, holding at most `window` bytes ahead of the delivered offset: a peer or a capture cannot make it buffer
more, and what falls outside the window is reported as a gap instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from aioquic.buffer import Buffer


class FrameError(ValueError):
    """A payload that is not a sequence of frames this walker can step through."""


@dataclass(frozen=True, slots=True)
class CryptoFrame:
    offset: int
    data: bytes


@dataclass(frozen=True, slots=True)
class StreamFrame:
    stream_id: int
    offset: int
    data: bytes
    fin: bool


@dataclass(frozen=True, slots=True)
class ResetFrame:
    stream_id: int


Frame = CryptoFrame | StreamFrame | ResetFrame

# Frames stepped over as a fixed number of varints (RFC 9000 §19; ACK_FREQUENCY and IMMEDIATE_ACK from
# draft-ietf-quic-ack-frequency; 0x2f5 is picoquic's TIME_STAMP, seen in the wild before STREAM frames).
_VARINTS = {0x01: 0, 0x05: 2, 0x10: 1, 0x11: 2, 0x12: 1, 0x13: 1, 0x14: 1, 0x15: 2, 0x16: 1, 0x17: 1,
            0x19: 1, 0x1E: 0, 0x1F: 0, 0xAF: 4, 0x2F5: 1}
_PATH_FRAMES = (0x1A, 0x1B)      # PATH_CHALLENGE / PATH_RESPONSE: 8 bytes of data


def walk_frames(payload: bytes) -> Iterator[Frame]:
    """The data-carrying frames of one packet payload, in order; FrameError where the walk cannot go on."""
    buf = Buffer(data=payload)
    try:
        while not buf.eof():
            ftype = buf.pull_uint_var()
            if ftype == 0x00:
                continue                                    # PADDING
            if ftype in _VARINTS:
                for _ in range(_VARINTS[ftype]):
                    buf.pull_uint_var()
            elif ftype in (0x02, 0x03):                     # ACK, ACK_ECN
                buf.pull_uint_var()
                buf.pull_uint_var()
                ranges = buf.pull_uint_var()
                buf.pull_uint_var()
                if ranges > len(payload):
                    raise FrameError("ACK range count past the packet")
                for _ in range(2 * ranges + (3 if ftype == 0x03 else 0)):
                    buf.pull_uint_var()
            elif ftype == 0x04:                             # RESET_STREAM
                stream_id = buf.pull_uint_var()
                buf.pull_uint_var()
                buf.pull_uint_var()
                yield ResetFrame(stream_id)
            elif ftype == 0x06:                             # CRYPTO
                offset = buf.pull_uint_var()
                yield CryptoFrame(offset, buf.pull_bytes(buf.pull_uint_var()))
            elif ftype == 0x07:                             # NEW_TOKEN
                buf.pull_bytes(buf.pull_uint_var())
            elif 0x08 <= ftype <= 0x0F:                     # STREAM with OFF / LEN / FIN bits
                stream_id = buf.pull_uint_var()
                offset = buf.pull_uint_var() if ftype & 0x04 else 0
                length = buf.pull_uint_var() if ftype & 0x02 else buf.capacity - buf.tell()
                yield StreamFrame(stream_id, offset, buf.pull_bytes(length), bool(ftype & 0x01))
            elif ftype == 0x18:                             # NEW_CONNECTION_ID
                buf.pull_uint_var()
                buf.pull_uint_var()
                buf.pull_bytes(buf.pull_uint8())
                buf.pull_bytes(16)
            elif ftype in _PATH_FRAMES:
                buf.pull_bytes(8)
            elif ftype in (0x1C, 0x1D):                     # CONNECTION_CLOSE (transport / application)
                buf.pull_uint_var()
                if ftype == 0x1C:
                    buf.pull_uint_var()
                buf.pull_bytes(buf.pull_uint_var())
            elif ftype == 0x30:                             # DATAGRAM to the end of the packet
                return
            elif ftype == 0x31:
                buf.pull_bytes(buf.pull_uint_var())
            else:
                raise FrameError(f"unknown frame type 0x{ftype:x}")
    except FrameError:
        raise
    except ValueError as exc:                               # aioquic's BufferReadError is a ValueError
        raise FrameError("frame runs past the packet") from exc


class Reassembly:
    """One byte stream put back in order, within a window; `add` returns the bytes that became contiguous."""

    __slots__ = ("_chunks", "_held", "fin_at", "gap", "pos", "window")

    def __init__(self, window: int) -> None:
        self.window = window
        self.pos = 0                           # bytes delivered so far
        self.fin_at: int | None = None         # the stream's final size, once known
        self.gap = False                       # data fell outside the window: the stream has a hole
        self._chunks: dict[int, bytes] = {}    # offset -> bytes beyond pos, not yet contiguous
        self._held = 0

    @property
    def held(self) -> int:
        return self._held

    @property
    def finished(self) -> bool:
        return self.fin_at is not None and self.pos >= self.fin_at

    def add(self, offset: int, data: bytes, fin: bool = False) -> bytes:
        if fin:
            self.fin_at = offset + len(data)
        end = offset + len(data)
        if end <= self.pos or not data:
            return b""                          # a retransmission of what was delivered
        if offset < self.pos:
            data, offset = data[self.pos - offset:], self.pos
        if end > self.pos + self.window:
            self.gap = True
            return b""
        if offset > self.pos:
            if self._held + len(data) > self.window:
                self.gap = True
                return b""
            if len(data) > len(self._chunks.get(offset, b"")):
                self._held += len(data) - len(self._chunks.get(offset, b""))
                self._chunks[offset] = data
            return b""
        out = bytearray(data)
        self.pos = end
        while self._chunks:
            # Chunks that now start at or before pos: take what extends past it, drop what does not.
            ready = sorted(o for o in self._chunks if o <= self.pos)
            if not ready:
                break
            for o in ready:
                chunk = self._chunks.pop(o)
                self._held -= len(chunk)
                if o + len(chunk) > self.pos:
                    out += chunk[self.pos - o:]
                    self.pos = o + len(chunk)
        return bytes(out)
