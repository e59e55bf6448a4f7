"""A tiny HTTP/1.1 sink for the live tests: answers 200 to any request and logs one JSON line per request.

    python tests/live/http_sink.py --log FILE [--port 80] [--bind 0.0.0.0] [--ready FILE]

Runs in the server namespace, on every address there (bound to 0.0.0.0 unless --bind says otherwise).
Keep-alive works (HTTP/1.1, Content-Length on every response). Each log line holds the local address the
request came in on, the Host header, method, path and body length, never the body: the bodies carry
(synthetic) PI, and nothing the harness writes may hold a raw value. A line is written and flushed before
the response goes out, so a client that has its response can count on the line being there.
`--ready FILE` is created once the socket listens. SIGTERM or SIGINT stops the server cleanly.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

RESPONSE = b'{"code":0,"msg":"ok"}'


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "egresswatch-live-sink/1"
    log_lock = threading.Lock()
    log_file: Any = None

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        remaining = length
        while remaining > 0:   # read and drop the body
            chunk = self.rfile.read(min(remaining, 65536))
            if not chunk:
                break
            remaining -= len(chunk)
        entry = {"local_ip": self.connection.getsockname()[0], "client_port": self.client_address[1],
                 "host": self.headers.get("Host"), "method": self.command, "path": self.path,
                 "content_length": length}
        with self.log_lock:
            self.log_file.write(json.dumps(entry, sort_keys=True) + "\n")
            self.log_file.flush()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(RESPONSE)))
        if (self.headers.get("Connection") or "").lower() == "close":
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(RESPONSE)

    do_POST = do_PUT = do_GET = _answer

    def log_message(self, format: str, *args: Any) -> None:   # the JSON log is the only log
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log", type=Path, required=True, help="JSON lines, one per request")
    parser.add_argument("--port", type=int, default=80)
    parser.add_argument("--bind", default="0.0.0.0")
    parser.add_argument("--ready", type=Path, help="file created once the server listens")
    args = parser.parse_args(argv)

    _Handler.log_file = args.log.open("a", encoding="utf-8")
    server = ThreadingHTTPServer((args.bind, args.port), _Handler)
    server.daemon_threads = True

    def stop(signum: int, frame: Any) -> None:
        # shutdown() waits for serve_forever to return, so it must not run on the serving (main) thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if args.ready:
        args.ready.write_text(f"{args.bind}:{args.port}\n", encoding="utf-8")
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        server.server_close()
        _Handler.log_file.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
