"""HTTP/3 requests from a client's decrypted QUIC streams (RFC 9114), headers through QPACK (RFC 9204).

`Http3Requests` is fed each stream's bytes in order (quic.py reassembles them). Client unidirectional streams
start with a type (§6.2): the control stream (0x00) carries frames this reader skips, the QPACK encoder stream
(0x02) the dynamic table inserts that the client's header blocks refer to, and is fed to pylsqpack's decoder;
the decoder stream (0x03), pushes and unknown types are ignored. Request streams (client-initiated
bidirectional, §6.1) carry HEADERS, DATA and trailing HEADERS frames; at the stream's FIN the request is
handed to `on_request` as an `HttpRequest` (version "HTTP/3", host from :authority) with its body decoded and
budgeted like HTTP/1.x (`MessageBody`). A header block that refers to table entries not received yet is
blocked (RFC 9204 §2.1.2): its stream's later bytes wait, bounded, until the encoder stream unblocks it.

The server's control stream is read only for its SETTINGS: the table capacity it allows decides how a header
block's Required Insert Count is decoded (§4.5.1.1), so the QPACK decoder is made once that is known (or at
the first header block, with the bound as the capacity, which decodes alike while the table is young).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pylsqpack
from aioquic.buffer import Buffer

from agent.anomalies import AnomalySink, shape
from agent.protocols.http import HttpRequest
from agent.protocols.http_body import BodyBudget, MessageBody
from agent.protocols.http_syntax import tokens, valid_host

_DATA, _HEADERS = 0x00, 0x01
_SETTINGS = 0x04
_SETTING_QPACK_MAX_TABLE_CAPACITY, _SETTING_QPACK_BLOCKED_STREAMS = 0x01, 0x07
_UNI_CONTROL, _UNI_ENCODER = 0x00, 0x02
_QPACK_ERRORS = (pylsqpack.DecompressionFailed, pylsqpack.DecoderStreamError, pylsqpack.EncoderStreamError)


@dataclass(frozen=True, slots=True)
class Http3Limits:
    max_frame_header_block: int = 65536     # one HEADERS frame (the field section before QPACK decoding)
    max_blocked_bytes: int = 262144         # a blocked request stream's bytes held until it is unblocked
    qpack_max_table_capacity: int = 65536   # dynamic table bytes held for the client's encoder
    qpack_blocked_streams: int = 64
    max_streams: int = 256                  # request streams open at once
    max_finished: int = 4096                # finished stream ids kept (a late retransmission is no request)


class _Request:
    """A request stream being read: the frame being parsed, the head once decoded, the body."""

    __slots__ = ("blocked", "body", "buf", "fields", "fin", "pseudo", "stash")

    def __init__(self) -> None:
        self.buf = bytearray()                  # unparsed frame bytes (a frame header or a HEADERS payload)
        self.pseudo: dict[str, str] = {}
        self.fields: list[tuple[str, str]] | None = None   # None until the request's HEADERS is decoded
        self.body: MessageBody | None = None
        self.blocked = False
        self.stash = bytearray()                # bytes that arrived while the header block was blocked
        self.fin = False


def _frame(buf: bytearray | bytes) -> tuple[int, int, int] | None:
    """(type, payload length, header size) of the frame at the start of `buf`, None if incomplete."""
    b = Buffer(data=bytes(buf[:16]))
    try:
        ftype = b.pull_uint_var()
        length = b.pull_uint_var()
    except ValueError:
        return None
    return ftype, length, b.tell()


class Http3Requests:
    """The requests of one HTTP/3 connection, from the client's streams (and the server's SETTINGS)."""

    def __init__(self, on_request: Callable[[HttpRequest], None], *, max_body_bytes: int,
                 max_decompressed_bytes: int, anomalies: AnomalySink, flow_id: str | None = None,
                 limits: Http3Limits | None = None) -> None:
        self.on_request = on_request
        self.max_decompressed_bytes = max_decompressed_bytes
        self.anomalies, self.flow_id = anomalies, flow_id
        self.limits = limits or Http3Limits()
        self.budget = BodyBudget(max_body_bytes)
        self.requests = 0
        self.settings: dict[int, int] | None = None      # the server's SETTINGS once read
        self._decoder: pylsqpack.Decoder | None = None
        self._streams: dict[int, _Request] = {}
        self._uni: dict[int, int | bytearray] = {}       # uni stream -> its type, or the bytes before it
        self._finished: set[int] = set()
        self._control = bytearray()                      # the server's control stream until SETTINGS is read
        self._broken = False                             # QPACK state lost: no later header block decodes

    def _anomaly(self, name: str, detail: str) -> None:
        self.anomalies.add("http3", name, detail, flow_id=self.flow_id)

    # -- streams ----------------------------------------------------------------------------------------

    def client_stream(self, stream_id: int, data: bytes, fin: bool) -> None:
        """In-order bytes of a client-initiated stream (bidirectional: a request; unidirectional: typed)."""
        if stream_id & 0x02:
            kind = self._uni_type(stream_id, data)
            if kind is not None and kind[0] == _UNI_ENCODER and kind[1]:
                self._encoder(kind[1])
            return
        if stream_id in self._finished:
            return
        req = self._streams.get(stream_id)
        if req is None:
            if len(self._streams) >= self.limits.max_streams:
                self._anomaly("too_many_streams", f"over {self.limits.max_streams} open request streams")
                self._finished.add(stream_id)
                return
            req = self._streams[stream_id] = _Request()
        if req.blocked:
            if len(req.stash) + len(data) > self.limits.max_blocked_bytes:
                self._anomaly("qpack_blocked_too_long", f"stream {stream_id}: over "
                                                        f"{self.limits.max_blocked_bytes} bytes held")
                self._drop(stream_id)
                return
            req.stash += data
            req.fin = req.fin or fin
            return
        req.fin = req.fin or fin
        self._request_bytes(stream_id, req, data)

    def server_stream(self, stream_id: int, data: bytes, fin: bool) -> None:
        """In-order bytes of a server-initiated unidirectional stream: only its control stream's SETTINGS."""
        kind = self._uni_type(stream_id, data)
        if kind is None or kind[0] != _UNI_CONTROL or self.settings is not None:
            return
        held = self._control
        held += kind[1]
        head = _frame(held)
        if head is None or len(held) > self.limits.max_frame_header_block:
            return
        ftype, length, size = head
        if ftype != _SETTINGS:
            self._anomaly("missing_settings", "the server's control stream does not start with SETTINGS")
            self.settings = {}
            return
        if len(held) < size + length:
            return
        settings: dict[int, int] = {}
        b = Buffer(data=bytes(held[size: size + length]))
        try:
            while not b.eof():
                key = b.pull_uint_var()
                settings[key] = b.pull_uint_var()
        except ValueError:
            self._anomaly("malformed_settings", f"{length} bytes")
        self.settings = settings
        held.clear()

    def reset(self, stream_id: int) -> None:
        """RESET_STREAM: the request was abandoned; nothing of it is handed on."""
        if stream_id in self._streams:
            self._drop(stream_id)

    def close(self) -> None:
        """The connection ended: a request cut short is inspected as far as it came, marked truncated."""
        for stream_id, req in list(self._streams.items()):
            self._anomaly("request_incomplete", f"stream {stream_id} had no FIN at the close")
            if req.fields is not None and req.body is not None:
                req.body.cut()
                self._finish(stream_id, req)
            else:
                self._drop(stream_id)

    def _uni_type(self, stream_id: int, data: bytes) -> tuple[int, bytes] | None:
        """(stream type, bytes after it) of a unidirectional stream's data; None until the type is in."""
        known = self._uni.get(stream_id)
        if isinstance(known, int):
            return known, data
        held = (known or bytearray()) + data
        b = Buffer(data=bytes(held[:8]))
        try:
            kind = b.pull_uint_var()
        except ValueError:
            if len(self._uni) < 64:      # a type is at most 8 bytes; few such streams are legitimate
                self._uni[stream_id] = held
            return None
        self._uni[stream_id] = kind
        return kind, bytes(held[b.tell():])

    # -- QPACK ------------------------------------------------------------------------------------------

    def _qpack(self) -> pylsqpack.Decoder:
        if self._decoder is None:
            s = self.settings or {}
            cap = min(s.get(_SETTING_QPACK_MAX_TABLE_CAPACITY, self.limits.qpack_max_table_capacity),
                      self.limits.qpack_max_table_capacity)
            blocked = min(s.get(_SETTING_QPACK_BLOCKED_STREAMS, self.limits.qpack_blocked_streams),
                          self.limits.qpack_blocked_streams)
            self._decoder = pylsqpack.Decoder(cap, blocked)
        return self._decoder

    def _encoder(self, data: bytes) -> None:
        if self._broken:
            return
        try:
            unblocked = self._qpack().feed_encoder(data)
        except _QPACK_ERRORS:
            self._anomaly("qpack_encoder_stream_error", f"{len(data)} bytes")
            self._broken = True
            return
        for stream_id in unblocked:
            req = self._streams.get(stream_id)
            if req is None or not req.blocked:
                continue
            try:
                _, headers = self._qpack().resume_header(stream_id)
            except _QPACK_ERRORS:
                self._anomaly("qpack_decompression_failed", f"stream {stream_id}")
                self._drop(stream_id)
                continue
            req.blocked = False
            self._head(stream_id, req, headers)
            stash, req.stash = bytes(req.stash), bytearray()
            self._request_bytes(stream_id, req, stash)

    # -- request streams --------------------------------------------------------------------------------

    def _request_bytes(self, stream_id: int, req: _Request, data: bytes) -> None:
        req.buf += data
        while req.buf and stream_id in self._streams and not req.blocked:
            head = _frame(req.buf)
            if head is None:
                break
            ftype, length, size = head
            if ftype == _DATA:
                # DATA is handed on as it comes: only the frame header needs to be whole.
                chunk = bytes(req.buf[size: size + length])
                if req.body is not None:
                    req.body.add(chunk)
                elif chunk:
                    self._anomaly("data_before_headers", f"stream {stream_id}")
                if len(chunk) < length:
                    # The rest of the payload follows: rewrite the header with what is still owed.
                    rest = Buffer(capacity=16)
                    rest.push_uint_var(_DATA)
                    rest.push_uint_var(length - len(chunk))
                    req.buf = bytearray(rest.data)
                    break
                del req.buf[: size + length]
                continue
            if length > self.limits.max_frame_header_block:
                self._anomaly("frame_too_long", f"stream {stream_id}: frame 0x{ftype:x} of {length} bytes")
                self._drop(stream_id)
                return
            if len(req.buf) < size + length:
                break
            payload = bytes(req.buf[size: size + length])
            del req.buf[: size + length]
            if ftype == _HEADERS:
                self._header_block(stream_id, req, payload)
            # Any other frame type (PUSH_PROMISE is the server's; reserved types, RFC 9114 §7.2.8) is skipped.
        if req.fin and not req.blocked and stream_id in self._streams:
            self._finish(stream_id, req)

    def _header_block(self, stream_id: int, req: _Request, block: bytes) -> None:
        if self._broken:
            self._drop(stream_id)
            return
        try:
            _, headers = self._qpack().feed_header(stream_id, block)
        except pylsqpack.StreamBlocked:
            req.blocked = True
            req.stash, req.buf = req.buf, bytearray()
            return
        except _QPACK_ERRORS:
            self._anomaly("qpack_decompression_failed", f"stream {stream_id}: {len(block)} bytes")
            self._drop(stream_id)
            return
        self._head(stream_id, req, headers)

    def _head(self, stream_id: int, req: _Request, headers: list[tuple[bytes, bytes]]) -> None:
        decoded = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in headers]
        if req.fields is not None:
            req.fields += [(n, v) for n, v in decoded if not n.startswith(":")]   # trailer fields appended
            return
        req.fields = [(n, v) for n, v in decoded if not n.startswith(":")]
        req.pseudo = {n: v for n, v in reversed(decoded) if n.startswith(":")}
        codings = tokens([v for n, v in req.fields if n.lower() == "content-encoding"])
        req.body = MessageBody(self.budget, codings, self.max_decompressed_bytes, self._anomaly)

    def _finish(self, stream_id: int, req: _Request) -> None:
        self._drop(stream_id)
        if req.fields is None:
            self._anomaly("request_without_headers", f"stream {stream_id}")
            return
        body, truncated = (req.body.finish(self._anomaly, self.max_decompressed_bytes), req.body.truncated) \
            if req.body is not None else (b"", False)
        method, path = req.pseudo.get(":method"), req.pseudo.get(":path")
        content_type = next((v.strip() for n, v in req.fields if n.lower() == "content-type"), None)
        request = HttpRequest(
            method=method or "", target=path or "", version="HTTP/3", host=self._host(req),
            headers=tuple(req.fields), content_type=content_type, body=body, body_truncated=truncated,
            malformed=method is None or (path is None and method != "CONNECT"))
        self.requests += 1
        self.on_request(request)

    def _host(self, req: _Request) -> str | None:
        # :authority names the server like Host (RFC 9114 §4.3.1); a Host field stands in when it is absent.
        authority = req.pseudo.get(":authority")
        if authority is None:
            authority = next((v.strip(" \t") for n, v in req.fields or () if n.lower() == "host"), None)
        if not authority:
            return None
        if not valid_host(authority):
            self._anomaly("bad_host", f":authority {shape(authority[:1024])} is no host name")
            return None
        return authority.lower()

    def _drop(self, stream_id: int) -> None:
        req = self._streams.pop(stream_id, None)
        if req is not None and req.blocked and self._decoder is not None:
            try:
                self._decoder.cancel_stream(stream_id)
            except _QPACK_ERRORS:
                self._broken = True
        self._finished.add(stream_id)
        if len(self._finished) > self.limits.max_finished:
            self._finished.remove(min(self._finished))
