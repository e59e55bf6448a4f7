"""TLS handshake messages as the decryptor needs them (RFC 8446 §4; RFC 5246 §7.4; RFC 7301).

`HandshakeStream` cuts one direction's handshake bytes (plaintext records or decrypted ones) into messages,
across record boundaries, keeping the body only of the message types asked for (bounded) and skipping the
rest by count, so a 100 KB certificate chain costs no memory. The parsers read the few fields decryption
depends on: the client random and early-data offer of a ClientHello, the version, random and suite chosen
by a ServerHello (HelloRetryRequest told apart, §4.1.3), and the ALPN a server selected.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from agent.protocols.tls import ClientHello, parse_handshake_client_hello

HS_CLIENT_HELLO: Final = 1
HS_SERVER_HELLO: Final = 2
HS_END_OF_EARLY_DATA: Final = 5
HS_ENCRYPTED_EXTENSIONS: Final = 8
HS_FINISHED: Final = 20
HS_KEY_UPDATE: Final = 24

# §4.1.3: a HelloRetryRequest is a ServerHello whose random is SHA-256("HelloRetryRequest").
HRR_RANDOM: Final = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")
MAX_BODY: Final = 1 << 17           # the largest body kept (a post-quantum ClientHello is ~1.8 KB)

_EXT_ALPN: Final = 16
_EXT_EARLY_DATA: Final = 42
_EXT_SUPPORTED_VERSIONS: Final = 43


class HandshakeStream:
    """Handshake messages from a byte stream: `feed()` gives (type, body or None) per completed message."""

    __slots__ = ("_body", "_head", "_need", "_type", "_wanted")

    def __init__(self, wanted: frozenset[int] = frozenset()) -> None:
        self._wanted = wanted
        self._head = bytearray()        # the 4-byte header being read
        self._type = -1
        self._need = 0                  # body bytes still to come
        self._body: bytearray | None = None

    def feed(self, data: bytes) -> list[tuple[int, bytes | None]]:
        out: list[tuple[int, bytes | None]] = []
        view = memoryview(data)
        while view:
            if self._type < 0:
                take = 4 - len(self._head)
                self._head += view[:take]
                view = view[take:]
                if len(self._head) < 4:
                    break
                self._type = self._head[0]
                self._need = int.from_bytes(self._head[1:4], "big")
                self._head.clear()
                keep = self._type in self._wanted and self._need <= MAX_BODY
                self._body = bytearray() if keep else None
            take = min(self._need, len(view))
            if self._body is not None:
                self._body += view[:take]
            view = view[take:]
            self._need -= take
            if self._need == 0:
                out.append((self._type, bytes(self._body) if self._body is not None else None))
                self._type, self._body = -1, None
        return out


class _Cursor:
    __slots__ = ("buf", "off")

    def __init__(self, buf: bytes, off: int = 0) -> None:
        self.buf, self.off = buf, off

    def take(self, n: int) -> bytes:
        if n < 0 or self.off + n > len(self.buf):
            raise ValueError("short")
        self.off += n
        return self.buf[self.off - n:self.off]

    def num(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big")

    def vector(self, len_size: int) -> bytes:
        return self.take(self.num(len_size))


def _extensions(c: _Cursor) -> dict[int, bytes]:
    """Extension type -> data (the first of each type), from the cursor's position; {} if absent."""
    out: dict[int, bytes] = {}
    if c.off >= len(c.buf):
        return out      # extensions are optional before TLS 1.3
    block = _Cursor(c.vector(2))
    while block.off < len(block.buf):
        ext_type = block.num(2)
        out.setdefault(ext_type, block.vector(2))
    return out


def _first_alpn(data: bytes | None) -> str | None:
    if not data:
        return None
    names = _Cursor(_Cursor(data).vector(2))
    return names.vector(1).decode("ascii", "backslashreplace") or None


@dataclass(frozen=True, slots=True)
class HelloInfo:
    """What a ClientHello means for decryption; `hello` is the public summary (SNI, ALPN offered)."""
    random: bytes
    offers_early_data: bool
    hello: ClientHello | None


def parse_client_hello_body(body: bytes) -> HelloInfo | None:
    try:
        c = _Cursor(body)
        c.take(2)
        random = c.take(32)
        c.vector(1)
        c.vector(2)
        c.vector(1)
        exts = _extensions(c)
    except ValueError:
        return None
    # The public fields (server name, offered ALPN) come from tls.py's parser, the one every path names by.
    hello = parse_handshake_client_hello(bytes([HS_CLIENT_HELLO]) + len(body).to_bytes(3, "big") + body)
    return HelloInfo(random, _EXT_EARLY_DATA in exts, hello)


@dataclass(frozen=True, slots=True)
class ServerHello:
    version: int                # negotiated: supported_versions if present, else legacy_version
    random: bytes
    cipher_suite: int
    retry: bool                 # a HelloRetryRequest: another ServerHello follows
    alpn: str | None            # TLS 1.2 puts the selected ALPN here; TLS 1.3 in EncryptedExtensions


def parse_server_hello(body: bytes) -> ServerHello | None:
    try:
        c = _Cursor(body)
        legacy = c.num(2)
        random = c.take(32)
        c.vector(1)
        suite = c.num(2)
        c.take(1)
        exts = _extensions(c)
        selected = exts.get(_EXT_SUPPORTED_VERSIONS)
        version = int.from_bytes(selected, "big") if selected is not None and len(selected) == 2 else legacy
        return ServerHello(version, random, suite, random == HRR_RANDOM, _first_alpn(exts.get(_EXT_ALPN)))
    except ValueError:
        return None


def parse_encrypted_extensions_alpn(body: bytes) -> str | None:
    """The ALPN protocol a TLS 1.3 server selected, from its EncryptedExtensions body."""
    try:
        return _first_alpn(_extensions(_Cursor(body)).get(_EXT_ALPN))
    except ValueError:
        return None
