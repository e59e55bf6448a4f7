"""The shipper's contract with the collector (agent/shipper.py): delete only what was acknowledged,
retry what may succeed later, set aside what the collector refused. The collector here is a scripted HTTP
server (statuses in order); the real collector is shipped to in tests/e2e/test_collector_service.py."""

from __future__ import annotations

import http.server
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from agent.records import FlowRecord
from agent.shipper import Shipper, ShipperError, read_token
from agent.spool import Spool
from tests.collector.builders import flow


class Scripted(http.server.BaseHTTPRequestHandler):
    statuses: ClassVar[list[int]] = []
    seen: ClassVar[list[dict[str, str]]] = []
    answered: ClassVar[threading.Event] = threading.Event()    # set once a request has had its answer

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        body = self.rfile.read(length)
        type(self).seen.append({"path": self.path, "auth": self.headers.get("Authorization", ""),
                                "batch": self.headers.get("X-Batch-Id", ""),
                                "type": self.headers.get("X-Record-Type", ""), "bytes": str(len(body))})
        status = type(self).statuses.pop(0) if type(self).statuses else 201
        payload = json.dumps({"error": {"status": status, "message": "column bytes_out: missing"}}
                             if status >= 400 else {"status": "stored"}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        type(self).answered.set()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[str]:
    Scripted.statuses, Scripted.seen, Scripted.answered = [], [], threading.Event()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def spool_one(tmp_path: Path, rows: list[FlowRecord] | None = None) -> Path:
    path = Spool(tmp_path, "gw-1", None).write("flows", rows or [flow("a")])
    assert path is not None
    return path


@pytest.mark.parametrize(("statuses", "shipped", "already", "rejected", "pending", "posts", "file_left"), [
    ([201], 1, 0, 0, 0, 1, False),
    ([200], 1, 1, 0, 0, 1, False),                # stored by an earlier attempt whose answer was lost
    ([503, 502, 201], 1, 0, 0, 0, 3, False),      # retried with backoff
    ([429, 201], 1, 0, 0, 0, 2, False),
    ([422], 0, 0, 1, 0, 1, False),                # refused for good: moved aside, not retried
    ([403], 0, 0, 1, 0, 1, False),
    ([503, 503, 503], 0, 0, 0, 1, 3, True),       # still down after the last attempt: stays in the spool
])
def test_a_file_leaves_the_spool_only_when_acknowledged(tmp_path: Path, collector: str, statuses: list[int],
                                                         shipped: int, already: int, rejected: int,
                                                         pending: int, posts: int, file_left: bool) -> None:
    path = spool_one(tmp_path)
    Scripted.statuses = list(statuses)
    sleeps: list[float] = []
    with Shipper(collector, "tok", tmp_path, max_attempts=3, backoff_s=0.5, sleep=sleeps.append) as s:
        result = s.ship_pending()
    assert (result.shipped, result.already_stored, result.rejected, result.pending) == \
        (shipped, already, rejected, pending)
    assert len(Scripted.seen) == posts
    assert path.exists() is file_left
    if rejected:
        assert (tmp_path / "rejected" / "flows" / path.name).is_file()
        assert "column bytes_out: missing" in result.errors[-1]
    # Exponential backoff with jitter: each wait in [d/2, d), d doubling from 0.5 s.
    for i, waited in enumerate(sleeps):
        assert 0.5 * 2 ** i / 2 <= waited < 0.5 * 2 ** i


def test_the_upload_carries_the_token_the_batch_id_and_the_record_type(tmp_path: Path,
                                                                       collector: str) -> None:
    path = spool_one(tmp_path)
    size = path.stat().st_size
    with Shipper(collector + "/", "tok-123", tmp_path, sleep=lambda _: None) as s:
        s.ship_pending()
    (seen,) = Scripted.seen
    assert seen == {"path": "/v1/batches", "auth": "Bearer tok-123", "batch": path.stem, "type": "flows",
                    "bytes": str(size)}


def test_an_unreachable_collector_keeps_every_file(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]          # nothing listens here once the socket closes
    paths = [spool_one(tmp_path), spool_one(tmp_path, [flow("b")])]
    with Shipper(f"http://127.0.0.1:{port}", "tok", tmp_path, max_attempts=2, sleep=lambda _: None) as s:
        result = s.ship_pending()
    assert result.shipped == 0 and result.pending == 2
    assert all(p.exists() for p in paths)
    assert "ConnectError" in result.errors[0]


@pytest.mark.parametrize(("content", "needle"), [("", "one token"), ("two words\n", "one token")])
def test_a_bad_token_file_is_one_line(tmp_path: Path, content: str, needle: str) -> None:
    path = tmp_path / "token"
    path.write_text(content)
    with pytest.raises(ShipperError, match=needle):
        read_token(path)
    with pytest.raises(ShipperError, match="cannot read"):
        read_token(tmp_path / "missing")
    with pytest.raises(ShipperError, match="http"):
        Shipper("ftp://x", "t", tmp_path)


def test_a_stopping_agent_ends_a_backoff_wait_and_keeps_the_file(tmp_path: Path, collector: str) -> None:
    path = spool_one(tmp_path)
    Scripted.statuses = [503] * 5
    stop = threading.Event()
    # The first attempt fails; during its (long) backoff the agent stops: no second attempt is made. The stop
    # follows the first answer, not a timer (under load a timer could fire before the first attempt).
    threading.Thread(target=lambda: (Scripted.answered.wait(30), stop.set()), daemon=True).start()
    with Shipper(collector, "tok", tmp_path, max_attempts=5, backoff_s=60, stop=stop) as s:
        result = s.ship_pending()
    assert len(Scripted.seen) == 1 and path.exists()
    assert result.shipped == 0 and result.pending == 1
