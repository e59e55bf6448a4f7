"""QUIC packet protection keys for a passive observer, through aioquic's helpers (RFC 9001 §5, RFC 9369 §3.3).

Initial keys come from public salts and the client's first Destination Connection ID, so anyone on the path
can open Initial packets (that is how the ClientHello's server name is read with no secrets). The other levels
use the TLS traffic secrets an endpoint logged (NSS key log labels) and the cipher suite of the ServerHello.
`Opener` removes header protection, recovers the packet number (RFC 9000 §A.3) and opens the AEAD, following
key phase changes (RFC 9001 §6) while keeping the previous phase for packets reordered around an update. No
cipher is written here: header protection and AEAD are aioquic's CryptoContext.
"""

from __future__ import annotations

from typing import Final

from aioquic.quic.crypto import (
    CIPHER_SUITES,
    INITIAL_CIPHER_SUITE,
    CryptoContext,
    CryptoError,
    CryptoPair,
    apply_key_phase,
    next_key_phase,
)
from aioquic.tls import CipherSuite, cipher_suite_hash, hkdf_expand_label, hkdf_extract

from agent.protocols.quic_wire import DRAFT_VERSIONS, KNOWN_VERSIONS, VERSION_1, VERSION_2

__all__ = ["DRAFT_VERSIONS", "KNOWN_VERSIONS", "VERSION_1", "VERSION_2", "CryptoError", "KeyWait", "Opener",
           "initial_contexts", "secret_context"]

# draft-ietf-quic-tls-29 §5.2: drafts 29 to 32 share this salt (v1 and v2 salts are aioquic's).
_DRAFT_29_SALT: Final = bytes.fromhex("afbfec289993d24c9e9786f19c6111e04390a899")


def initial_contexts(dcid: bytes, version: int) -> tuple[CryptoContext, CryptoContext]:
    """(client's, server's) Initial packet protection for a connection whose client first sent to `dcid`."""
    if version in DRAFT_VERSIONS:
        # aioquic knows only the v1 and v2 salts; the derivation is the same with the draft salt.
        algorithm = cipher_suite_hash(INITIAL_CIPHER_SUITE)
        initial = hkdf_extract(algorithm, _DRAFT_29_SALT, dcid)
        contexts = []
        for label in (b"client in", b"server in"):
            ctx = CryptoContext()
            ctx.setup(cipher_suite=INITIAL_CIPHER_SUITE, version=version,
                      secret=hkdf_expand_label(algorithm, initial, label, b"", algorithm.digest_size))
            contexts.append(ctx)
        return contexts[0], contexts[1]
    pair = CryptoPair()
    pair.setup_initial(dcid, is_client=True, version=version)
    return pair.send, pair.recv     # as the client: it sends with the client's keys


def secret_context(suite: int, secret: bytes, version: int) -> CryptoContext | None:
    """Packet protection from a logged TLS traffic secret; None for a suite QUIC cannot use or a secret whose
    length does not fit the suite's hash (a key log line for another connection)."""
    try:
        cipher_suite = CipherSuite(suite)
    except ValueError:
        return None
    if cipher_suite not in CIPHER_SUITES or len(secret) != cipher_suite_hash(cipher_suite).digest_size:
        return None
    ctx = CryptoContext()
    ctx.setup(cipher_suite=cipher_suite, secret=secret, version=version)
    return ctx


def supported_suite(suite: int) -> bool:
    try:
        return CipherSuite(suite) in CIPHER_SUITES
    except ValueError:
        return False


def _copy(ctx: CryptoContext) -> CryptoContext:
    """The context as it is now, for packets of the phase being left (an update replaces it in place)."""
    old = CryptoContext(key_phase=ctx.key_phase)
    old.aead, old.hp, old.secret = ctx.aead, ctx.hp, ctx.secret
    old.cipher_suite, old.version = ctx.cipher_suite, ctx.version
    return old


class Opener:
    """Opens one sender's packets of one packet number space."""

    __slots__ = ("_ctx", "_previous", "expected")

    def __init__(self, ctx: CryptoContext) -> None:
        self._ctx = ctx
        self._previous: CryptoContext | None = None
        self.expected = 0                       # largest packet number opened + 1 (RFC 9000 §A.3)

    def open(self, packet: bytes, pn_offset: int) -> tuple[int, bytes]:
        """(packet number, plaintext payload); CryptoError when the packet does not open."""
        try:
            _header, payload, pn, updated = self._ctx.decrypt_packet(packet, pn_offset, self.expected)
        except CryptoError:
            # A packet of the phase before the last update, reordered behind it: the old keys open it.
            if self._previous is None:
                raise
            _header, payload, pn, updated = self._previous.decrypt_packet(packet, pn_offset, self.expected)
            updated = False
        if updated:
            # The peer moved to the next key phase (the packet opened with it): the header protection key
            # stays, the AEAD and secret move on; aioquic's apply_key_phase does exactly that.
            self._previous = _copy(self._ctx)
            apply_key_phase(self._ctx, next_key_phase(self._ctx), trigger="remote_update")
        self.expected = max(self.expected, pn + 1)
        return pn, payload


class KeyWait:
    """Protected packets held until their keys are logged: at most `max_bytes` in all, and at most
    `max_server_packets` of the server's (only its first packets matter to an observer of requests: the
    Handshake flight and the 1-RTT packet with its SETTINGS; a download must not crowd out the client's)."""

    __slots__ = ("bytes", "gave_up", "levels", "max_bytes", "max_server_packets", "packets", "server_packets")

    def __init__(self, max_bytes: int, max_server_packets: int = 16) -> None:
        self.max_bytes, self.max_server_packets = max_bytes, max_server_packets
        # (from the client, level, header, packet, packet number offset)
        self.packets: list[tuple[bool, int, object, bytes, int]] = []
        self.levels: set[tuple[int, bool]] = set()                       # (level, from client) waited for
        self.bytes = 0
        self.server_packets = 0
        self.gave_up = False

    def hold(self, outbound: bool, level: int, header: object, packet: bytes, pn_offset: int) -> bool:
        """Hold a packet; False when the byte budget is spent (the caller gives up: `give_up`)."""
        if not outbound:
            if self.server_packets >= self.max_server_packets:
                return True                  # dropped quietly: the server's later packets are not needed
            self.server_packets += 1
        if self.bytes + len(packet) > self.max_bytes:
            return False
        self.packets.append((outbound, level, header, packet, pn_offset))
        self.levels.add((level, outbound))
        self.bytes += len(packet)
        return True

    def take(self) -> list[tuple[bool, int, object, bytes, int]]:
        held, self.packets, self.levels, self.bytes, self.server_packets = self.packets, [], set(), 0, 0
        return held

    def give_up(self) -> int:
        """Drop what is held for good; the number of packets dropped."""
        n = len(self.packets)
        self.take()
        self.gave_up = True
        return n
