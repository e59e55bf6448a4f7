"""TLS 1.3 handshake messages as QUIC carries them: bare messages in CRYPTO frames, no record layer (RFC 9001
§4).

`Handshake` reassembles each CRYPTO stream (bounded) and cuts it into messages with TLS's own
`HandshakeStream`, keeping only the message wanted from that stream. What QUIC naming and
decryption need from them is read here: the cipher suite of a ServerHello (which keys a logged secret expands
to) and the ALPN of EncryptedExtensions (the negotiated protocol, "h3"), with the parsers TLS over TCP uses
(agent/protocols/tls_handshake.py), so QUIC and TLS name a server alike. Nothing here raises on bad
input: a message that does not parse yields None.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Final

from agent.protocols import tls_handshake as hs
from agent.protocols.quic_frames import Reassembly
from agent.protocols.quic_keys import supported_suite
from agent.protocols.tls import ClientHello

CLIENT_HELLO: Final = hs.HS_CLIENT_HELLO
SERVER_HELLO: Final = hs.HS_SERVER_HELLO
ENCRYPTED_EXTENSIONS: Final = hs.HS_ENCRYPTED_EXTENSIONS


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
        self._streams: dict[Hashable, tuple[Reassembly, hs.HandshakeStream]] = {}
        self._done: set[Hashable] = set()

    def crypto(self, stream: Hashable, want: int, offset: int, data: bytes) -> None:
        if stream in self._done:
            return
        entry = self._streams.get(stream)
        if entry is None:
            entry = self._streams[stream] = (Reassembly(self.limit), hs.HandshakeStream(frozenset({want})))
        reassembly, messages = entry
        for msg_type, body in messages.feed(reassembly.add(offset, data)):
            if msg_type == want:
                self._done.add(stream)
                self._message(msg_type, body)
                break
        if stream not in self._done and reassembly.gap:
            self._anomaly("crypto_too_long", f"a CRYPTO stream over {self.limit} bytes before message {want}")
            self._done.add(stream)
        if stream in self._done:
            self._streams.pop(stream, None)

    def restart(self, stream: Hashable) -> None:
        """Read `stream` again from its start (after a Retry the client's CRYPTO stream starts over, and some
        clients, aioquic among them, send a new ClientHello with a new random)."""
        self._done.discard(stream)
        self._streams.pop(stream, None)

    def _message(self, msg_type: int, body: bytes | None) -> None:
        # The same parsers as TLS over TCP (agent/protocols/tls_handshake.py): QUIC and TLS name alike.
        size = len(body) if body is not None else 0
        if msg_type == CLIENT_HELLO:
            info = hs.parse_client_hello_body(body) if body is not None else None
            if info is None or info.hello is None:
                self._anomaly("malformed_client_hello", f"{size} bytes")
                return
            self.hello, self.client_random = info.hello, info.random
            if info.hello.rejected_sni is not None:
                self._anomaly("bad_host", f"server_name {info.hello.rejected_sni} is no host name")
        elif msg_type == SERVER_HELLO:
            server = hs.parse_server_hello(body) if body is not None else None
            if server is None:
                self._anomaly("malformed_server_hello", f"{size} bytes")
                return
            self.cipher_suite = server.cipher_suite
            if not supported_suite(server.cipher_suite):
                self.unsupported = True
                self._anomaly("unsupported_cipher", f"cipher suite 0x{server.cipher_suite:04x}")
        elif msg_type == ENCRYPTED_EXTENSIONS and body is not None:
            self.alpn = hs.parse_encrypted_extensions_alpn(body)
