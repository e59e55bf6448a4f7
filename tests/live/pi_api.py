"""An internal HTTP API that serves personal information: what an overseas client pulls (rules.md: data
stored in China but queried or downloaded from abroad is an export).

Run as a script inside the live tests' client namespace (the internal side). `GET /api/v1/employees?page=N`
answers a JSON page of `--page-size` synthetic employees — name, mobile, resident ID — from the pcap
fixtures' seeded factory (fixtures/pcaps/plant.py via tests/live/plan.py), gzip-coded when the client
accepts it; HTTP/1.1 keep-alive, Content-Length framing. The persons of page N are always the same, so the
test knows what was pulled without this process writing any value anywhere: it logs request counts only.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import logging
import sys
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
import plan

log = logging.getLogger("pi_api")
MAX_PAGES = 20


@cache
def people(page_size: int) -> list[plan.Person]:
    return plan.People(plan.SEED + 1).many(page_size * MAX_PAGES)


def page_body(page: int, page_size: int) -> bytes:
    """Page `page` of the employee list as the API serves it (also what the test recomputes)."""
    rows = people(page_size)[page * page_size:(page + 1) * page_size]
    data = [{"xm": p.name, "sjh": p.mobile, "sfzh": p.resident_id} for p in rows]
    return json.dumps({"code": 0, "page": page, "data": data}, ensure_ascii=False).encode("utf-8")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    page_size = 10

    def do_GET(self) -> None:
        self._answer(head=False)

    def do_HEAD(self) -> None:
        self._answer(head=True)

    def _answer(self, head: bool) -> None:
        url = urlsplit(self.path)
        if url.path != "/api/v1/employees":
            self._send(404, b'{"code":404}', head)
            return
        try:
            page = int(parse_qs(url.query).get("page", ["0"])[0])
        except ValueError:
            page = -1
        if not 0 <= page < MAX_PAGES:
            self._send(400, b'{"code":400}', head)
            return
        body = page_body(page, self.page_size)
        coded = "gzip" in self.headers.get("Accept-Encoding", "")
        self._send(200, gzip.compress(body) if coded else body, head, "gzip" if coded else None)

    def _send(self, status: int, body: bytes, head: bool, coding: str | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json;charset=UTF-8")
        self.send_header("Content-Length", str(len(body)))
        if coding:
            self.send_header("Content-Encoding", coding)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        log.info("%s %s", self.command, urlsplit(self.path).path)    # never the query or a body


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="0.0.0.0")
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--page-size", type=int, default=10)
    ap.add_argument("--ready", type=Path, required=True, help="file written once the server listens")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    Handler.page_size = args.page_size
    people(args.page_size)           # built before listening: the first request is answered at once
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    args.ready.write_text(f"{server.server_address[1]}\n")
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


if __name__ == "__main__":
    main()
