"""TLS with logged secrets through the whole agent: real TLS connections (Python's ssl over memory BIOs,
tests/agent/tls_streams.py) written into a capture, then `egress-agent run` with `--keylog`, with the same
secrets in a pcapng Decryption Secrets Block, and with no secrets.

With secrets the HTTP/1.1 and HTTP/2 requests inside are inspected exactly as on the wire; without them the
flows, bytes and names are the same, nothing is inspected and nothing is detected. Secrets never reach a
record, an anomaly or a log line.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import time
from functools import partial
from pathlib import Path

import duckdb
import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from stdnum.cn import ric
from typer.testing import CliRunner

from agent.capture import open_capture
from agent.cli import app
from agent.config import load_agent_config
from agent.pipeline import Pipeline, build_engine
from agent.spool import Spool
from fixtures.pcaps.craft import Capture, Host, IpIds, TcpConn, pcap_bytes, pcapng_bytes
from tests.agent.tls_streams import Pair, Stream, python_pair

CLIENT = Host("10.20.0.5", "02:00:00:00:00:05")
ABROAD = Host("8.8.4.77", "02:00:00:00:00:01")          # US
PEOPLE = 5


def resident_id(i: int) -> str:
    body = f"33010619850101{i:03d}"
    return body + ric.calc_check_digit(body + "0")


def records(first: int) -> bytes:
    rows = [{"customerName": name, "mobile": f"1380013{first + i:04d}", "idNo": resident_id(first + i)}
            for i, name in enumerate(["王小明", "李华", "张伟", "刘洋", "陈静"][:PEOPLE])]
    return json.dumps(rows, ensure_ascii=False).encode()


def http1_request(body: bytes) -> bytes:
    return (b"POST /v1/customers HTTP/1.1\r\nHost: crm.vendor.example\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


def h2_requests(body: bytes) -> tuple[bytes, H2Connection]:
    conn = H2Connection(H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    for sid in (1, 3):
        conn.send_headers(sid, [(":method", "POST"), (":scheme", "https"),
                                (":authority", "h2.vendor.example"), (":path", f"/sync/{sid}"),
                                ("content-type", "application/json")])
        conn.send_data(sid, body, end_stream=True)
    return conn.data_to_send(), conn


def connection(pair: Pair, client_data: bytes) -> Stream:
    pair.handshake()
    pair.send(client_data, True)
    pair.send(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", False)
    return pair.finish()


def write_capture(path: Path, streams: list[Stream], *, ng: bool = False, close: bool = True) -> Path:
    """Each stream as one TCP connection to a server abroad, its records in the order they were written."""
    cap, ids = Capture(now_us=1_767_225_600 * 1_000_000), IpIds()
    for n, stream in enumerate(streams):
        conn = TcpConn(cap, ids, CLIENT, ABROAD, 40000 + n, 443, isn_c=1000, isn_s=5000)
        conn.handshake()
        for from_client, chunk in stream.order:
            if from_client:
                conn.send(chunk, segment_size=1400)
            else:
                conn.recv(chunk)
        if close:
            conn.close()
    path.write_bytes(pcapng_bytes(cap.frames) if ng else pcap_bytes(cap.frames))
    return path


@pytest.fixture(scope="module")
def traffic(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[Stream]]:
    folder = tmp_path_factory.mktemp("tls")
    for sub in "abc":
        (folder / sub).mkdir()
    h2_bytes, _ = h2_requests(records(100))
    streams = [
        connection(python_pair(folder / "a", alpn=("http/1.1",)), http1_request(records(0))),       # 1.3
        connection(python_pair(folder / "b", tls12_cipher="ECDHE-RSA-CHACHA20-POLY1305",
                               alpn=("http/1.1",)), http1_request(records(0))),                    # 1.2
        connection(python_pair(folder / "c", alpn=("h2",)), h2_bytes),                              # h2
    ]
    keys = folder / "keys.log"
    keys.write_text("".join(s.keylog for s in streams))
    return write_capture(folder / "tls.pcap", streams), keys, streams


def run(capture: Path, tmp_path: Path, *keylogs: Path) -> Path:
    tmp_path.mkdir(exist_ok=True)
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(f"agent_id: tls\nsubject_key_file: {tmp_path / 'test.key'}\n")
    out = tmp_path / "spool"
    args = ["run", "--pcap", str(capture), "--config", str(cfg), "--out", str(out)]
    for k in keylogs:
        args += ["--keylog", str(k)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return out


def flows(out: Path) -> list[tuple]:
    return duckdb.sql(f"SELECT src_port, app, server_name, requests, encrypted, inspected, bytes_out, "
                      f"bytes_in FROM read_parquet('{out}/flows/*.parquet') ORDER BY src_port").fetchall()


def detections(out: Path) -> dict[tuple[int, str], int]:
    if not list(out.glob("detections/*.parquet")):
        return {}
    got = duckdb.sql(f"SELECT f.src_port, d.field_type, d.occurrences "
                     f"FROM read_parquet('{out}/detections/*.parquet') d "
                     f"JOIN read_parquet('{out}/flows/*.parquet') f USING (flow_id)").fetchall()
    return {(port, ft): n for port, ft, n in got}


EXPECTED = {(port, ft): n for port, n in ((40000, PEOPLE), (40001, PEOPLE), (40002, 2 * PEOPLE))
            for ft in ("person_name", "mobile_cn", "resident_id_cn")}


def test_with_the_key_log_every_request_inside_is_inspected(traffic, tmp_path: Path) -> None:
    capture, keys, _ = traffic
    out = run(capture, tmp_path, keys)
    got = flows(out)
    assert [(f[0], f[1], f[2], f[3], f[4], f[5]) for f in got] == [
        # server_name: the SNI first (DESIGN §3), as without secrets; app: the protocol inside.
        (40000, "http", "export.example", 1, True, True),
        (40001, "http", "export.example", 1, True, True),
        (40002, "http2", "export.example", 2, True, True),
    ]
    assert detections(out) == EXPECTED


def test_without_secrets_the_same_flows_are_seen_and_nothing_is_detected(traffic, tmp_path: Path) -> None:
    capture, keys, _ = traffic
    opened = flows(run(capture, tmp_path / "keys", keys))
    closed_out = run(capture, tmp_path / "none")
    closed = flows(closed_out)
    # Same flows, bytes and names (SNI), no requests read, nothing inspected.
    assert [(f[0], f[6], f[7]) for f in closed] == [(f[0], f[6], f[7]) for f in opened]
    assert [(f[1], f[2], f[3], f[4], f[5]) for f in closed] == [("tls", "export.example", 0, True, False)] * 3
    assert detections(closed_out) == {}


def test_secrets_in_a_pcapng_block_need_no_flag(traffic, tmp_path: Path) -> None:
    if shutil.which("editcap") is None:
        pytest.skip("editcap absent (Debian package tshark)")
    _, keys, streams = traffic
    plain = write_capture(tmp_path / "tls.pcapng", streams, ng=True)
    injected = tmp_path / "injected.pcapng"
    subprocess.run(["editcap", "--inject-secrets", f"tls,{keys}", str(plain), str(injected)], check=True)
    out = run(injected, tmp_path)
    assert detections(out) == EXPECTED


def test_a_key_log_of_other_connections_opens_nothing(traffic, tmp_path: Path) -> None:
    capture, _, _ = traffic
    (tmp_path / "o").mkdir()
    other = python_pair(tmp_path / "o")
    other_keys = tmp_path / "other.log"
    other_keys.write_text(connection(other, b"x").keylog)
    out = run(capture, tmp_path, other_keys)
    assert [(f[1], f[3], f[5]) for f in flows(out)] == [("tls", 0, False)] * 3
    assert detections(out) == {}


def test_no_secret_reaches_a_record_or_a_log_line(traffic, tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    capture, keys, _ = traffic
    caplog.set_level(logging.DEBUG)
    out = run(capture, tmp_path, keys)
    secrets = [line.split()[2] for line in keys.read_text().splitlines() if line and not line.startswith("#")]
    assert len(secrets) >= 11
    written = b"".join(p.read_bytes() for p in out.rglob("*") if p.is_file())
    text = caplog.text.lower()
    for secret in secrets:
        assert secret.lower() not in text
        assert secret.lower().encode() not in written.lower() and bytes.fromhex(secret) not in written


def live_pipeline(tmp_path: Path, keys: Path, wait_s: float) -> Pipeline:
    """A live run's pipeline (source: an interface name), its key log followed from an empty file."""
    keys.write_text("")
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(f"agent_id: live\nsubject_key_file: {tmp_path / 'test.key'}\ndetector_workers: 0\n"
                   f"tls: {{keylog_files: [{keys}], key_wait_s: {wait_s}}}\n")
    config = load_agent_config(cfg)
    return Pipeline(config, Spool(tmp_path / "spool", "live", None), partial(build_engine, config),
                    source="veth0")


@pytest.mark.parametrize("secrets_in_time", [True, False])
def test_a_live_run_holds_ciphertext_until_its_secrets_are_logged(traffic, tmp_path: Path,
                                                                 secrets_in_time: bool) -> None:
    # The client logs its secrets after the handshake began: the open flow's records wait. Logged before
    # tls.key_wait_s is over, they open; after it, the flow counts as no_secrets and nothing is read.
    _, keys, streams = traffic
    capture = write_capture(tmp_path / "open.pcap", streams, close=False)
    followed = tmp_path / "growing.log"
    pipeline = live_pipeline(tmp_path, followed, wait_s=5)
    pipeline.feed(open_capture(capture, pipeline.anomalies, secrets=pipeline.keylog))
    assert len(pipeline._waiting) == 3
    start = time.time()
    if secrets_in_time:
        followed.write_text(keys.read_text())
        pipeline.keylog.refresh()
        pipeline.tick(start + 1)
    else:
        pipeline.tick(start + 6)
        followed.write_text(keys.read_text())      # too late: the held records are gone
    assert not pipeline._waiting
    pipeline.finish(now=start + 7)
    out = tmp_path / "spool"
    got = [(f[1], f[3], f[5]) for f in flows(out)]
    if secrets_in_time:
        assert got == [("http", 1, True), ("http", 1, True), ("http2", 2, True)]
        assert detections(out) == EXPECTED
    else:
        assert got == [("tls", 0, False)] * 3
        assert detections(out) == {}
