"""The HTTPS server "abroad" for the live TLS tests: hypercorn serving a tiny ASGI app on every address of
the server namespace, over HTTP/1.1 and HTTP/2 inside TLS (tcp 443), HTTP/3 over QUIC (udp 443) and in
cleartext (tcp 80: HTTP/1.1, and h2c by prior knowledge or by `Upgrade: h2c`).

    python tests/live/https_server.py --cert CERT.pem --key KEY.pem --log FILE [--tls-port 443]
        [--plain-port 80] [--bind 0.0.0.0] --quic ADDR [--quic ADDR …]

Each request becomes one JSON line in --log, written and flushed before the response goes out: the local
address, the HTTP version hypercorn spoke, method, Host/:authority, path, content type, body length and
the SHA-256 of the body — never the body (it carries synthetic PI). gRPC requests (content-type
application/grpc) get a trailers-only answer (200, grpc-status 0); everything else a small JSON 200.
Readiness: hypercorn logs "Running on …" once per listening socket (to stderr); the harness waits for
them all. SIGTERM or SIGINT stops the server.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import sys
from pathlib import Path
from typing import Any

from hypercorn.asyncio.run import worker_serve
from hypercorn.config import Config
from hypercorn.utils import wrap_app

RESPONSE = b'{"code":0,"msg":"ok"}'


class RecordingApp:
    """ASGI app: reads the whole body, logs one line about it, answers 200."""

    def __init__(self, log: Path) -> None:
        self.log = log.open("a", encoding="utf-8")

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        entry = {"local_ip": (scope.get("server") or ("", 0))[0], "scheme": scope.get("scheme"),
                 "http_version": scope["http_version"], "method": scope["method"],
                 "host": headers.get("host") or headers.get(":authority"), "path": scope["path"],
                 "content_type": headers.get("content-type"), "body_len": len(body),
                 "body_sha256": hashlib.sha256(body).hexdigest()}
        self.log.write(json.dumps(entry, sort_keys=True) + "\n")
        self.log.flush()
        if (headers.get("content-type") or "").startswith("application/grpc"):
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/grpc"), (b"grpc-status", b"0")]})
            await send({"type": "http.response.body", "body": b""})
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(RESPONSE)).encode())]})
        await send({"type": "http.response.body", "body": RESPONSE})


def config(cert: Path, key: Path, bind: str, tls_port: int, plain_port: int, quic: list[str]) -> Config:
    cfg = Config()
    cfg.certfile, cfg.keyfile = str(cert), str(key)
    cfg.bind = [f"{bind}:{tls_port}"]
    cfg.insecure_bind = [f"{bind}:{plain_port}"]
    # UDP answers leave from the address the datagram came to only on a socket bound to that address:
    # on 0.0.0.0 they would leave from the interface's primary address and the QUIC client drops them.
    cfg.quic_bind = [f"{addr}:{tls_port}" for addr in quic]
    # TLS 1.2 clients of the tests ask for ChaCha20-Poly1305 too (hypercorn's default is ECDHE+AESGCM).
    cfg.ciphers = "ECDHE+AESGCM:ECDHE+CHACHA20"
    cfg.errorlog = "-"
    cfg.loglevel = "INFO"
    cfg.keep_alive_timeout = 30
    return cfg


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cert", type=Path, required=True)
    parser.add_argument("--key", type=Path, required=True)
    parser.add_argument("--log", type=Path, required=True, help="JSON lines, one per request")
    parser.add_argument("--tls-port", type=int, default=443)
    parser.add_argument("--plain-port", type=int, default=80)
    parser.add_argument("--bind", default="0.0.0.0")
    parser.add_argument("--quic", action="append", default=[], help="an address for QUIC (repeatable)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    cfg = config(args.cert, args.key, args.bind, args.tls_port, args.plain_port, args.quic)
    app = wrap_app(RecordingApp(args.log), cfg.wsgi_max_body_size, "asgi")  # type: ignore[arg-type]
    asyncio.run(worker_serve(app, cfg))   # SIGINT/SIGTERM end it (hypercorn's own handlers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
