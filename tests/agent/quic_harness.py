"""A real aioquic HTTP/3 client and server talking in memory, every datagram recorded with its direction.

The client logs its TLS secrets (`QuicConfiguration.secrets_log_file`, NSS key log format) as curl or a
browser would with SSLKEYLOGFILE; `KeyLog` is the dict-backed stand-in for agent/keylog.py that the QUIC
tests use. Nothing here is mocked: the packets are what aioquic puts on the wire.
"""

from __future__ import annotations

import io
import ssl
import struct
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from aioquic.buffer import Buffer
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.packet import encode_quic_retry, pull_quic_header
from aioquic.tls import CipherSuite
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from fixtures import certs

CLIENT, SERVER = ("10.0.0.1", 50000), ("192.0.2.7", 443)
RETRY_CID = bytes.fromhex("5e7e5e7e5e7e5e7e")
Headers = list[tuple[bytes, bytes]]


class KeyLog:
    """NSS key log lines -> `.secret(client_random, label)`, as agent/keylog.py's KeyLog answers."""

    def __init__(self, text: str = "") -> None:
        self.secrets: dict[tuple[bytes, str], bytes] = {}
        for line in text.splitlines():
            parts = line.split()
            if len(parts) == 3 and not line.startswith("#"):
                self.secrets[(bytes.fromhex(parts[1]), parts[0])] = bytes.fromhex(parts[2])

    def secret(self, client_random: bytes, label: str) -> bytes | None:
        return self.secrets.get((client_random, label))


def pcapng_secrets(path: Path) -> str:
    """The TLS key log text of a pcapng file's Decryption Secrets Blocks (type 0x0A, secrets type 'TLSK')."""
    data = path.read_bytes()
    order = "<" if data[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
    out, off = [], 0
    while off + 12 <= len(data):
        btype, blen = struct.unpack_from(order + "II", data, off)
        if blen < 12:
            break
        if btype == 0x0A:
            stype, slen = struct.unpack_from(order + "II", data, off + 8)
            if stype == 0x544C534B:
                out.append(data[off + 16: off + 16 + slen].decode())
        off += blen
    return "".join(out)


@cache
def _identity() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert, key = certs.certificate(["api.example.com"])
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return cert, key


@dataclass
class H3Session:
    """One HTTP/3 connection: `request` sends, `pump` moves datagrams until both sides are quiet."""

    version: int = 0x00000001
    cipher_suites: list[CipherSuite] | None = None
    server_name: str = "api.example.com"
    retry: bool = False                          # the server answers the first Initial with a Retry
    datagrams: list[tuple[bool, bytes]] = field(default_factory=list)    # (from the client, payload)
    received: dict[int, tuple[Headers, bytes]] = field(default_factory=dict)  # what the server got

    def __post_init__(self) -> None:
        self._log = io.StringIO()
        cert, key = _identity()
        self.client_config = QuicConfiguration(
            is_client=True, alpn_protocols=H3_ALPN, secrets_log_file=self._log, server_name=self.server_name,
            verify_mode=ssl.CERT_NONE, supported_versions=[self.version], cipher_suites=self.cipher_suites)
        self.server_config = QuicConfiguration(
            is_client=False, alpn_protocols=H3_ALPN, supported_versions=[self.version],
            cipher_suites=self.cipher_suites)
        self.server_config.certificate, self.server_config.private_key = cert, key
        self.now = 1000.0
        self.client = QuicConnection(configuration=self.client_config)
        self.client.connect(SERVER, now=self.now)
        self.h3_client = H3Connection(self.client)
        self.server: QuicConnection | None = None
        self._odcid: bytes | None = None
        self.h3_server: H3Connection | None = None
        self.pump()

    @property
    def keylog_text(self) -> str:
        return self._log.getvalue()

    def request(self, headers: Headers, body: bytes = b"", trailers: Headers | None = None) -> int:
        stream_id = self.client.get_next_available_stream_id()
        self.h3_client.send_headers(stream_id, headers, end_stream=not body and not trailers)
        if body:
            self.h3_client.send_data(stream_id, body, end_stream=not trailers)
        if trailers:
            self.h3_client.send_headers(stream_id, trailers, end_stream=True)
        return stream_id

    def pump(self, rounds: int = 5000) -> None:
        for _ in range(rounds):
            moved = self._send(self.client, from_client=True)
            if self.server is not None:
                moved |= self._send(self.server, from_client=False)
            if not moved:
                timers = [t for t in (self.client.get_timer(), self.server and self.server.get_timer()) if t]
                if not timers or min(timers) > self.now + 1.0:
                    return
                self.now = max(self.now, min(timers))
                for conn in (self.client, self.server):
                    if conn is not None and (conn.get_timer() or 1e18) <= self.now:
                        conn.handle_timer(now=self.now)
            self.now += 0.001

    def _send(self, conn: QuicConnection, from_client: bool) -> bool:
        moved = False
        for data, _addr in conn.datagrams_to_send(now=self.now):
            moved = True
            self.datagrams.append((from_client, data))
            if from_client:
                if self.server is None:
                    header = pull_quic_header(Buffer(data=data), host_cid_length=8)
                    if self.retry and self._odcid is None:
                        # RFC 9000 §8.1.2: a Retry with a new connection ID (as aioquic's asyncio server).
                        self._odcid = header.destination_cid
                        retry = encode_quic_retry(self.version, source_cid=RETRY_CID,
                                                  destination_cid=header.source_cid,
                                                  original_destination_cid=header.destination_cid,
                                                  retry_token=b"token")
                        self.datagrams.append((False, retry))
                        self.client.receive_datagram(retry, SERVER, now=self.now)
                        continue
                    self.server = QuicConnection(
                        configuration=self.server_config,
                        original_destination_connection_id=self._odcid or header.destination_cid,
                        retry_source_connection_id=RETRY_CID if self.retry else None)
                    self.h3_server = H3Connection(self.server)
                self.server.receive_datagram(data, CLIENT, now=self.now)
                self._events(self.server, self.h3_server)
            else:
                self.client.receive_datagram(data, SERVER, now=self.now)
                self._events(self.client, self.h3_client)
        return moved

    def _events(self, conn: QuicConnection, h3: H3Connection | None) -> None:
        assert h3 is not None
        while (event := conn.next_event()) is not None:
            for h3_event in h3.handle_event(event):
                if conn is self.server:
                    self._record(h3_event)

    def _record(self, event: H3Event) -> None:
        if isinstance(event, HeadersReceived):
            headers, body = self.received.get(event.stream_id, ([], b""))
            self.received[event.stream_id] = (headers + list(event.headers), body)
        elif isinstance(event, DataReceived):
            headers, body = self.received.get(event.stream_id, ([], b""))
            self.received[event.stream_id] = (headers, body + event.data)
