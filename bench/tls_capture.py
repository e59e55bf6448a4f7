"""A large TLS capture and its key log, of the project's own making, for bench/decrypt.py.

    python bench/tls_capture.py --size 100 --out bench/out/decrypt      # tls-100MB.pcapng + .keys + .json

On loopback, no namespaces: a hypercorn HTTPS server (HTTP/2 and HTTP/1.1, self-signed ECDSA certificate
made with `cryptography`) on 127.77.0.1:443, and httpx clients that log their TLS secrets
(`SSLContext.keylog_filename`) POST JSON batches of synthetic PI (bench/corpus.py's records), some gzip'd,
plus single form/CSV/text bodies. Connections mix TLS 1.3 (h2 and h1) and TLS 1.2 (ECDHE-ECDSA with
AES-128-GCM and ChaCha20-Poly1305); h2 connections run several streams at once. dumpcap captures `lo` with
a capture filter on the server's address and port — it needs root (CAP_NET_RAW). Loopback has a 64 KiB MTU
and no segmentation offload to undo, so segments are larger than on a wire (100 MB: ~49,000 packets, ~2.1 KB
each, against ~1.4 KB for full-size Ethernet frames): per-packet costs weigh a little less than at an egress.

The files hold raw synthetic PI and live secrets of throw-away sessions, so they stay under bench/out/
(git-ignored). Nothing here waits a fixed time: the server's socket is listening before it starts (passed
as fd://), dumpcap is ready when it says "Capturing on", and the capture ends once its file stops growing.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import logging
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))   # bench/ is a folder of scripts
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))   # ... beside the checkout's fixtures/

import corpus

from fixtures import certs

log = logging.getLogger("bench.tls_capture")

SERVER_NAME = "api.bench-abroad.example"
ADDRESSES = ("127.77.0.1", "127.77.0.2", "127.77.0.3")    # the first whose :443 is free on this host
PORT = 443
# (name, share of connections, http2, max TLS version, TLS 1.2 cipher)
VARIANTS = (("h2-tls13", 0.55, True, ssl.TLSVersion.TLSv1_3, None),
            ("h1-tls13", 0.20, False, ssl.TLSVersion.TLSv1_3, None),
            ("h2-tls12-aesgcm", 0.15, True, ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-AES128-GCM-SHA256"),
            ("h1-tls12-chacha", 0.10, False, ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-CHACHA20-POLY1305"))
WORKERS = 6             # connections open at once
H2_STREAMS = 4          # concurrent streams on an h2 connection


class CaptureError(RuntimeError):
    """The capture could not be made (no dumpcap, not root, a server that did not come up)."""


@dataclass
class CaptureInfo:
    pcap: str
    keylog: str
    size_mb: float
    seed: int
    capture_bytes: int = 0
    requests: dict[str, int] = field(default_factory=dict)       # by variant
    connections: dict[str, int] = field(default_factory=dict)
    body_bytes: int = 0
    gzip_bodies: int = 0
    dumpcap: str = ""               # dumpcap's closing lines (packet and drop counts)
    generate_s: float = 0.0
    openssl: str = ssl.OPENSSL_VERSION

    @property
    def requests_sent(self) -> int:
        return sum(self.requests.values())


def paths(cache_dir: Path, size_mb: float) -> tuple[Path, Path, Path]:
    stem = f"tls-{size_mb:g}MB"
    return cache_dir / f"{stem}.pcapng", cache_dir / f"{stem}.keys", cache_dir / f"{stem}.json"


def check_can_capture() -> str | None:
    """Why this host cannot make the capture, or None."""
    if shutil.which("dumpcap") is None:
        return "dumpcap absent (Debian package tshark)"
    if os.geteuid() != 0:
        return "needs root: dumpcap captures on lo"
    return None


# -- certificate and server ----------------------------------------------------------------------------

def make_certificate(directory: Path) -> tuple[Path, Path]:
    return certs.self_signed(directory, [SERVER_NAME])


async def _app(scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]],
               send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
    """ASGI: read the whole body, answer a small JSON receipt."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    size, more = 0, True
    while more:
        event = await receive()
        size += len(event.get("body", b""))
        more = event.get("more_body", False)
    body = json.dumps({"code": 0, "received": size}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def serve(fd: int, cert: str, key: str) -> None:
    """The server process: hypercorn on an already listening socket until SIGTERM."""
    from hypercorn.asyncio import serve as hypercorn_serve
    from hypercorn.config import Config

    config = Config()
    config.bind = [f"fd://{fd}"]
    config.certfile, config.keyfile = cert, key
    config.ciphers = "ECDHE+AESGCM:ECDHE+CHACHA20"
    config.alpn_protocols = ["h2", "http/1.1"]
    config.accesslog = config.errorlog = None

    async def main() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await hypercorn_serve(_app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]

    asyncio.run(main())


def _listen() -> socket.socket:
    for address in ADDRESSES:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, PORT))
        except OSError:
            sock.close()
            continue
        sock.listen(512)
        return sock
    raise CaptureError(f"port {PORT} is taken on {', '.join(ADDRESSES)}")


# -- dumpcap -------------------------------------------------------------------------------------------

def _start_dumpcap(path: Path, bpf: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(["dumpcap", "-i", "lo", "-f", bpf, "-B", "256", "-w", str(path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:          # "Capturing on 'Loopback: lo'" once the filter is set
        seen.append(line.decode(errors="replace").strip())
        if line.startswith(b"Capturing on"):
            return proc
    proc.wait()
    raise CaptureError(f"dumpcap exit {proc.returncode}: {' '.join(seen)[-300:]}")


def _await_capturing(proc: subprocess.Popen[bytes], path: Path, address: str) -> None:
    """Until a connection to the server shows up in the file. dumpcap says "Capturing on" before its loop
    reads packets; on a busy machine a whole megabyte of traffic passed unseen in that gap. The file grows
    once dumpcap has written a packet (it flushes every 100 ms), so knock until it does."""
    deadline = time.monotonic() + 60
    while not path.exists() or path.stat().st_size == 0:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise CaptureError("dumpcap wrote no capture file")
        time.sleep(0.05)
    header = path.stat().st_size
    while path.stat().st_size == header:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise CaptureError("dumpcap captured nothing of a connection to the server")
        with socket.create_connection((address, PORT), timeout=5):
            pass
        time.sleep(0.1)


def _stop_dumpcap(proc: subprocess.Popen[bytes], path: Path) -> str:
    # Let the kernel's buffer drain into the file: stop once its size has held for a few polls.
    last, steady = -1, 0
    while steady < 5:
        size = path.stat().st_size if path.exists() else 0
        steady = steady + 1 if size == last else 0
        last = size
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    lines = [line.strip() for line in err.decode(errors="replace").splitlines()]
    return " ".join(line for line in lines if line.startswith(("Packets captured", "Packets received")))


# -- clients -------------------------------------------------------------------------------------------

class Bodies:
    """Request bodies from bench/corpus.py: mostly JSON batches of its records, some single bodies."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        pool = list(corpus.generate(1500, seed))
        json_bodies = [b.content_type.startswith("application/json") for b in pool]
        self.records = [json.loads(b.data) for b, is_json in zip(pool, json_bodies, strict=True) if is_json]
        self.singles = [(b.content_type, b.data) for b, is_json in zip(pool, json_bodies, strict=True)
                        if not is_json]
        self.batch = 0

    def next(self) -> tuple[dict[str, str], bytes]:
        r = self.rng
        if r.random() < 0.15:
            ctype, data = r.choice(self.singles)
            return {"content-type": ctype}, data
        self.batch += 1
        records = r.sample(self.records, r.randrange(2, 60))
        doc = {"batch": self.batch, "source": "crm-sync", "records": records}
        data = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
        headers = {"content-type": "application/json"}
        if r.random() < 0.1:
            headers["content-encoding"] = "gzip"
            data = gzip.compress(data, mtime=0)
        return headers, data


def _context(cert: Path, keylog: Path, max_version: ssl.TLSVersion, cipher: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(cert))
    ctx.maximum_version = max_version
    if cipher:
        ctx.set_ciphers(cipher)
    ctx.keylog_filename = str(keylog)     # one file per context: OpenSSL writes each through its own BIO
    return ctx


async def _drive(address: str, cert: Path, workdir: Path, info: CaptureInfo, target_bytes: int) -> None:
    import httpx

    logging.getLogger("httpx").setLevel(logging.WARNING)   # a line per request otherwise
    rng = random.Random(info.seed)
    bodies = Bodies(info.seed)
    contexts = {v[0]: _context(cert, workdir / f"keys-{v[0]}.log", v[3], v[4]) for v in VARIANTS}
    sent = 0

    async def connection(variant: tuple[Any, ...]) -> None:
        nonlocal sent
        name, _, http2 = variant[0], variant[1], variant[2]
        async with httpx.AsyncClient(http1=not http2, http2=http2, verify=contexts[name], timeout=60
                                     ) as client:

            async def post(headers: dict[str, str], data: bytes) -> None:
                nonlocal sent
                sent += len(data) + 200     # counted before the await, so the workers stop near the target
                resp = await client.post(f"https://{address}/api/v2/sync", content=data,
                                         headers={"host": SERVER_NAME, **headers},
                                         extensions={"sni_hostname": SERVER_NAME})
                resp.raise_for_status()
                info.requests[name] = info.requests.get(name, 0) + 1
                info.body_bytes += len(data)
                info.gzip_bodies += "content-encoding" in headers

            for _ in range(rng.randrange(3, 40)):
                if sent >= target_bytes:
                    break
                width = H2_STREAMS if http2 else 1
                await asyncio.gather(*(post(*bodies.next()) for _ in range(width)))
        info.connections[name] = info.connections.get(name, 0) + 1

    async def worker(first: int) -> None:
        # Each worker's first connection is a different variant, so even a small capture has them all.
        variant = VARIANTS[first % len(VARIANTS)]
        while sent < target_bytes:
            await connection(variant)
            variant = rng.choices(VARIANTS, weights=[v[1] for v in VARIANTS])[0]

    await asyncio.gather(*(worker(i) for i in range(WORKERS)))


def generate(cache_dir: Path, size_mb: float, seed: int = 7) -> CaptureInfo:
    """Make the capture, its key log and a JSON description under `cache_dir` (overwriting them)."""
    reason = check_can_capture()
    if reason:
        raise CaptureError(reason)
    pcap, keylog, meta = paths(cache_dir, size_mb)
    cache_dir.mkdir(parents=True, exist_ok=True)
    work = cache_dir / f".work-{os.getpid()}"
    work.mkdir()
    info = CaptureInfo(str(pcap), str(keylog), size_mb, seed)
    start = time.perf_counter()
    sock = _listen()
    address = sock.getsockname()[0]
    cert, key = make_certificate(work)
    server = subprocess.Popen([sys.executable, __file__, "--serve-fd", str(sock.fileno()), str(cert),
                               str(key)], pass_fds=(sock.fileno(),))
    sock.close()
    try:
        dumpcap = _start_dumpcap(pcap, f"host {address} and tcp port {PORT}")
        try:
            _await_capturing(dumpcap, pcap, address)
            # TLS, headers and TCP/IP add ~2 % on loopback's large segments: aim the bodies a little under.
            asyncio.run(_drive(address, cert, work, info, int(size_mb * 0.97e6)))
        finally:
            info.dumpcap = _stop_dumpcap(dumpcap, pcap)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    keylog.unlink(missing_ok=True)
    with os.fdopen(os.open(keylog, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out:  # a secret
        for part in sorted(work.glob("keys-*.log")):
            out.write(part.read_bytes())
    shutil.rmtree(work)
    info.capture_bytes = pcap.stat().st_size
    info.generate_s = round(time.perf_counter() - start, 1)
    meta.write_text(json.dumps(asdict(info), indent=2) + "\n")
    return info


def load_or_generate(cache_dir: Path, size_mb: float, seed: int = 7, regenerate: bool = False) -> CaptureInfo:
    pcap, keylog, meta = paths(cache_dir, size_mb)
    if not regenerate and pcap.is_file() and keylog.is_file() and meta.is_file():
        doc = json.loads(meta.read_text())
        if doc.get("seed") == seed:
            return CaptureInfo(**doc)
    return generate(cache_dir, size_mb, seed)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="a TLS capture with its key log, for bench/decrypt.py")
    p.add_argument("--size", type=float, default=100.0, help="MB of capture")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out" / "decrypt")
    p.add_argument("--serve-fd", nargs=3, help=argparse.SUPPRESS)   # the server process, run by generate()
    args = p.parse_args(argv)
    if args.serve_fd:
        serve(int(args.serve_fd[0]), args.serve_fd[1], args.serve_fd[2])
        return 0
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    info = generate(args.out, args.size, args.seed)
    log.info("%s: %.1f MB, %d requests in %.1f s; %s", info.pcap, info.capture_bytes / 1e6,
             info.requests_sent, info.generate_s, info.dumpcap)
    return 0


if __name__ == "__main__":
    sys.exit(main())
