"""TLS ClientHello: server name, offered version and ALPN (RFC 8446 §4.1.2, §5.1; RFC 6066 §3; RFC 7301).

`parse_client_hello(buf)` reads the reassembled start of a client's byte stream. The hello may span several
TLS records (§5.1 allows a handshake message to be fragmented) and any number of TCP segments: a valid
prefix gives `NEED_MORE`, anything that cannot be a ClientHello gives None, and nothing raises. GREASE values
(RFC 8701) are skipped. With Encrypted Client Hello the outer server_name is what is reported.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from agent.anomalies import shape
from agent.protocols.handler import Handler, HandlerContext, Summary
from agent.protocols.http_syntax import valid_hostname

# Record header (§5.1): ContentType, ProtocolVersion (major, minor), uint16 length.
_RECORD: Final = struct.Struct("!BBBH")
_U8: Final = struct.Struct("!B")
_U16: Final = struct.Struct("!H")
_CONTENT_HANDSHAKE: Final = 22
_HANDSHAKE_CLIENT_HELLO: Final = 1
_MAX_FRAGMENT: Final = 2**14 + 2048     # §5.2: TLSCiphertext bound; a plaintext hello is within it
_MAX_HELLO: Final = 1 << 17             # far above any real hello (post-quantum ones are ~1.8 KB)

# ClientHello body (§4.1.2) as data: (field, kind, size). "fixed": size bytes; "vector": a size-byte
# length prefix, then that many bytes. legacy_version is read before this walk, extensions after it.
_CLIENT_HELLO: Final = (
    ("random", "fixed", 32),
    ("legacy_session_id", "vector", 1),
    ("cipher_suites", "vector", 2),
    ("legacy_compression_methods", "vector", 1),
)

_EXT_SERVER_NAME: Final = 0
_EXT_ALPN: Final = 16
_EXT_SUPPORTED_VERSIONS: Final = 43
_NAME_TYPE_HOST: Final = 0


class _NeedMore:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_MORE"


NEED_MORE: Final = _NeedMore()


@dataclass(frozen=True, slots=True)
class ClientHello:
    sni: str | None              # lower-case, no trailing dot
    version: int                 # highest offered: supported_versions, else legacy_version (0x0303 = 1.2)
    alpn: tuple[str, ...]
    # A server_name that is no host name, by its shape only (`digits(11)`): for the anomaly, never the flow.
    rejected_sni: str | None = field(default=None, compare=False)


class _Malformed(Exception):
    pass


class _Reader:
    """A bounds-checked cursor over a bytes view."""

    __slots__ = ("buf", "end", "off")

    def __init__(self, buf: bytes, off: int = 0, end: int | None = None) -> None:
        self.buf, self.off, self.end = buf, off, len(buf) if end is None else end

    def left(self) -> int:
        return self.end - self.off

    def take(self, n: int) -> bytes:
        if n > self.end - self.off:
            raise _Malformed
        self.off += n
        return self.buf[self.off - n: self.off]

    def u8(self) -> int:
        return _U8.unpack(self.take(1))[0]

    def u16(self) -> int:
        return _U16.unpack(self.take(2))[0]

    def vector(self, len_size: int) -> _Reader:
        n = self.u8() if len_size == 1 else self.u16()
        start = self.off
        self.take(n)
        return _Reader(self.buf, start, start + n)


def _is_grease(v: int) -> bool:
    return (v & 0x0F0F) == 0x0A0A and (v >> 8) == (v & 0xFF)


def _handshake_message(buf: bytes) -> bytes | _NeedMore | None:
    """The first handshake message, joined across records; NEED_MORE while `buf` is a valid prefix."""
    frag = bytearray()
    need = -1
    off = 0
    while True:
        if len(buf) - off < _RECORD.size:
            return NEED_MORE
        ctype, major, _minor, length = _RECORD.unpack_from(buf, off)
        if ctype != _CONTENT_HANDSHAKE or major != 3 or length == 0 or length > _MAX_FRAGMENT:
            return None
        body = buf[off + _RECORD.size: off + _RECORD.size + length]
        frag += body
        if need < 0 and len(frag) >= 4:
            if frag[0] != _HANDSHAKE_CLIENT_HELLO:
                return None
            need = 4 + int.from_bytes(frag[1:4], "big")
            if need > _MAX_HELLO:
                return None
        if 0 <= need <= len(frag):
            return bytes(frag[4:need])
        if len(body) < length:
            return NEED_MORE
        off += _RECORD.size + length


def _server_name(r: _Reader, out: dict) -> None:
    names = r.vector(2)
    while names.left():
        name_type = names.u8()
        name = names.vector(2)
        if name_type == _NAME_TYPE_HOST and "sni" not in out:
            text = name.take(name.left()).decode("latin-1")
            # The same check as an HTTP Host: a phone number or control bytes in the extension name no server.
            if valid_hostname(text):
                out["sni"] = text.lower().rstrip(".")
            else:
                out.setdefault("rejected_sni", shape(text))


def _alpn(r: _Reader, out: dict) -> None:
    protocols = r.vector(2)
    found = []
    while protocols.left():
        p = protocols.vector(1)
        raw = p.take(p.left())
        if len(raw) == 2 and _is_grease(_U16.unpack(raw)[0]):
            continue
        found.append(raw.decode("ascii", "backslashreplace"))
    out["alpn"] = tuple(found)


def _supported_versions(r: _Reader, out: dict) -> None:
    versions = r.vector(1)
    offered = []
    while versions.left() >= 2:
        v = versions.u16()
        if not _is_grease(v):
            offered.append(v)
    if offered:
        out["version"] = max(offered)


_EXTENSIONS: Final[dict[int, Callable[[_Reader, dict], None]]] = {
    _EXT_SERVER_NAME: _server_name,
    _EXT_ALPN: _alpn,
    _EXT_SUPPORTED_VERSIONS: _supported_versions,
}


def _parse_body(body: bytes) -> ClientHello:
    r = _Reader(body)
    out: dict = {"version": r.u16()}
    for _field, kind, size in _CLIENT_HELLO:
        if kind == "fixed":
            r.take(size)
        else:
            r.vector(size)
    if r.left():  # extensions are optional before TLS 1.3 (RFC 5246 §7.4.1.2)
        extensions = r.vector(2)
        while extensions.left():
            ext_type = extensions.u16()
            data = extensions.vector(2)
            handler = _EXTENSIONS.get(ext_type)
            if handler is not None:
                handler(data, out)
    return ClientHello(sni=out.get("sni"), version=out["version"], alpn=out.get("alpn", ()),
                       rejected_sni=None if "sni" in out else out.get("rejected_sni"))


def parse_client_hello(buf: bytes) -> ClientHello | _NeedMore | None:
    """The ClientHello at the start of `buf`, NEED_MORE if `buf` is a prefix of one, None if it is not one."""
    try:
        body = _handshake_message(bytes(buf))
        if body is None or body is NEED_MORE:
            return body
        assert isinstance(body, bytes)
        return _parse_body(body)
    except (_Malformed, struct.error, ValueError, IndexError):
        return None


def parse_handshake_client_hello(msg: bytes) -> ClientHello | None:
    """A ClientHello from one bare handshake message (type, uint24 length, body), as QUIC carries it in CRYPTO
    frames without the record layer (RFC 9001 §4); None if it is not a complete, well-formed one."""
    try:
        if len(msg) < 4 or msg[0] != _HANDSHAKE_CLIENT_HELLO:
            return None
        need = 4 + int.from_bytes(msg[1:4], "big")
        if need > _MAX_HELLO or len(msg) < need:
            return None
        return _parse_body(bytes(msg[4:need]))
    except (_Malformed, struct.error, ValueError, IndexError):
        return None


MAX_CLIENT_HELLO_BYTES = 65536   # a hello this long is not coming; stop buffering


class TlsHelloHandler:
    """The TLS handler of a flow without secrets (agent/protocols/handler.py): the ClientHello's server name
    and offered ALPN, then the flow is opaque."""

    __slots__ = ("_hello", "_sni", "ctx", "wants_client", "wants_server")

    def __init__(self, ctx: HandlerContext, tunnel: Callable[[int], Handler] | None = None) -> None:
        self.ctx = ctx
        self._hello = bytearray()
        self._sni: str | None = None
        self.wants_client, self.wants_server = True, False

    def feed(self, data: bytes, from_client: bool) -> None:
        if not from_client or not self.wants_client:
            return
        self._hello += data
        hello = parse_client_hello(bytes(self._hello))
        ctx = self.ctx
        if hello is NEED_MORE:
            if len(self._hello) <= MAX_CLIENT_HELLO_BYTES:
                return
            ctx.anomalies.add("tls", "client_hello_too_long", f"over {MAX_CLIENT_HELLO_BYTES} bytes",
                              flow_id=ctx.flow_id)
        elif hello is None:
            ctx.anomalies.add("tls", "malformed_client_hello", f"{len(self._hello)} bytes",
                              flow_id=ctx.flow_id)
        else:
            assert isinstance(hello, ClientHello)
            self._sni = hello.sni
            if hello.rejected_sni is not None:
                ctx.anomalies.add("tls", "bad_host", f"server_name {hello.rejected_sni} is no host name",
                                  flow_id=ctx.flow_id)
        self._hello = bytearray()
        self.wants_client = False

    def gap(self, n: int, from_client: bool) -> None:
        if from_client and self.wants_client:
            # A hole in the ClientHello: nothing more to learn.
            self.ctx.anomalies.add("tls", "client_hello_gap", f"{n} bytes missing", flow_id=self.ctx.flow_id)
            self._hello = bytearray()
            self.wants_client = False

    def close(self) -> None:
        if self.wants_client and self._hello:
            self.ctx.anomalies.add("tls", "client_hello_incomplete", f"{len(self._hello)} bytes at close",
                                   flow_id=self.ctx.flow_id)
        self._hello = bytearray()
        self.wants_client = False

    def summary(self) -> Summary:
        return Summary(app="tls", sni=self._sni, encrypted=True)
