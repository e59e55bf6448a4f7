"""Connection floods (second outside review of issue 9): 20,000 idle or half-sent connections without a
token held every file descriptor, stalled /healthz and every tenant's upload, and logged a traceback per
failed accept. Now a connection must send its request head within listen.header_timeout_s, and beyond
listen.max_connections the oldest connection still waiting for its head is closed."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from tests.collector.builders import flow
from tests.collector_server import CollectorServer, start_collector
from tests.security.conftest import batch_bytes, upload

MAX_CONNECTIONS, HEADER_TIMEOUT_S = 16, 2


@pytest.fixture
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CollectorServer]:
    s = start_collector(tmp_path_factory.mktemp("conn"), listen_extra={
        "max_connections": MAX_CONNECTIONS, "header_timeout_s": HEADER_TIMEOUT_S})
    try:
        yield s
    finally:
        s.stop()


def _open(srv: CollectorServer, first_bytes: bytes = b"") -> socket.socket:
    s = socket.create_connection(("127.0.0.1", int(srv.url.rsplit(":", 1)[1])))
    if first_bytes:
        s.sendall(first_bytes)
    return s


def _closed_by_server(s: socket.socket, timeout: float) -> bool:
    s.settimeout(timeout)
    try:
        return s.recv(1) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def test_an_idle_flood_evicts_itself_and_the_service_keeps_answering(srv: CollectorServer) -> None:
    flood = [_open(srv) for _ in range(10 * MAX_CONNECTIONS)]
    half = [_open(srv, b"POST /v1/batches HTT") for _ in range(MAX_CONNECTIONS // 2)]
    try:
        # Served although hundreds of connections are open: each new one evicted the oldest idle one.
        assert srv.call(None, "GET", "/healthz").status_code == 200
        stored = upload(srv, "agent-other", batch_bytes("flows", [flow("conn-f1")], agent_id="gw-nb-01",
                                                       enterprise_id="nb-other"), "conn-1")
        assert stored.status_code == 201, stored.text
        assert _closed_by_server(flood[0], HEADER_TIMEOUT_S * 3)         # evicted
        assert _closed_by_server(half[-1], HEADER_TIMEOUT_S * 3)         # no head within the timeout
    finally:
        for s in flood + half:
            s.close()
    log = srv.log.read_text(errors="replace")
    assert "Traceback" not in log and "out of system resource" not in log


def test_a_connection_that_sends_its_head_is_not_cut_by_the_head_timeout(srv: CollectorServer) -> None:
    s = _open(srv, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    try:
        s.settimeout(HEADER_TIMEOUT_S * 3)
        assert s.recv(4096).startswith(b"HTTP/1.1 200")
    finally:
        s.close()
