"""The live TLS tests' clients: real HTTPS, HTTP/2, HTTP/3, h2c and gRPC clients that log their secrets,
posting the live plan's planted exports (tests/live/plan.py) to tests/live/https_server.py.

    ip netns exec ewc-<id> .venv/bin/python tests/live/tls_clients.py --set mixed|demo --keylog FILE
        --cafile CERT.pem --truth FILE

Every client appends its TLS/QUIC secrets to the one NSS key log --keylog (curl and `openssl s_client`
through SSLKEYLOGFILE / -keylogfile, Python through SSLContext.keylog_filename, aioquic through
QuicConfiguration.secrets_log_file). Sessions run one after another (tls_sessions.py says which client,
TLS version, cipher and protocol each one uses), so the capture holds one connection per session.

The truth (JSON) is plan.truth over every message sent — counts only, never a raw value — plus `flows`:
one entry per connection with its client, server name, destination, transport, TLS version, cipher, ALPN,
app, request count and whether the key log should open it. A failure prints one line naming the session
(never a body) and exits 1 with no truth written.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import selectors
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.dont_write_bytecode = True
HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import plan  # noqa: E402  (sibling modules: this file runs as a script)
import tls_sessions as ts  # noqa: E402

USER_AGENT = "egresswatch-live-tls/1"
TIMEOUT_S = 10.0


class ClientError(RuntimeError):
    """A session that did not get its answers; the message names the session, never a body."""


# ---------------------------------------------------------------------------------------------- helpers

def _context(session: ts.Session, cafile: Path, keylog: Path, alpn: list[str]) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(cafile))
    ctx.keylog_filename = str(keylog)
    if session.tls == "1.2":
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers(session.cipher)
    else:
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.set_alpn_protocols(alpn)
    return ctx


def _headers(session: ts.Session, msg: plan.Message) -> dict[str, str]:
    return {"user-agent": USER_AGENT, "accept": "*/*", "content-type": ts.content_type(session)}


# ---------------------------------------------------------------------------------------------- clients

def run_httpx(session: ts.Session, cafile: Path, keylog: Path) -> None:
    """httpx with http2=True over TLS, or h2c by prior knowledge (http1=False) on port 80."""
    import httpx
    dest = plan.BY_NAME[session.server_name]
    if session.port == 443:
        client = httpx.Client(http2=True, verify=_context(session, cafile, keylog, ["h2", "http/1.1"]),
                              timeout=TIMEOUT_S)
        base, ext = f"https://{dest.ip}", {"sni_hostname": session.server_name}
    else:
        client = httpx.Client(http1=False, http2=True, timeout=TIMEOUT_S)
        base, ext = f"http://{dest.ip}", {}
    with client:
        for msg in session.messages:
            r = client.post(base + msg.path, content=msg.body, extensions=ext,
                            headers={"host": session.server_name, **_headers(session, msg)})
            if r.status_code != 200 or r.http_version != "HTTP/2":
                raise ClientError(f"{session.name}: {r.http_version} {r.status_code}")


def run_curl(session: ts.Session, cafile: Path, keylog: Path) -> None:
    """Debian's curl: every message of the session on one connection (`--next`)."""
    dest = plan.BY_NAME[session.server_name]
    argv = ["curl", "-sS", "--fail", "--max-time", str(TIMEOUT_S)]
    if session.port == 443:
        argv += ["--cacert", str(cafile), "--resolve", f"{session.server_name}:443:{dest.ip}"]
        if session.tls == "1.2":
            argv += ["--tlsv1.2", "--tls-max", "1.2", "--ciphers", session.cipher]
        else:
            argv += ["--tlsv1.3", "--tls13-ciphers", session.cipher]
        base = f"https://{session.server_name}"
    else:
        base = f"http://{dest.ip}"
    proto = {"http/1.1": ["--http1.1"], "h2": ["--http2"], "h2c": ["--http2-prior-knowledge"],
             "h2c-upgrade": ["--http2"]}[session.alpn or session.mode]
    want_version = "1.1" if (session.alpn or session.mode) == "http/1.1" else "2"
    bodies = []
    expect = ["200", want_version] * len(session.messages)
    if session.mode == "h2c-upgrade":
        # hypercorn upgrades only a request without a body (its h11.py says why), so a GET upgrades the
        # connection and the POSTs follow on it as HTTP/2 streams.
        argv += [*proto, "-o", "/dev/null", "-w", "%{http_code} %{http_version}\\n", "-H",
                 f"Host: {session.server_name}", "-H", f"User-Agent: {USER_AGENT}", base + "/", "--next"]
        expect += ["200", "2"]
    for n, msg in enumerate(session.messages):
        if n:
            argv.append("--next")
        body_file = Path(os.environ.get("TMPDIR", "/tmp")) / f"ew-body-{os.getpid()}-{n}"
        body_file.write_bytes(msg.body)
        bodies.append(body_file)
        argv += [*proto, "-o", "/dev/null", "-w", "%{http_code} %{http_version}\\n", "-X", "POST",
                 "--data-binary", f"@{body_file}", "-H", f"Content-Type: {ts.content_type(session)}",
                 "-H", f"User-Agent: {USER_AGENT}"]
        if session.port != 443:
            argv += ["-H", f"Host: {session.server_name}"]
        argv.append(base + msg.path)
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_S * 3,
                           env={**os.environ, "SSLKEYLOGFILE": str(keylog)}, check=False)
    finally:
        for f in bodies:
            f.unlink(missing_ok=True)
    codes = r.stdout.split()
    if r.returncode != 0 or sorted(codes) != sorted(expect):
        raise ClientError(f"{session.name}: curl exit {r.returncode}: {r.stderr.strip()[:200]} {codes}")


def run_pyssl(session: ts.Session, cafile: Path, keylog: Path) -> None:
    """Python's ssl + http.client (HTTP/1.1 keep-alive), SNI set to the server name."""
    import http.client
    dest = plan.BY_NAME[session.server_name]
    ctx = _context(session, cafile, keylog, ["http/1.1"])
    conn = http.client.HTTPConnection(dest.ip, 443, timeout=TIMEOUT_S)
    conn.sock = ctx.wrap_socket(socket.create_connection((dest.ip, 443), timeout=TIMEOUT_S),
                                server_hostname=session.server_name)
    try:
        for msg in session.messages:
            conn.request("POST", msg.path, body=msg.body,
                         headers={"Host": session.server_name, **_headers(session, msg)})
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                raise ClientError(f"{session.name}: HTTP {resp.status}")
    finally:
        conn.close()


class SClient:
    """`openssl s_client` driven through its stdin, its stdout and stderr read until a marker shows."""

    def __init__(self, session: ts.Session, argv: list[str]) -> None:
        self.session = session
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        assert self.proc.stdin and self.proc.stdout and self.proc.stderr
        self.stdin = self.proc.stdin
        self.seen = {"out": b"", "err": b""}
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.proc.stdout, selectors.EVENT_READ, "out")
        self.sel.register(self.proc.stderr, selectors.EVENT_READ, "err")

    def wait(self, stream: str, marker: bytes, count: int = 1) -> None:
        deadline = time.monotonic() + TIMEOUT_S
        while self.seen[stream].count(marker) < count:
            ready = self.sel.select(timeout=0.2)
            for key, _ in ready:
                chunk = os.read(key.fileobj.fileno(), 65536)   # type: ignore[union-attr]
                if not chunk:
                    self.sel.unregister(key.fileobj)
                self.seen[key.data] += chunk
            if time.monotonic() > deadline or (not ready and self.proc.poll() is not None):
                raise ClientError(f"{self.session.name}: s_client gave no {marker!r} (#{count})")

    def send(self, data: bytes) -> None:
        self.stdin.write(data)      # one write: s_client reads it as one chunk
        self.stdin.flush()

    def finish(self) -> None:
        try:
            self.stdin.close()      # EOF: s_client sends close_notify and exits
            self.proc.wait(timeout=TIMEOUT_S)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.sel.close()


def _s_client_argv(session: ts.Session, cafile: Path, keylog: Path) -> list[str]:
    dest = plan.BY_NAME[session.server_name]
    argv = ["openssl", "s_client", "-connect", f"{dest.ip}:{session.port}", "-servername",
            session.server_name, "-CAfile", str(cafile), "-verify_return_error", "-tls1_3", "-keylogfile",
            str(keylog)]
    return argv + (["-ciphersuites", session.cipher] if session.cipher else [])


def _http_post(session: ts.Session, msg: plan.Message) -> bytes:
    head = (f"POST {msg.path} HTTP/1.1\r\nHost: {session.server_name}\r\nUser-Agent: {USER_AGENT}\r\n"
            f"Content-Type: {ts.content_type(session)}\r\nContent-Length: {len(msg.body)}\r\n\r\n")
    return head.encode() + msg.body


def run_s_client(session: ts.Session, cafile: Path, keylog: Path) -> None:
    """`openssl s_client` speaking HTTP/1.1 by hand, with a TLS 1.3 KeyUpdate ('K' command, update
    requested, so the server updates too) between consecutive requests on the one connection."""
    client = SClient(session, [*_s_client_argv(session, cafile, keylog), "-alpn", "http/1.1"])
    try:
        for n, msg in enumerate(session.messages):
            if n:
                client.send(b"K\n")      # a line of its own: s_client's KeyUpdate command
                client.wait("err", b"KEYUPDATE", n)
            client.send(_http_post(session, msg))
            client.wait("out", RESPONSE_MARKER, n + 1)
    finally:
        client.finish()


def run_zero_rtt(session: ts.Session, cafile: Path, keylog: Path) -> None:
    """TLS 1.3 0-RTT against `openssl s_server -early_data` (tls_traffic.py starts it on port 8443): a
    first connection (session "ticket") only fetches a session ticket; the next (session "0rtt") resumes
    with it, sends a GET as early data, and once the handshake is done POSTs its messages in 1-RTT."""
    ticket = keylog.parent / "s_client.session"
    if session.mode == "ticket":
        ticket.unlink(missing_ok=True)
        client = SClient(session, [*_s_client_argv(session, cafile, keylog), "-sess_out", str(ticket)])
        try:   # s_client's own messages on stdout are buffered until it exits; the ticket file is not
            deadline = time.monotonic() + TIMEOUT_S
            while not (ticket.exists() and ticket.stat().st_size):
                if time.monotonic() > deadline or client.proc.poll() is not None:
                    raise ClientError(f"{session.name}: no session ticket")
                time.sleep(0.02)
        finally:
            client.finish()
        return
    early = keylog.parent / "early-data.txt"
    early.write_bytes(f"GET /early HTTP/1.1\r\nHost: {session.server_name}\r\n\r\n".encode())
    client = SClient(session, [*_s_client_argv(session, cafile, keylog), "-sess_in", str(ticket),
                               "-early_data", str(early)])
    try:   # stdin is read once the handshake is done: the POSTs go in 1-RTT, after the early data
        for msg in session.messages:
            client.send(_http_post(session, msg))
    finally:
        client.finish()
    if client.proc.returncode != 0:
        raise ClientError(f"{session.name}: s_client exit {client.proc.returncode}")
    assert client.proc.stdout is not None
    if b"Early data was accepted" not in client.proc.stdout.read():   # printed at exit (buffered)
        raise ClientError(f"{session.name}: the server did not accept the early data")


RESPONSE_MARKER = b'{"code":0,"msg":"ok"}'


def run_aioquic(session: ts.Session, cafile: Path, keylog: Path) -> None:
    """aioquic's HTTP/3 client: the session's requests on one QUIC connection, a QUIC key update
    (request_key_update) between consecutive requests."""
    asyncio.run(_h3(session, cafile, keylog))


async def _h3(session: ts.Session, cafile: Path, keylog: Path) -> None:
    from aioquic.asyncio import connect
    from aioquic.asyncio.protocol import QuicConnectionProtocol
    from aioquic.h3.connection import H3_ALPN, H3Connection
    from aioquic.h3.events import DataReceived, HeadersReceived
    from aioquic.quic.configuration import QuicConfiguration
    from aioquic.quic.events import QuicEvent

    class H3Client(QuicConnectionProtocol):
        def __init__(self, *args: Any, **kw: Any) -> None:
            super().__init__(*args, **kw)
            self.h3 = H3Connection(self._quic)
            self.waiting: dict[int, asyncio.Future[int]] = {}
            self.status: dict[int, int] = {}

        def quic_event_received(self, event: QuicEvent) -> None:
            for ev in self.h3.handle_event(event):
                if isinstance(ev, HeadersReceived):
                    self.status[ev.stream_id] = int(dict(ev.headers).get(b":status", b"0"))
                if isinstance(ev, HeadersReceived | DataReceived) and ev.stream_ended:
                    fut = self.waiting.pop(ev.stream_id, None)
                    if fut and not fut.done():
                        fut.set_result(self.status.get(ev.stream_id, 0))

        async def post(self, msg: plan.Message) -> int:
            sid = self._quic.get_next_available_stream_id()
            self.h3.send_headers(sid, [(b":method", b"POST"), (b":scheme", b"https"),
                                       (b":authority", session.server_name.encode()),
                                       (b":path", msg.path.encode()), (b"user-agent", USER_AGENT.encode()),
                                       (b"content-type", ts.content_type(session).encode())])
            self.h3.send_data(sid, msg.body, end_stream=True)
            fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            self.waiting[sid] = fut
            self.transmit()
            return await asyncio.wait_for(fut, TIMEOUT_S)

    dest = plan.BY_NAME[session.server_name]
    with keylog.open("a") as fh:
        cfg = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, server_name=session.server_name,
                                secrets_log_file=fh)
        cfg.load_verify_locations(str(cafile))
        async with connect(dest.ip, 443, configuration=cfg, create_protocol=H3Client) as client:
            assert isinstance(client, H3Client)
            for n, msg in enumerate(session.messages):
                if n:
                    client._quic.request_key_update()
                status = await client.post(msg)
                if status != 200:
                    raise ClientError(f"{session.name}: HTTP/3 {status}")
            client.close()
            await client.wait_closed()


def run_truncated(session: ts.Session, cafile: Path, keylog: Path) -> None:
    """A TLS handshake cut short: the first half of a real ClientHello, then FIN."""
    dest = plan.BY_NAME[session.server_name]
    ctx = _context(session, cafile, keylog, ["h2", "http/1.1"])
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=session.server_name)
    with contextlib.suppress(ssl.SSLWantReadError):   # it waits for the ServerHello, which never comes
        obj.do_handshake()
    hello = outgoing.read()
    with socket.create_connection((dest.ip, 443), timeout=TIMEOUT_S) as s:
        s.sendall(hello[: len(hello) // 2])
        s.shutdown(socket.SHUT_WR)
        while s.recv(65536):      # the server gives up on the handshake and closes
            pass


CLIENTS = {"httpx": run_httpx, "curl": run_curl, "pyssl": run_pyssl, "s_client": run_s_client,
           "s_client-0rtt": run_zero_rtt, "aioquic": run_aioquic, "truncated": run_truncated}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", choices=sorted(ts.SETS), default="mixed")
    parser.add_argument("--keylog", type=Path, required=True)
    parser.add_argument("--cafile", type=Path, required=True)
    parser.add_argument("--truth", type=Path, required=True)
    args = parser.parse_args(argv)
    args.keylog.touch()
    sessions = ts.SETS[args.set]()
    started = time.time()
    try:
        for session in sessions:
            CLIENTS[session.client](session, args.cafile, args.keylog)
    except (ClientError, OSError, subprocess.SubprocessError, ssl.SSLError) as e:
        print(f"tls_clients: {session.name}: {type(e).__name__}: {e}"[:400], file=sys.stderr)
        return 1
    except Exception as e:   # e.g. an httpx/aioquic error: name the type only, never a body
        print(f"tls_clients: {type(e).__name__} in {session.name}", file=sys.stderr)
        return 1
    doc = ts.truth(args.set, sessions, started)
    args.truth.write_text(json.dumps(doc, ensure_ascii=False, indent=2, sort_keys=True) + "\n",
                          encoding="utf-8")
    print(f"tls_clients: {len(sessions)} sessions, {sum(len(s.messages) for s in sessions)} requests")
    return 0


if __name__ == "__main__":
    sys.exit(main())
