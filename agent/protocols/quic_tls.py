"""TLS 1.3 handshake messages as QUIC carries them: bare messages in CRYPTO frames, no record layer (RFC 9001
§4).

`HandshakeMessages` cuts one reassembled CRYPTO stream into messages (type, uint24 length, body; RFC 8446 §4),
with a bound on what it holds. What QUIC naming and decryption need from them is read here: the cipher suite
of a ServerHello (which keys a logged secret expands to) and the ALPN of EncryptedExtensions (the negotiated
protocol, "h3"). The ClientHello is agent/protocols/tls.py's parser, so QUIC and TLS over TCP name a server
alike. Nothing here raises on bad input: a message that does not parse yields None.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Final

CLIENT_HELLO: Final = 1
SERVER_HELLO: Final = 2
ENCRYPTED_EXTENSIONS: Final = 8
_EXT_ALPN: Final = 16
_U16: Final = struct.Struct("!H")


class HandshakeMessages:
    """Complete handshake messages out of one in-order CRYPTO stream, holding at most `limit` bytes."""

    __slots__ = ("_buf", "limit", "overflow")

    def __init__(self, limit: int) -> None:
        self._buf = bytearray()
        self.limit = limit
        self.overflow = False    # a message longer than `limit`: the stream is no longer read

    def feed(self, data: bytes) -> Iterator[bytes]:
        """The messages (header included) completed by `data`."""
        if self.overflow:
            return
        self._buf += data
        while len(self._buf) >= 4:
            need = 4 + int.from_bytes(self._buf[1:4], "big")
            if need > self.limit:
                # A certificate chain can be long, but nothing this reader wants is: stop holding bytes.
                self.overflow = True
                self._buf.clear()
                return
            if len(self._buf) < need:
                return
            msg = bytes(self._buf[:need])
            del self._buf[:need]
            yield msg


def _vector(body: bytes, off: int, size: int) -> tuple[int, int]:
    """(start, end) of the length-prefixed vector at `off`; ValueError past the end of `body`."""
    n = int.from_bytes(body[off: off + size], "big")
    start = off + size
    if start + n > len(body) or start > len(body):
        raise ValueError("vector past the end")
    return start, start + n


def server_hello_suite(msg: bytes) -> int | None:
    """The cipher suite a ServerHello (or HelloRetryRequest) selected."""
    if len(msg) < 4 or msg[0] != SERVER_HELLO:
        return None
    body = msg[4:]
    try:
        _, end = _vector(body, 2 + 32, 1)           # legacy_version, random, legacy_session_id_echo
        if end + 2 > len(body):
            return None
        return int(_U16.unpack_from(body, end)[0])
    except (ValueError, struct.error):
        return None


def encrypted_extensions_alpn(msg: bytes) -> str | None:
    """The protocol the server selected in EncryptedExtensions' ALPN extension (RFC 7301 §3.1)."""
    if len(msg) < 4 or msg[0] != ENCRYPTED_EXTENSIONS:
        return None
    body = msg[4:]
    try:
        off, end = _vector(body, 0, 2)
        while off + 4 <= end:
            ext_type, = _U16.unpack_from(body, off)
            start, stop = _vector(body, off + 2, 2)
            if ext_type == _EXT_ALPN:
                names, names_end = _vector(body, start, 2)
                if names < names_end:
                    first, first_end = _vector(body, names, 1)
                    return body[first:first_end].decode("ascii", "backslashreplace")
                return None
            off = stop
    except (ValueError, struct.error):
        return None
    return None
