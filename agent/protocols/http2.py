"""HTTP/2 requests from a connection's bytes (RFC 9113), over TLS or cleartext (h2c).

`Http2Connection` follows the client's frames — connection preface (§3.4), HEADERS + CONTINUATION header
blocks (§6.2, §6.10) decoded by one `hpack.Decoder` fed in stream order (RFC 7541), DATA (§6.1), RST_STREAM,
trailers (§8.1) — and hands each request to `on_request` as an `HttpRequest` (version "HTTP/2") when its
END_STREAM arrives, bodies decoded and budgeted like HTTP/1.x (`MessageBody`, http_body.py: the flow's
`max_body_bytes` kept across all streams, `max_decompressed_bytes` per message). Of the server's frames only
SETTINGS is read: SETTINGS_MAX_FRAME_SIZE says how long the client's frames may be.

HPACK is a shared state: a header block lost (a capture gap, a decoding error, a block over the caps) leaves
every later block undecodable, so such a loss is one anomaly and the end of parsing (`done`); the requests
still open are handed over cut short (`body_truncated`). A stream reset by the client (RST_STREAM before its
END_STREAM) is handed over too, with what it sent and `body_truncated`: the bytes left the host all the same.
The server's GOAWAY is not read: streams above its last_stream_id were still sent, so they still count.

h2c (RFC 9113 §3.3 prior knowledge, RFC 7540 §3.2 Upgrade). Prior knowledge: `is_h2_preface` sniffs a
cleartext client (register it before HTTP/1's sniffer: "PRI * HTTP/2.0" also looks like a request line).
Upgrade: the HTTP/1.1 request with `Upgrade: h2c` is handed over as HTTP/1 and is implicitly stream 1 of
the new connection, so it is not counted again and the client's own streams start at 3; HttpRequestStream
stops at the preface that follows it as at a tunnel (`rest` holds the bytes from the preface on), and the
HTTP/1 handler hands the tunnel to the registry, which picks `Http2Handler` by the preface. The server's
101 head, when it comes before the frames, is skipped. `upgraded_request=` remains for a caller that has
the request at hand (its host then names the connection from the start).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from hpack import Decoder
from hpack.exceptions import HPACKError
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    HeadersFrame,
    RstStreamFrame,
    SettingsFrame,
)

from agent.anomalies import AnomalySink, shape
from agent.protocols.handler import Handler, HandlerContext, Summary, inspect_request
from agent.protocols.http import HttpRequest
from agent.protocols.http2_frames import FrameReader
from agent.protocols.http2_streams import MAX_HEADER_BLOCK, H2Stream
from agent.protocols.http_body import BodyBudget

__all__ = ["PREFACE", "Http2Connection", "Http2Handler", "is_h2_preface"]

log = logging.getLogger(__name__)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"   # RFC 9113 §3.4
MAX_HEADER_LIST = 96 * 1024      # decoded header list (RFC 7541 §4.1 sizes): an HPACK bomb stops here
MAX_HELD_HEADERS = 1 << 20       # decoded fields of all open streams together (256 streams × 96 KiB is not)
MAX_TABLE_SIZE = 65536           # dynamic table the client may ask for (hpack's max_allowed_table_size)
MAX_OPEN_STREAMS = 256           # streams followed at once; servers allow 100-250 (SETTINGS_MAX_CONCURRENT…)
MAX_CONTINUATIONS = 512          # CONTINUATION frames in one header block (a flood of empty ones stops here)
MAX_FRAME_SIZE = (1 << 24) - 1   # RFC 9113 §6.5.2
MAX_101_HEAD = 65536             # an Upgrade's 101 response head skipped on the server side
_SETTINGS_CAP = 6 * 128          # a server SETTINGS frame longer than this is skipped


def is_h2_preface(prefix: bytes) -> bool | None:
    """Do a cleartext connection's first client bytes start with the HTTP/2 preface? None: need more."""
    n = min(len(prefix), len(PREFACE))
    if prefix[:n] != PREFACE[:n]:
        return False
    return True if n == len(PREFACE) else None


class _ServerSide:
    """The server's frames: SETTINGS only, for SETTINGS_MAX_FRAME_SIZE. Unreadable input stops this side
    quietly (the client's side does not depend on it beyond the frame size warning)."""

    __slots__ = ("_conn", "_head", "reader")

    def __init__(self, conn: Http2Connection, upgraded: bool) -> None:
        self._conn = conn
        self._head: bytearray | None = bytearray() if upgraded else None   # the 101 response still to skip
        self.reader = FrameReader(self, {SettingsFrame.type: _SETTINGS_CAP})

    def feed(self, data: bytes) -> None:
        if self._head is not None:
            self._head += data
            if not self._head.startswith(b"HTTP/"[: len(self._head)]):
                # No 101 head (the caller fed the server's bytes from the frames on): frames at once.
                data, self._head = bytes(self._head), None
                self.reader.feed(data)
                return
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                if len(self._head) > MAX_101_HEAD:
                    self.reader.stop()
                    self._head = None
                return
            data, self._head = bytes(self._head[end + 4:]), None
        self.reader.feed(data)

    def on_frame(self, frame: Frame) -> None:
        if isinstance(frame, SettingsFrame) and "ACK" not in frame.flags:
            size = frame.settings.get(SettingsFrame.MAX_FRAME_SIZE)
            if size is not None and 16384 <= size <= MAX_FRAME_SIZE:
                self._conn.client.max_frame = size

    def on_data(self, frame: DataFrame, chunk: bytes) -> None:
        return None

    def on_data_end(self, frame: DataFrame) -> None:
        return None

    def on_error(self, name: str, detail: str, fatal: bool) -> None:
        log.debug("server frames not followed further: %s", name)


class Http2Connection:
    """One HTTP/2 connection: feed both directions' bytes in order, read requests from `on_request`."""

    __slots__ = ("_block", "_block_end", "_block_stream", "_conts", "_decoder", "_held", "_last_stream",
                 "_on_request", "_preface", "_server", "_streams", "anomalies", "budget", "client", "done",
                 "first_authority", "flow_id", "max_decompressed_bytes", "requests")

    def __init__(self, *, flow_id: str | None, anomalies: AnomalySink, max_body_bytes: int,
                 max_decompressed_bytes: int, on_request: Callable[[HttpRequest], None],
                 expect_preface: bool = True, upgraded_request: HttpRequest | None = None) -> None:
        self.flow_id = flow_id
        self.anomalies = anomalies
        self.budget = BodyBudget(max_body_bytes)        # the flow's, shared by all its streams
        self.max_decompressed_bytes = max_decompressed_bytes
        self._on_request = on_request
        self.done = False
        self.requests = 0             # requests handed over by this connection (an Upgrade's is not one)
        self.first_authority: str | None = upgraded_request.host if upgraded_request is not None else None
        self._preface = 0 if expect_preface else len(PREFACE)   # preface bytes matched so far
        self._decoder = Decoder(max_header_list_size=MAX_HEADER_LIST)
        self._decoder.max_allowed_table_size = MAX_TABLE_SIZE
        self._streams: dict[int, H2Stream] = {}
        self._held = 0                # decoded header bytes of the open streams (MAX_HELD_HEADERS)
        # RFC 7540 §3.2: the Upgrade request is stream 1, half-closed from the client already.
        self._last_stream = 1 if upgraded_request is not None else 0
        self._block: bytearray | None = None             # a header block being reassembled
        self._block_stream = 0
        self._block_end = False                          # its HEADERS frame carried END_STREAM
        self._conts = 0
        self.client = FrameReader(self, {HeadersFrame.type: MAX_HEADER_BLOCK,
                                         ContinuationFrame.type: MAX_HEADER_BLOCK, RstStreamFrame.type: 16})
        # A 101 head is skipped whenever it comes first: after an Upgrade the tunnel reaches this connection
        # without the request object (agent/protocols/http.py), and no frame starts with "HTTP/".
        self._server = _ServerSide(self, True)

    # -- public API ---------------------------------------------------------------------------------------

    def feed(self, data: bytes, from_client: bool) -> None:
        if self.done or not data:
            return
        if not from_client:
            self._server.feed(data)
            return
        if self._preface < len(PREFACE):
            want = PREFACE[self._preface:]
            n = min(len(want), len(data))
            if data[:n] != want[:n]:
                self._fatal("bad_preface", f"{self._preface + n} bytes do not start the HTTP/2 preface")
                return
            self._preface += n
            data = data[n:]
        self.client.feed(data)

    def gap(self, n: int, from_client: bool) -> None:
        """`n` bytes of one direction are missing here. The client's: the HPACK state is lost."""
        if self.done or n <= 0:
            return
        if not from_client:
            self._server.reader.stop()
            return
        self._fatal("content_gap", f"{n} bytes missing; header compression state lost")

    def close(self) -> None:
        """The connection ended: hand over what is open, cut short."""
        if self.done:
            return
        if self._streams or self.client.pending:
            self.anomaly("message_incomplete", f"connection closed with {len(self._streams)} open streams, "
                                                f"{self.client.pending} frame bytes pending")
        self._end()

    # -- frame handler (client side) ----------------------------------------------------------------------

    def on_frame(self, frame: Frame) -> None:
        if self.done:
            return
        if self._block is not None:
            if not isinstance(frame, ContinuationFrame) or frame.stream_id != self._block_stream:
                self._fatal("continuation_expected", f"type {frame.type} frame inside a header block")
                return
            self._conts += 1
            if self._conts > MAX_CONTINUATIONS or len(self._block) + len(frame.data) > MAX_HEADER_BLOCK:
                self._fatal("header_block_too_long", f"over {MAX_HEADER_BLOCK} bytes or {MAX_CONTINUATIONS} "
                                                     "CONTINUATION frames")
                return
            self._block += frame.data
            if "END_HEADERS" in frame.flags:
                self._end_block()
        elif isinstance(frame, HeadersFrame):
            self._block, self._block_stream = bytearray(frame.data), frame.stream_id
            self._block_end, self._conts = "END_STREAM" in frame.flags, 0
            if "END_HEADERS" in frame.flags:
                self._end_block()
        elif isinstance(frame, ContinuationFrame):
            self._fatal("continuation_expected", "CONTINUATION without a header block")
        elif isinstance(frame, RstStreamFrame):
            stream = self._close(frame.stream_id)
            if stream is not None:
                stream.cut(self)
                self._emit(stream)

    def on_data(self, frame: DataFrame, chunk: bytes) -> None:
        if self.done:
            return
        stream = self._streams.get(frame.stream_id)
        if self._block is not None:
            self._fatal("continuation_expected", "DATA frame inside a header block")
        elif stream is not None:
            stream.add(chunk, self)

    def on_data_end(self, frame: DataFrame) -> None:
        if self.done:
            return
        if self._block is not None:
            self._fatal("continuation_expected", "DATA frame inside a header block")
            return
        if frame.stream_id not in self._streams:
            if frame.stream_id > self._last_stream:
                self.anomaly("data_on_idle_stream", f"DATA on stream {frame.stream_id} before its HEADERS")
            return       # a stream closed, reset, or not followed (over MAX_OPEN_STREAMS)
        stream = self._close(frame.stream_id) if "END_STREAM" in frame.flags else None
        if stream is not None:
            self._emit(stream)

    def on_error(self, name: str, detail: str, fatal: bool) -> None:
        if fatal:
            self._fatal(name, detail)
        else:
            self.anomaly(name, detail)

    # -- header blocks -------------------------------------------------------------------------------------

    def _end_block(self) -> None:
        block, sid, end_stream = self._block, self._block_stream, self._block_end
        assert block is not None
        self._block = None
        try:
            fields = self._decoder.decode(bytes(block), raw=True)
        except (HPACKError, ValueError, IndexError) as exc:   # hpack wraps most; the rest are caught too
            self._fatal("hpack_error", f"{type(exc).__name__} in a {len(block)}-byte header block; header "
                                       "compression state lost")
            return
        decoded = [(bytes(n).decode("latin-1"), bytes(v).decode("latin-1")) for n, v in fields]
        if sid % 2 == 0:
            self.anomaly("bad_stream_id", f"HEADERS on stream {sid}, not a client stream")
            return
        stream = self._streams.get(sid)
        if stream is not None:           # trailers (§8.1): a second HEADERS, which must end the stream
            held = stream.size
            stream.trailers(decoded, self)
            self._held += stream.size - held
            closed = self._close(sid) if end_stream else None
            if closed is not None:
                self._emit(closed)
            return
        if sid <= self._last_stream:
            self.anomaly("stream_closed", f"HEADERS on stream {sid}, already closed")
            return
        self._last_stream = sid
        if len(self._streams) >= MAX_OPEN_STREAMS:
            self.anomaly("too_many_streams", f"more than {MAX_OPEN_STREAMS} open; stream {sid} not followed")
            return
        stream = H2Stream(sid, decoded, self)
        if end_stream:
            self._emit(stream)
        elif self._held + stream.size > MAX_HELD_HEADERS:
            self.anomaly("too_many_streams", f"open streams hold over {MAX_HELD_HEADERS} bytes of header "
                                             f"fields; stream {sid} not followed")
        else:
            self._streams[sid] = stream
            self._held += stream.size

    # -- helpers -------------------------------------------------------------------------------------------

    def _close(self, sid: int) -> H2Stream | None:
        stream = self._streams.pop(sid, None)
        if stream is not None:
            self._held -= stream.size
        return stream

    def _emit(self, stream: H2Stream) -> None:
        request = stream.request(self)
        self.requests += 1
        if self.first_authority is None and request.host is not None:
            self.first_authority = request.host
        self._on_request(request)

    def _end(self) -> None:
        """Hand over the open streams (cut short) in stream order and stop."""
        self.done = True
        self.client.stop()
        self._server.reader.stop()
        streams, self._streams, self._held = sorted(self._streams.items()), {}, 0
        for _, stream in streams:
            stream.cut(self)
            self._emit(stream)

    def _fatal(self, name: str, detail: str) -> None:
        if self.done:
            return
        self.anomaly(name, detail)
        self._end()

    def anomaly(self, name: str, detail: str) -> None:
        self.anomalies.add("http2", name, detail, flow_id=self.flow_id)

    def bad_host(self, value: str) -> None:
        self.anomaly("bad_host", f":authority {shape(value[:256])} is no host name")


_GRPC = "application/grpc"


class Http2Handler:
    """The HTTP/2 handler of a flow (agent/protocols/handler.py), in TLS or as h2c: each request to the
    same inspection as HTTP/1.x, `:authority` naming the flow like Host. Every header block is decoded
    even when the flow is not inspected (HPACK state is shared), but then only `naming_budget` bytes are
    read. app is "grpc" once a request says `application/grpc`."""

    __slots__ = ("_bytes", "_conn", "_grpc", "_inspected", "_truncated", "ctx", "wants_client",
                 "wants_server")

    def __init__(self, ctx: HandlerContext, tunnel: Callable[[int], Handler] | None = None) -> None:
        self.ctx = ctx
        self._conn = Http2Connection(flow_id=ctx.flow_id, anomalies=ctx.anomalies,
                                     max_body_bytes=ctx.max_body_bytes if ctx.inspect else 0,
                                     max_decompressed_bytes=ctx.max_decompressed_bytes,
                                     on_request=self._request)
        self._bytes = 0
        self._grpc = self._inspected = self._truncated = False
        # The server's SETTINGS may allow longer client frames; only worth reading when content is.
        self.wants_client, self.wants_server = True, ctx.inspect

    def feed(self, data: bytes, from_client: bool) -> None:
        self._conn.feed(data, from_client)
        if from_client:
            self._bytes += len(data)
        self._sync()

    def gap(self, n: int, from_client: bool) -> None:
        self._conn.gap(n, from_client)
        self._sync()

    def close(self) -> None:
        self._conn.close()
        self.wants_client = self.wants_server = False

    def summary(self) -> Summary:
        return Summary(app="grpc" if self._grpc else "http2", host=self._conn.first_authority,
                       requests=self._conn.requests, inspected=self._inspected, truncated=self._truncated)

    def _request(self, request: HttpRequest) -> None:
        if request.content_type is not None and request.content_type.lower().startswith(_GRPC):
            self._grpc = True
        seen, cut = inspect_request(self.ctx, request)
        self._inspected, self._truncated = self._inspected or seen, self._truncated or cut

    def _sync(self) -> None:
        if self._conn.done or (not self.ctx.inspect and self._bytes >= self.ctx.naming_budget
                               and self._conn.first_authority is not None):
            self.wants_client = self.wants_server = False
