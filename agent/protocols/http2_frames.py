"""HTTP/2 frame cutting for one direction of a connection (RFC 9113 §4.1, §6), incremental and bounded.

`FrameReader.feed` cuts a byte stream into frames whatever the segmentation. Frame headers are read with
hyperframe (`Frame.parse_frame_header`). Frames whose payload the caller needs whole (HEADERS,
CONTINUATION, RST_STREAM, SETTINGS) are buffered and parsed with hyperframe's `parse_body`; DATA payloads
are streamed out as they arrive, padding stripped (§6.1), so a DATA frame of 16 MiB (the largest
SETTINGS_MAX_FRAME_SIZE, §6.5.2) is never held in memory; every other frame is skipped unread. A buffered
frame longer than its cap is a protocol error the caller decides about (`on_error`), never a buffer that
grows.

Each input byte is copied at most once into the reader's buffer and looked at a bounded number of times;
consumed bytes are dropped from the front once per `feed`.
"""

from __future__ import annotations

from typing import Protocol

from hyperframe.exceptions import HyperframeError
from hyperframe.frame import DataFrame, Frame

__all__ = ["DATA", "HEADER_LEN", "FrameHandler", "FrameReader"]

HEADER_LEN = 9
DATA = 0x0   # frame type codes, RFC 9113 §6


class FrameHandler(Protocol):
    """What a reader reports to. After a `fatal` error the reader has stopped: no more callbacks come."""

    def on_frame(self, frame: Frame) -> None: ...

    def on_data(self, frame: DataFrame, chunk: bytes) -> None: ...

    def on_data_end(self, frame: DataFrame) -> None: ...

    def on_error(self, name: str, detail: str, fatal: bool) -> None: ...


class FrameReader:
    """Cuts frames out of one direction's bytes and reports them to a `FrameHandler`.

    `buffered` maps the frame types whose payload is wanted whole to the longest payload accepted for each;
    `max_frame` is the SETTINGS_MAX_FRAME_SIZE in effect (a frame above it is reported once as
    `frame_too_large` and still read: a passive observer cannot be sure it saw the SETTINGS that allowed it).
    """

    __slots__ = ("_buf", "_data_end", "_data_start", "_frame", "_handler", "_left", "_len", "_pos",
                 "_warned", "buffered", "max_frame", "stopped")

    def __init__(self, handler: FrameHandler, buffered: dict[int, int], max_frame: int = 16384) -> None:
        self._handler = handler
        self.buffered = buffered
        self.max_frame = max_frame
        self.stopped = False
        self._buf = bytearray()
        self._frame: Frame | None = None   # the frame whose payload is being read
        self._len = 0                      # its payload length
        self._left = 0                     # payload bytes still to come
        self._data_start = -1              # DATA: offset of the first data byte (-1: pad length unread)
        self._data_end = 0                 # DATA: payload offset where the padding starts
        self._pos = 0
        self._warned = False

    def stop(self) -> None:
        self.stopped = True
        self._buf.clear()
        self._frame = None

    def feed(self, data: bytes) -> None:
        if self.stopped or not data:
            return
        self._buf += data
        self._pos = 0
        try:
            while not self.stopped and self._step():
                pass
        finally:
            if not self.stopped:
                del self._buf[: self._pos]
            self._pos = 0

    @property
    def pending(self) -> int:
        """Bytes of a frame begun but not yet complete (what a close cuts short)."""
        return len(self._buf) + (self._left if self._frame is not None else 0)

    @property
    def held(self) -> int:
        """Bytes held between feeds: a frame header's start, or a buffered frame within its cap."""
        return len(self._buf)

    # -- steps ------------------------------------------------------------------------------------------

    def _step(self) -> bool:
        if self._frame is None:
            return self._header()
        if isinstance(self._frame, DataFrame):
            return self._data()
        if self._frame.type is not None and self._frame.type in self.buffered:
            return self._whole()
        n = min(self._left, len(self._buf) - self._pos)
        self._pos += n
        self._left -= n
        if self._left:
            return False
        self._frame = None
        return True

    def _header(self) -> bool:
        if len(self._buf) - self._pos < HEADER_LEN:
            return False
        raw = memoryview(bytes(self._buf[self._pos: self._pos + HEADER_LEN]))
        try:
            frame, length = Frame.parse_frame_header(raw)
        except HyperframeError as exc:
            # A frame type that must (not) name a stream does the opposite (§6): a connection error.
            self._fail("malformed_frame", f"type {raw[3]}: {type(exc).__name__}")
            return False
        self._pos += HEADER_LEN
        ftype = raw[3]
        cap = self.buffered.get(ftype)
        if length > self.max_frame and not self._warned:
            self._warned = True
            detail = f"type {ftype} frame of {length} bytes over SETTINGS_MAX_FRAME_SIZE {self.max_frame}"
            self._handler.on_error("frame_too_large", detail + "; read anyway", fatal=False)
        if cap is not None and length > cap:
            self._fail("frame_too_large", f"type {ftype} frame of {length} bytes; at most {cap} kept")
            return False
        self._frame, self._len, self._left = frame, length, length
        self._data_start = 0 if "PADDED" not in frame.flags else -1
        self._data_end = length
        return True

    def _whole(self) -> bool:
        frame = self._frame
        assert frame is not None
        if len(self._buf) - self._pos < self._len:
            return False
        payload = memoryview(bytes(self._buf[self._pos: self._pos + self._len]))
        self._pos += self._len
        self._frame = None
        try:
            frame.parse_body(payload)
        except HyperframeError as exc:
            self._fail("malformed_frame", f"type {frame.type}, {self._len} bytes: {type(exc).__name__}")
            return False
        self._handler.on_frame(frame)
        return True

    def _data(self) -> bool:
        frame = self._frame
        assert isinstance(frame, DataFrame)
        done = self._len - self._left          # payload bytes read so far
        avail = len(self._buf) - self._pos
        if self._data_start < 0:
            if not avail:
                return False
            pad = self._buf[self._pos]
            if pad >= self._len:               # §6.1: padding as long as the payload is a connection error
                self._fail("malformed_frame", f"DATA padding {pad} in a {self._len}-byte frame")
                return False
            self._data_start, self._data_end = 1, self._len - pad
            self._pos += 1
            self._left -= 1
            return True
        n = min(self._left, avail)
        lo, hi = max(done, self._data_start), min(done + n, self._data_end)
        if hi > lo:
            start = self._pos + (lo - done)
            self._handler.on_data(frame, bytes(self._buf[start: start + hi - lo]))
            if self.stopped:
                return False
        self._pos += n
        self._left -= n
        if self._left:
            return False
        self._frame = None
        self._handler.on_data_end(frame)
        return True

    def _fail(self, name: str, detail: str) -> None:
        self.stop()
        self._handler.on_error(name, detail, fatal=True)
