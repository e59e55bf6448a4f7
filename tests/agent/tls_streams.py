"""Real TLS byte streams made in memory, no network: a client and a server that log their secrets.

Python's `ssl` (the system OpenSSL, with `keylog_filename`) or pyOpenSSL (for `set_tls13_ciphersuites`:
Python's ssl cannot choose among the TLS 1.3 suites) talk through memory BIOs; every byte one side writes is
recorded as that direction's TCP stream, in order, with the plaintext each side sent. A KeyUpdate is asked
of Python's ssl through ctypes on the system libssl (`SSL_key_update`; Python has no API for it). 0-RTT
early data (neither Python library can send it) comes from `openssl s_client`/`s_server` over Unix
sockets, through a relay that records the bytes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from fixtures import certs


def self_signed(folder: Path, *, ecdsa: bool = False) -> tuple[Path, Path]:
    return certs.self_signed(folder, ["export.example"], ecdsa=ecdsa)


@dataclass
class Stream:
    """One connection: each direction's wire bytes as written (chunks), the plaintext, the key log text."""
    client_chunks: list[bytes] = field(default_factory=list)
    server_chunks: list[bytes] = field(default_factory=list)
    order: list[tuple[bool, bytes]] = field(default_factory=list)   # (from_client, chunk) in wire order
    client_sent: bytes = b""
    server_sent: bytes = b""
    keylog: str = ""

    @property
    def client_bytes(self) -> bytes:
        return b"".join(self.client_chunks)

    @property
    def server_bytes(self) -> bytes:
        return b"".join(self.server_chunks)


class _Side:
    """Python ssl or pyOpenSSL behind one interface of memory-BIO calls."""

    def __init__(self, obj: Any, incoming: ssl.MemoryBIO | None, outgoing: ssl.MemoryBIO | None) -> None:
        self.obj, self.incoming, self.outgoing = obj, incoming, outgoing

    def take(self) -> bytes:
        if self.outgoing is not None:
            return self.outgoing.read()
        from OpenSSL import SSL
        out = b""
        while True:
            try:
                out += self.obj.bio_read(65536)
            except SSL.WantReadError:
                return out

    def give(self, data: bytes) -> None:
        if self.incoming is not None:
            self.incoming.write(data)
        else:
            self.obj.bio_write(data)

    def attempt(self, fn: Any, *args: Any) -> tuple[bool, Any]:
        """(True, result), or (False, None) when the library wants more bytes first."""
        from OpenSSL import SSL
        try:
            return True, fn(*args)
        except (ssl.SSLWantReadError, SSL.WantReadError):
            return False, None

    def write(self, data: bytes) -> None:
        self.obj.write(data) if isinstance(self.obj, ssl.SSLObject) else self.obj.sendall(data)

    def read(self) -> bytes:
        reader = self.obj.read if isinstance(self.obj, ssl.SSLObject) else self.obj.recv
        ok, data = self.attempt(reader, 65536)
        return data if ok else b""


class Pair:
    """A client and a server joined through memory; `pump()` moves bytes until both are quiet."""

    def __init__(self, client: _Side, server: _Side, stream: Stream, keylog: Path | list[bytes]) -> None:
        self.c, self.s, self.stream, self._keylog = client, server, stream, keylog

    def pump(self) -> None:
        while True:
            moved = False
            for side, other, from_client in ((self.c, self.s, True), (self.s, self.c, False)):
                data = side.take()
                if data:
                    moved = True
                    (self.stream.client_chunks if from_client else self.stream.server_chunks).append(data)
                    self.stream.order.append((from_client, data))
                    other.give(data)
            if not moved:
                return

    def handshake(self) -> None:
        for _ in range(20):
            client_done, _ = self.c.attempt(self.c.obj.do_handshake)
            server_done, _ = self.s.attempt(self.s.obj.do_handshake)
            self.pump()
            if client_done and server_done:
                return
        raise AssertionError("handshake did not finish")

    def send(self, data: bytes, from_client: bool) -> None:
        """`data` from one side, read whole by the other (its wire bytes recorded on the way)."""
        side, other = (self.c, self.s) if from_client else (self.s, self.c)
        side.write(data)
        self.pump()
        got = b""
        for _ in range(len(data) + 10):
            got += other.read()
            self.pump()
            if len(got) >= len(data):
                break
        assert got == data
        if from_client:
            self.stream.client_sent += data
        else:
            self.stream.server_sent += data

    def key_update(self, from_client: bool, request_peer: bool) -> None:
        """Python ssl only: SSL_key_update on the underlying SSL*; the next write carries the KeyUpdate."""
        side = self.c if from_client else self.s
        _key_update(side.obj, request_peer)

    def finish(self) -> Stream:
        self.pump()
        if isinstance(self._keylog, Path):
            self.stream.keylog = self._keylog.read_text()
        else:
            self.stream.keylog = "".join(line.decode() + "\n" for line in self._keylog)
        return self.stream


def python_pair(folder: Path, *, tls12_cipher: str | None = None, alpn: tuple[str, ...] = ("h2", "http/1.1"),
                ecdsa: bool = False, name: str = "keys.log", server_curve: str | None = None) -> Pair:
    """Python's ssl on both sides; TLS 1.2 with `tls12_cipher` (an OpenSSL name), else TLS 1.3.
    `server_curve` (e.g. secp384r1, for which the client sends no key share) forces a HelloRetryRequest."""
    cert, key = self_signed(folder, ecdsa=ecdsa)
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(cert, key)
    if server_curve:
        sctx.set_ecdh_curve(server_curve)
    cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    cctx.check_hostname = False
    cctx.verify_mode = ssl.CERT_NONE
    keylog = folder / name
    cctx.keylog_filename = str(keylog)
    if tls12_cipher:
        cctx.maximum_version = ssl.TLSVersion.TLSv1_2
        cctx.set_ciphers(tls12_cipher)
        sctx.set_ciphers(tls12_cipher)      # Python's server default leaves out RSA key exchange and SHA-1
    if alpn:
        cctx.set_alpn_protocols(list(alpn))
        sctx.set_alpn_protocols(list(alpn[:1]))
    cin, cout, sin, sout = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    c = cctx.wrap_bio(cin, cout, server_hostname="export.example")
    s = sctx.wrap_bio(sin, sout, server_side=True)
    return Pair(_Side(c, cin, cout), _Side(s, sin, sout), Stream(), keylog)


def openssl_pair(folder: Path, tls13_suite: str, *, alpn: bytes = b"h2") -> Pair:
    """pyOpenSSL on both sides, TLS 1.3 with the one suite named (e.g. TLS_CHACHA20_POLY1305_SHA256)."""
    from OpenSSL import SSL
    cert, key = self_signed(folder)
    lines: list[bytes] = []
    sctx = SSL.Context(SSL.TLS_METHOD)
    sctx.use_certificate(x509.load_pem_x509_certificate(cert.read_bytes()))
    sctx.use_privatekey(serialization.load_pem_private_key(key.read_bytes(), None))  # type: ignore[arg-type]
    sctx.set_alpn_select_callback(lambda _conn, offered: alpn if alpn in offered else offered[0])
    cctx = SSL.Context(SSL.TLS_METHOD)
    cctx.set_min_proto_version(SSL.TLS1_3_VERSION)
    cctx.set_tls13_ciphersuites(tls13_suite.encode())
    sctx.set_tls13_ciphersuites(tls13_suite.encode())      # CCM suites are off by default on servers
    cctx.set_alpn_protos([alpn, b"http/1.1"])
    cctx.set_keylog_callback(lambda _conn, line: lines.append(line))
    c = SSL.Connection(cctx, None)
    c.set_connect_state()
    c.set_tlsext_host_name(b"export.example")
    s = SSL.Connection(sctx, None)
    s.set_accept_state()
    return Pair(_Side(c, None, None), _Side(s, None, None), Stream(), lines)


def _key_update(obj: ssl.SSLObject, request_peer: bool) -> None:
    lib = ctypes.CDLL(ctypes.util.find_library("ssl") or "libssl.so.3")
    # PySSLSocket: PyObject_HEAD (16 bytes), PyObject *Socket, SSL *ssl (CPython Modules/_ssl.c).
    ptr = ctypes.c_void_p.from_address(id(obj._sslobj) + 24).value   # type: ignore[attr-defined]
    lib.SSL_version.argtypes = [ctypes.c_void_p]
    lib.SSL_key_update.argtypes = [ctypes.c_void_p, ctypes.c_int]
    if lib.SSL_version(ptr) != 0x0304:
        raise RuntimeError("not the SSL* of a TLS 1.3 connection")
    if lib.SSL_key_update(ptr, 1 if request_peer else 0) != 1:
        raise RuntimeError("SSL_key_update failed")


def segments(data: bytes, cuts: list[int]) -> list[bytes]:
    """`data` cut at the given offsets (any order, out-of-range ones ignored)."""
    points = sorted({c for c in cuts if 0 < c < len(data)})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    """Poll for readiness (a socket or file appearing), never a fixed sleep."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def _relay(listener: socket.socket, upstream: Path, connections: list[list[tuple[bool, bytes]]], n: int
           ) -> None:
    """Accept `n` connections and join each to `upstream`, recording every chunk with its direction."""
    for _ in range(n):
        a, _addr = listener.accept()
        b = socket.socket(socket.AF_UNIX)
        b.connect(str(upstream))
        order: list[tuple[bool, bytes]] = []
        connections.append(order)

        def pipe(src: socket.socket, dst: socket.socket, from_client: bool, order: list = order) -> None:
            try:
                while data := src.recv(65536):
                    order.append((from_client, data))
                    dst.sendall(data)
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

        threads = [threading.Thread(target=pipe, args=(a, b, True)),
                   threading.Thread(target=pipe, args=(b, a, False))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        a.close()
        b.close()


def zero_rtt_stream(folder: Path, early: bytes, later: bytes) -> Stream:
    """A resumed TLS 1.3 connection carrying 0-RTT `early` data, then `later`, between `openssl s_client`
    and `openssl s_server -early_data` over Unix sockets through a recording relay (no network).

    A first connection fetches the session ticket; the second (recorded) resumes with it and sends `early`
    before the handshake completes. The client's key log includes CLIENT_EARLY_TRAFFIC_SECRET."""
    cert, key = self_signed(folder)
    server_sock, relay_sock, session = folder / "s.sock", folder / "r.sock", folder / "session.pem"
    (folder / "early.txt").write_bytes(early)
    server = subprocess.Popen(["openssl", "s_server", "-unix", str(server_sock), "-cert", str(cert), "-key",
                               str(key), "-tls1_3", "-early_data", "-naccept", "2"],
                              stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    connections: list[list[tuple[bool, bytes]]] = []
    try:
        _wait_for(server_sock.exists, "s_server")
        with socket.socket(socket.AF_UNIX) as listener:
            listener.bind(str(relay_sock))
            listener.listen(2)
            relay = threading.Thread(target=_relay, args=(listener, server_sock, connections, 2), daemon=True)
            relay.start()
            first = subprocess.Popen(["openssl", "s_client", "-unix", str(relay_sock), "-tls1_3", "-sess_out",
                                      str(session)], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
            assert first.stdin is not None
            first.stdin.write(b"first connection\n")
            first.stdin.flush()
            _wait_for(lambda: session.exists() and session.stat().st_size > 0, "the session ticket")
            first.stdin.close()     # end of input: a clean close_notify, so the session stays resumable
            first.wait(30)
            subprocess.run(["openssl", "s_client", "-unix", str(relay_sock), "-tls1_3",
                            "-sess_in", str(session), "-early_data", str(folder / "early.txt"),
                            "-keylogfile", str(folder / "k2.log")],
                           input=later, capture_output=True, timeout=30, check=True)
            relay.join(30)
    finally:
        server.kill()
        server.wait()
    order = connections[1]
    return Stream(client_chunks=[c for f, c in order if f], server_chunks=[c for f, c in order if not f],
                  order=order, client_sent=early + later, keylog=(folder / "k2.log").read_text())
