"""Uploads that starve or exhaust the service (outside review of issue 9): slow bodies holding every upload
slot, row-heavy batches decoded in the service process, disk taken by one tenant, oversized detection rows,
errors that echo uploads, clients that hang up. Each against the real `egress-collector serve` process."""

from __future__ import annotations

import dataclasses
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.records import AnomalyRecord
from tests.collector.builders import detection, flow
from tests.collector_server import CollectorServer, demo_filing, start_collector
from tests.security.conftest import assert_error_shape, batch_bytes, upload

UPLOAD_TIMEOUT_S = 8


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CollectorServer]:
    s = start_collector(tmp_path_factory.mktemp("fair"), limits={
        "upload_timeout_s": UPLOAD_TIMEOUT_S, "max_uploads_per_token": 2, "max_concurrent_uploads": 2,
        "max_rows": 200_000})
    try:
        yield s
    finally:
        s.stop()


def _vm_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def _slow_upload(srv: CollectorServer, who: str, batch_id: str) -> socket.socket:
    """Headers of a 1 MB upload and ten bytes of its body, then nothing: a client trickling its body."""
    port = int(srv.url.rsplit(":", 1)[1])
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall((f"POST /v1/batches HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {srv.tokens[who]}\r\n"
               f"X-Batch-Id: {batch_id}\r\nX-Record-Type: flows\r\nContent-Length: 1000000\r\n\r\n").encode()
              + b"PAR1" + b"\0" * 6)
    return s


def _response(s: socket.socket, timeout: float) -> str:
    """One whole HTTP response (headers, then Content-Length bytes of body)."""
    s.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(4096)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        body += s.recv(4096)
    return (head + b"\r\n\r\n" + body).decode(errors="replace")


def test_slow_bodies_of_one_token_never_block_another_tenants_upload(srv: CollectorServer) -> None:
    # The attack: four connections of one agent token trickle their bodies; the old service took the global
    # upload slots before reading a body, so every other tenant's upload waited until they gave up.
    slow = [_slow_upload(srv, "agent", f"slow-{i}") for i in range(4)]
    try:
        other = upload(srv, "agent-other", batch_bytes("flows", [flow("fair-f1")], agent_id="gw-nb-01",
                                                       enterprise_id="nb-other"), "fair-1")
        assert other.status_code == 201, other.text
        # Stored while every slow upload is still in flight, unanswered: it did not wait for them.
        for s in slow:
            s.setblocking(False)
            with pytest.raises(BlockingIOError):
                s.recv(1)
            s.setblocking(True)
        # The slow ones are answered 408 once their deadline passes (the first two at once, then the rest).
        answer = _response(slow[0], UPLOAD_TIMEOUT_S * 3)
        assert answer.startswith("HTTP/1.1 408") and '"code":"timeout"' in answer, answer
        assert "upload_timeout_s" in answer
    finally:
        for s in slow:
            s.close()


def test_a_client_that_hangs_up_mid_body_is_no_server_error(srv: CollectorServer) -> None:
    s = _slow_upload(srv, "agent-2", "hangup-1")
    time.sleep(0.3)
    s.close()
    deadline = time.monotonic() + 5
    while "client disconnected" not in srv.log.read_text(errors="replace") and time.monotonic() < deadline:
        time.sleep(0.1)
    log = srv.log.read_text(errors="replace")
    assert "client disconnected" in log
    assert "Traceback" not in log and "failed: ClientDisconnect" not in log


def test_a_batch_of_max_rows_flowless_anomalies_stays_out_of_the_service_memory(srv: CollectorServer) -> None:
    # The attack: 2,000,000 anomaly rows without a flow (1.4 MB zstd) made the service build a Python
    # dict per row under the warehouse lock: 1.7 GB and ~20 s of every tenant's requests. Now at most
    # max_rows, keys computed vectorised before the lock.
    rows = [AnomalyRecord(None, "http", "bad_header", f"digits({i % 97})", None) for i in range(200_000)]
    body = batch_bytes("anomalies", rows)
    pid = srv.proc.pid
    before = _vm_kib(pid, "VmRSS")
    answered: list[int] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            answered.append(srv.call("enterprise-other", "GET", "/v1/reports").status_code)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        r = upload(srv, "agent", body, "anom-big", "anomalies")
    finally:
        done.set()
        watcher.join()
    assert r.status_code == 201 and r.json()["stored_rows"] == 200_000, r.text
    grown_mib = (_vm_kib(pid, "VmHWM") - before) / 1024
    assert grown_mib < 400, f"service peak grew {grown_mib:.0f} MiB"
    assert answered and set(answered) == {200}      # another tenant was answered meanwhile
    again = upload(srv, "agent", body, "anom-big-replay", "anomalies")
    assert again.json()["stored_rows"] == 0, again.text          # the same rows again: all duplicates
    over = batch_bytes("anomalies", [*rows, rows[0]])
    assert_error_shape(upload(srv, "agent", over, "anom-over", "anomalies"), 413, "body")


@pytest.mark.parametrize(("column", "n"), [("key_paths", 6), ("masked_samples", 4)])
def test_a_detection_row_over_its_list_caps_is_refused(srv: CollectorServer, column: str, n: int) -> None:
    # The attack: 150,000 key paths in one row cost ~30 s of service CPU each upload (DESIGN §3: ≤ 5, ≤ 3).
    row = dataclasses.replace(detection("cap-f1", "mobile_cn"),
                              **{column: tuple(f"$.a{i}" if column == "key_paths" else f"1****{i}"
                                               for i in range(n))})
    r = upload(srv, "agent", batch_bytes("detections", [row]), f"cap-{column}", "detections")
    assert_error_shape(r, 422, f"column {column}")


def test_errors_do_not_echo_what_was_uploaded(srv: CollectorServer) -> None:
    long_id = "Z" * 100_000
    r = srv.call("regulator", "PUT", "/v1/filings/ZJFTZ-HZ-ECHO", json=demo_filing(filing_id=long_id))
    err = assert_error_shape(r, 422, "filing_id")
    assert len(err["message"]) < 300, len(err["message"])
    bad_type = upload(srv, "agent", b"x", "echo-1", "T" * 8000)
    assert len(assert_error_shape(bad_type, 422)["message"]) < 300


def test_one_enterprise_cannot_take_the_disk_of_the_others(tmp_path: Path) -> None:
    # The attack: one agent filled the data dir (each upload ~270x on disk in row identities); then every
    # tenant got 507. Now each enterprise has limits.max_enterprise_bytes.
    srv = start_collector(tmp_path, limits={"max_enterprise_bytes": 1024 * 1024})
    try:
        status, n = 201, 0
        while status == 201 and n < 200:
            rows = [flow(f"q{n}-{i}", server_name=f"h{n}-{i}.example") for i in range(2000)]
            r = upload(srv, "agent", batch_bytes("flows", rows), f"quota-{n}")
            status, n = r.status_code, n + 1
        err = assert_error_shape(r, 507)
        assert "max_enterprise_bytes" in err["message"]
        assert not list(srv.data_dir.rglob(f"quota-{n - 1}.parquet"))
        other = upload(srv, "agent-other", batch_bytes("flows", [flow("q-other")], agent_id="gw-nb-01",
                                                       enterprise_id="nb-other"), "quota-other")
        assert other.status_code == 201, other.text
        removed = srv.call("regulator", "DELETE", "/v1/batches/hz-demo/quota-0")
        assert removed.status_code == 200, removed.text
        assert upload(srv, "agent", batch_bytes("flows", [flow("q-after")]), "quota-after").status_code == 201
    finally:
        srv.stop()


def test_one_tokens_documents_do_not_starve_other_tenants(srv: CollectorServer) -> None:
    # The attack: 45 concurrent node-heavy filings from one enterprise token filled the thread pool every
    # route shares (healthz answered after 90 s). Now a token parses in its own two slots, two at a time.
    body = ('{"x": [' + ",".join(["1"] * 60_000) + "]}").encode()
    running, answered = [0], []
    lock = threading.Lock()

    def flood() -> None:
        with lock:
            running[0] += 1
        try:
            srv.call("enterprise", "PUT", "/v1/filings/ZJFTZ-HZ-FLOOD", content=body)
        finally:
            with lock:
                running[0] -= 1

    threads = [threading.Thread(target=flood) for _ in range(40)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        r = srv.call("enterprise-other", "GET", "/v1/reports")
        if running[0]:
            answered.append(r.status_code)
    for t in threads:
        t.join()
    assert len(answered) >= 3 and set(answered) == {200}, answered
