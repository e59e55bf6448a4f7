"""QUIC flows: recognition, naming from the Initial packets, and HTTP/3 with logged secrets (RFC 9000, 9001,
9369).

`is_quic` recognises a long-header packet of a known version on any UDP port. `QuicFlow` follows one UDP flow
(`outbound` = from the client): it opens the client's and server's Initial packets with the keys derived from
the public salt, reassembles their CRYPTO frames (a big ClientHello spans several Initials, in any order) and
reads the ClientHello (server name, offered ALPN, client random) and the ServerHello (cipher suite). With a
key log holding the connection's traffic secrets it opens Handshake packets (EncryptedExtensions: the
negotiated ALPN), 0-RTT and 1-RTT packets, reassembles STREAM frames per stream and hands them to HTTP/3
(agent/protocols/http3.py), which reports each request at its stream's FIN.

Secrets are often written after the handshake starts (a live key log grows while capturing): a protected
packet whose keys are missing is held, within `max_pending_bytes`, and tried again on later datagrams and on
`retry()`; past the budget or at `close()` the flow gives up and says `no_secrets`. A packet that does not
open with the keys it should open with is an anomaly (`quic/decrypt_failed`) and none of its bytes are handed
on. Every buffer is bounded, and no input makes `on_datagram` raise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Protocol

from aioquic.buffer import Buffer
from aioquic.quic.crypto import CryptoContext
from aioquic.quic.packet import QuicHeader, QuicPacketType, pull_quic_header

from agent.anomalies import AnomalySink
from agent.protocols.http import HttpRequest
from agent.protocols.http3 import Http3Limits, Http3Requests
from agent.protocols.quic_frames import (
    CryptoFrame,
    FrameError,
    Reassembly,
    ResetFrame,
    StreamFrame,
    walk_frames,
)
from agent.protocols.quic_keys import (
    CryptoError,
    KeyWait,
    Opener,
    initial_contexts,
    secret_context,
)
from agent.protocols.quic_tls import CLIENT_HELLO, ENCRYPTED_EXTENSIONS, SERVER_HELLO, Handshake
from agent.protocols.quic_wire import KNOWN_VERSIONS, VERSION_1, is_quic

__all__ = ["QuicFlow", "QuicLimits", "SecretSource", "is_quic"]

INITIAL, ZERO_RTT, HANDSHAKE, ONE_RTT = range(4)
_LEVELS: Final = {QuicPacketType.INITIAL: INITIAL, QuicPacketType.ZERO_RTT: ZERO_RTT,
                  QuicPacketType.HANDSHAKE: HANDSHAKE, QuicPacketType.ONE_RTT: ONE_RTT}
# (level, sent by the client) -> the NSS key log label of its traffic secret.
_LABELS: Final = {(ZERO_RTT, True): "CLIENT_EARLY_TRAFFIC_SECRET",
                  (HANDSHAKE, True): "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
                  (HANDSHAKE, False): "SERVER_HANDSHAKE_TRAFFIC_SECRET",
                  (ONE_RTT, True): "CLIENT_TRAFFIC_SECRET_0",
                  (ONE_RTT, False): "SERVER_TRAFFIC_SECRET_0"}
# CRYPTO streams worth reading: (level, from the client) -> the message wanted from it.
_WANTED: Final = {(INITIAL, True): CLIENT_HELLO, (INITIAL, False): SERVER_HELLO,
                  (HANDSHAKE, False): ENCRYPTED_EXTENSIONS}


class SecretSource(Protocol):
    """What QUIC needs of agent/keylog.py's KeyLog."""

    def secret(self, client_random: bytes, label: str) -> bytes | None: ...


@dataclass(frozen=True, slots=True)
class QuicLimits:
    max_crypto_bytes: int = 65536          # a CRYPTO stream's window, and the longest handshake message read
    max_stream_window: int = 1 << 20       # bytes held ahead of a stream's delivered offset
    max_held_bytes: int = 4 << 20          # out-of-order bytes held over all streams
    max_streams: int = 512                 # streams reassembled at once
    max_pending_bytes: int = 1 << 20       # protected packets held while their keys are missing (key wait)
    max_packets_per_datagram: int = 16     # coalesced packets (RFC 9000 §12.2) read from one datagram
    max_rekeys: int = 4                    # Initial keys re-derived for a new first Destination CID
    http3: Http3Limits = field(default_factory=Http3Limits)


class QuicFlow:
    """One QUIC connection seen from the path. Public: sni, alpn_offered, alpn, client_random, version,
    handshake (its cipher_suite), decrypted, reason, visibility, requests; on_datagram, retry, close."""

    def __init__(self, *, on_request: Callable[[HttpRequest], None], anomalies: AnomalySink,
                 keylog: SecretSource | None = None, flow_id: str | None = None, max_body_bytes: int = 65536,
                 max_decompressed_bytes: int = 1 << 20, inspect: bool = True,
                 limits: QuicLimits | None = None) -> None:
        self.keylog, self.anomalies, self.flow_id, self.inspect = keylog, anomalies, flow_id, inspect
        self.limits = limits or QuicLimits()
        self.h3 = Http3Requests(on_request, max_body_bytes=max_body_bytes if inspect else 0,
                                max_decompressed_bytes=max_decompressed_bytes, anomalies=anomalies,
                                flow_id=flow_id, limits=self.limits.http3)
        self.version: int | None = None          # QUIC version (the server's, once it answered)
        self.handshake = Handshake(self._anomaly, self.limits.max_crypto_bytes)
        self.decrypted = False                   # application data of the client was opened
        self.failures = 0                        # packets that did not open with logged keys
        self._odcid: bytes | None = None         # the client's first Destination CID: Initial keys
        self._rekeys = 0
        self._initial: dict[int, tuple[CryptoContext, CryptoContext]] = {}
        self._openers: dict[tuple[int, bool, int], Opener] = {}
        self._cids: dict[bool, bytes] = {}       # sent by the client? -> that endpoint's Source CID
        self._streams: dict[tuple[bool, int], Reassembly] = {}
        self._done: set[tuple[bool, int]] = set()
        self._held = 0                           # out-of-order stream bytes held, all streams together
        self._wait = KeyWait(self.limits.max_pending_bytes)
        self._protected_seen = False             # 0-RTT / 1-RTT packets were seen (whether opened or not)
        self._closed = False

    # -- what the flow learned --------------------------------------------------------------------------

    @property
    def client_random(self) -> bytes | None:
        return self.handshake.client_random

    @property
    def sni(self) -> str | None:
        return self.handshake.hello.sni if self.handshake.hello else None

    @property
    def alpn_offered(self) -> tuple[str, ...]:
        return self.handshake.hello.alpn if self.handshake.hello else ()

    @property
    def alpn(self) -> str | None:
        """The negotiated protocol when EncryptedExtensions was read, else the first offered one."""
        return self.handshake.alpn or (self.alpn_offered[0] if self.alpn_offered else None)

    @property
    def requests(self) -> int:
        return self.h3.requests

    @property
    def visibility(self) -> str:
        return "decrypted" if self.decrypted else "encrypted"

    @property
    def reason(self) -> str | None:
        """Why the application data was not opened (None once it was, or while nothing protected was seen)."""
        if self.decrypted:
            return None
        if self.handshake.unsupported:
            return "unsupported_cipher"
        if self.failures:
            return "decrypt_failed"
        return "no_secrets" if self._protected_seen or self._wait.gave_up else None

    # -- input ------------------------------------------------------------------------------------------

    def on_datagram(self, outbound: bool, payload: bytes) -> None:
        """One UDP payload; `outbound` when the client sent it."""
        if self._closed:
            return
        try:
            self._datagram(outbound, bytes(payload))
            if self._wait.packets:
                self._drain()
        except (ValueError, IndexError, KeyError, OverflowError) as exc:
            # A bounds check missed below (aioquic's buffer and crypto errors are ValueErrors): an anomaly.
            self._anomaly("malformed_packet", f"{type(exc).__name__} in a {len(payload)}-byte datagram")

    def retry(self) -> None:
        """Try held packets again (the key log grew)."""
        if self._wait.packets and not self._closed:
            try:
                self._drain()
            except (ValueError, IndexError, KeyError, OverflowError) as exc:
                self._anomaly("malformed_packet", f"{type(exc).__name__} in a held packet")

    @property
    def held_packets(self) -> int:
        return len(self._wait.packets)

    def give_up(self) -> None:
        """The wait for keys is over (tls.key_wait_s): held packets count as no_secrets."""
        self._wait.give_up()

    def close(self) -> None:
        if self._closed:
            return
        self.retry()
        self._closed = True
        # Keys that never came are the flow's `no_secrets`, not an anomaly.
        if self._wait.packets:
            self._wait.give_up()
        self.h3.close()

    # -- packets ----------------------------------------------------------------------------------------

    def _anomaly(self, name: str, detail: str) -> None:
        self.anomalies.add("quic", name, detail, flow_id=self.flow_id)

    def _datagram(self, outbound: bool, payload: bytes) -> None:
        start = 0
        for _ in range(self.limits.max_packets_per_datagram):
            if start >= len(payload) or payload[start] == 0:
                return                              # the end, or zero bytes padding a datagram (§12.2)
            first = payload[start]
            cid_len = None
            if first & 0x80:
                version = int.from_bytes(payload[start + 1: start + 5], "big")
                if version == 0:
                    return                          # version negotiation: nothing protected in it
                if version not in KNOWN_VERSIONS:
                    self._anomaly("unknown_version", f"0x{version:08x}")
                    return
            else:
                receiver = self._cids.get(not outbound)   # a short header names the receiver's CID
                if receiver is None or self.keylog is None or not self.inspect:
                    self._protected_seen = True       # 1-RTT that will not be opened: not even parsed
                    return
                cid_len = len(receiver)
            rest = payload[start:]
            if not first & 0x40:
                # RFC 9287: a peer may grease the fixed bit; aioquic's parser insists on it, the AEAD does not
                # care (the packet itself is opened as it came).
                rest = bytes((first | 0x40,)) + rest[1:]
            buf = Buffer(data=rest)
            try:
                header = pull_quic_header(buf, host_cid_length=cid_len)
            except ValueError:
                self._anomaly("malformed_header", f"{len(rest)} bytes")
                return
            if header.packet_type == QuicPacketType.RETRY:
                if not outbound and header.source_cid:
                    self._new_odcid(header.source_cid)   # RFC 9001 §5.2: Initial keys follow the Retry
                    self.handshake.restart((INITIAL, True))
                return
            if header.packet_type == QuicPacketType.VERSION_NEGOTIATION:
                return
            pn_offset = buf.tell()
            packet = payload[start: start + header.packet_length]
            start += header.packet_length
            if header.version is not None:
                self.version = header.version
                self._cids[outbound] = header.source_cid
            self._packet(outbound, _LEVELS[header.packet_type], header, packet, pn_offset)

    def _packet(self, outbound: bool, level: int, header: QuicHeader, packet: bytes, pn_offset: int) -> None:
        if level == INITIAL:
            opener = self._initial_opener(outbound, header)
        else:
            if level != HANDSHAKE:
                self._protected_seen = True
                if not self.inspect or (not outbound and self.h3.settings is not None):
                    return      # nothing more to learn: only the server's SETTINGS matter of its data
            opener = self._opener(outbound, level)
        if opener is None:
            if level != INITIAL:
                self._hold(outbound, level, header, packet, pn_offset)
            return
        try:
            _pn, plain = opener.open(packet, pn_offset)
        except CryptoError:
            if (level == INITIAL and outbound and self.handshake.hello is None
                    and header.destination_cid != self._odcid and self._rekeys < self.limits.max_rekeys):
                # The capture began after the first Initial, or the client started over: keys of this DCID.
                self._rekeys += 1
                self._new_odcid(header.destination_cid)
                self._packet(outbound, level, header, packet, pn_offset)
                return
            self.failures += level != INITIAL    # a bad Initial says nothing about the logged secrets
            self._anomaly("decrypt_failed", f"{len(packet)}-byte {'client' if outbound else 'server'} packet "
                                            f"at level {level} did not open")
            return
        if outbound and level in (ZERO_RTT, ONE_RTT):
            self.decrypted = True
        self._frames(outbound, level, plain)

    def _new_odcid(self, dcid: bytes) -> None:
        self._odcid = dcid
        self._initial.clear()
        for key in [k for k in self._openers if k[0] == INITIAL]:
            del self._openers[key]

    def _initial_opener(self, outbound: bool, header: QuicHeader) -> Opener | None:
        if self._odcid is None:
            if not outbound:
                return None                         # a server's Initial before any client's: no keys
            self._odcid = header.destination_cid
        version = header.version or VERSION_1
        key = (INITIAL, outbound, version)
        opener = self._openers.get(key)
        if opener is None:
            contexts = self._initial.get(version)
            if contexts is None:
                contexts = self._initial[version] = initial_contexts(self._odcid, version)
            opener = self._openers[key] = Opener(contexts[0] if outbound else contexts[1])
        return opener

    def _opener(self, outbound: bool, level: int) -> Opener | None:
        key = (level, outbound, 0)
        opener = self._openers.get(key)
        if opener is not None:
            return opener
        label = _LABELS.get((level, outbound))
        suite = self.handshake.cipher_suite
        if (label is None or self.keylog is None or self.client_random is None or suite is None
                or self.handshake.unsupported):
            return None
        secret = self.keylog.secret(self.client_random, label)
        if secret is None:
            return None
        ctx = secret_context(suite, secret, self.version or VERSION_1)
        if ctx is None:
            self._anomaly("bad_secret", f"{label} of {len(secret)} bytes does not fit the cipher suite")
            return None
        opener = self._openers[key] = Opener(ctx)
        return opener

    # -- key wait ---------------------------------------------------------------------------------------

    def _hold(self, outbound: bool, level: int, header: QuicHeader, packet: bytes, pn_offset: int) -> None:
        if self.keylog is None or self.handshake.unsupported or self._wait.gave_up or self._closed:
            return
        if not self._wait.hold(outbound, level, header, packet, pn_offset):
            held = self._wait.bytes
            n = self._wait.give_up()
            self._anomaly("key_wait_exceeded", f"{n} packets ({held} bytes) held without keys were dropped")

    def _drain(self) -> None:
        if not any(self._opener(outbound, level) is not None for level, outbound in self._wait.levels):
            return
        for outbound, level, header, packet, pn_offset in self._wait.take():
            assert isinstance(header, QuicHeader)
            self._packet(outbound, level, header, packet, pn_offset)   # held again if still without keys

    # -- frames -----------------------------------------------------------------------------------------

    def _frames(self, outbound: bool, level: int, plain: bytes) -> None:
        try:
            for frame in walk_frames(plain):
                if isinstance(frame, CryptoFrame):
                    self._crypto_frame(outbound, level, frame)
                elif isinstance(frame, StreamFrame):
                    if level in (ZERO_RTT, ONE_RTT):
                        self._stream_frame(outbound, frame)
                elif isinstance(frame, ResetFrame) and outbound:
                    self._streams.pop((outbound, frame.stream_id), None)
                    self.h3.reset(frame.stream_id)
        except FrameError as exc:
            self._anomaly("malformed_frame", str(exc))

    def _crypto_frame(self, outbound: bool, level: int, frame: CryptoFrame) -> None:
        want = _WANTED.get((level, outbound))
        if want is not None:
            self.handshake.crypto((level, outbound), want, frame.offset, frame.data)

    def _stream_frame(self, outbound: bool, frame: StreamFrame) -> None:
        sid = frame.stream_id
        # Client: its bidirectional (requests) and unidirectional streams; server: its unidirectional ones
        # (the control stream's SETTINGS). Responses are not read.
        if (sid & 0x01) != (0 if outbound else 1) or (not outbound and not sid & 0x02):
            return
        key = (outbound, sid)
        if key in self._done:
            return
        stream = self._streams.get(key)
        if stream is None:
            if len(self._streams) >= self.limits.max_streams:
                self._anomaly("too_many_streams", f"over {self.limits.max_streams} streams at once")
                self._finish_stream(key)
                return
            stream = self._streams[key] = Reassembly(self.limits.max_stream_window)
        held = stream.held
        data = stream.add(frame.offset, frame.data, frame.fin)
        self._held += stream.held - held
        if stream.gap or self._held > self.limits.max_held_bytes:
            self._anomaly("stream_window_exceeded", f"stream {sid}: out-of-order data past {stream.window} "
                                                    f"bytes ({self.limits.max_held_bytes} for all streams)")
            self._finish_stream(key)
            self.h3.reset(sid)
            return
        finished = stream.finished
        if data or finished:
            if outbound:
                self.h3.client_stream(sid, data, finished)
            else:
                self.h3.server_stream(sid, data, finished)
        if finished:
            self._finish_stream(key)

    def _finish_stream(self, key: tuple[bool, int]) -> None:
        stream = self._streams.pop(key, None)
        self._held -= stream.held if stream is not None else 0
        self._done.add(key)
        if len(self._done) > self.limits.http3.max_finished:
            self._done.remove(min(self._done))
