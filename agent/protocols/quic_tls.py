"""TLS 1.3 handshake messages as QUIC carries them: bare messages in CRYPTO frames, no record layer (RFC 9001
§4).

`HandshakeMessages` cuts one reassembled CRYPTO stream into messages (type, uint24 length, body; RFC 8446 §4),
with a bound on what it holds, and `Handshake` reads the messages wanted from them. What QUIC naming and
decryption need from them is read here: the cipher suite of a ServerHello (which keys a logged secret expands
to) and the ALPN of EncryptedExtensions (the negotiated protocol, "h3"). The ClientHello is
agent/protocols/tls.py's parser, so QUIC and TLS over TCP name a server alike. Nothing here raises on bad
input: a message that does not parse yields None.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Hashable, Iterator
from typing import Final

from agent.protocols.quic_frames import Reassembly
from agent.protocols.quic_keys import supported_suite
from agent.protocols.tls import ClientHello, parse_handshake_client_hello

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


class Handshake:
    """What the handshake tells an observer, fed the CRYPTO frames of the streams carrying what is wanted
    (client Initial: ClientHello; server Initial: ServerHello; server Handshake: EncryptedExtensions).
    A stream is read up to its wanted message, within `limit` bytes; problems go to `anomaly(name, detail)`.
    """

    def __init__(self, anomaly: Callable[[str, str], None], limit: int) -> None:
        self._anomaly, self.limit = anomaly, limit
        self.hello: ClientHello | None = None
        self.client_random: bytes | None = None
        self.cipher_suite: int | None = None
        self.alpn: str | None = None                     # negotiated, from EncryptedExtensions
        self.unsupported = False                         # the suite is none QUIC can use (RFC 9001 §5.3)
        self._streams: dict[Hashable, tuple[Reassembly, HandshakeMessages]] = {}
        self._done: set[Hashable] = set()

    def crypto(self, stream: Hashable, want: int, offset: int, data: bytes) -> None:
        if stream in self._done:
            return
        entry = self._streams.get(stream)
        if entry is None:
            entry = self._streams[stream] = (Reassembly(self.limit), HandshakeMessages(self.limit))
        reassembly, messages = entry
        for msg in messages.feed(reassembly.add(offset, data)):
            if msg[0] == want:
                self._done.add(stream)
                self._message(msg)
                break
        if stream not in self._done and (reassembly.gap or messages.overflow):
            self._anomaly("crypto_too_long", f"a CRYPTO stream over {self.limit} bytes before message {want}")
            self._done.add(stream)
        if stream in self._done:
            self._streams.pop(stream, None)

    def restart(self, stream: Hashable) -> None:
        """Read `stream` again from its start (after a Retry the client's CRYPTO stream starts over, and some
        clients, aioquic among them, send a new ClientHello with a new random)."""
        self._done.discard(stream)
        self._streams.pop(stream, None)

    def _message(self, msg: bytes) -> None:
        if msg[0] == CLIENT_HELLO:
            hello = parse_handshake_client_hello(msg)
            if hello is None:
                self._anomaly("malformed_client_hello", f"{len(msg)} bytes")
                return
            self.hello, self.client_random = hello, msg[6:38]   # type, length, legacy_version, random
            if hello.rejected_sni is not None:
                self._anomaly("bad_host", f"server_name {hello.rejected_sni} is no host name")
        elif msg[0] == SERVER_HELLO:
            suite = server_hello_suite(msg)
            if suite is None:
                self._anomaly("malformed_server_hello", f"{len(msg)} bytes")
                return
            self.cipher_suite = suite
            if not supported_suite(suite):
                self.unsupported = True
                self._anomaly("unsupported_cipher", f"cipher suite 0x{suite:04x}")
        elif msg[0] == ENCRYPTED_EXTENSIONS:
            self.alpn = encrypted_extensions_alpn(msg)
