"""The ICAP service (agent/icap.py) in-process on an ephemeral port, driven over raw sockets: OPTIONS,
REQMOD with and without preview, 204 against the byte-exact echo, pipelining, pulls over RESPMOD, the
REQMOD/RESPMOD correlation, the allow list and the connection limit. Malformed input: tests/agent/
test_icap_malformed.py; a second implementation (c-icap-client) and the CLI: test_icap_conformance.py."""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.config import load_agent_config
from agent.pipeline import build_engine
from tests.agent.icap_harness import (
    ABROAD,
    BODY,
    CLIENT,
    Reader,
    Service,
    chunked,
    config,
    http_request,
    icap_head,
    reqmod,
    rows,
)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    key = tmp_path_factory.mktemp("key") / "k.key"
    key.write_bytes(b"icap-test-key-not-secret-0000000")
    return build_engine(load_agent_config(None, subject_key_file=str(key)))


@pytest.fixture
def service(tmp_path: Path, engine) -> Iterator[Service]:  # type: ignore[no-untyped-def]
    svc = Service(config(tmp_path), tmp_path / "spool", engine)
    yield svc
    if svc._thread.is_alive():
        svc.stop()


def _types(out: Path, flow_id: str | None = None) -> set[str]:
    return {d["field_type"] for d in rows(out, "detections") if flow_id in (None, d["flow_id"])}


def test_options_tell_the_proxy_what_the_service_does(service: Service) -> None:
    with service.connect() as s:
        r = Reader(s)
        s.sendall(b"OPTIONS icap://127.0.0.1/egresswatch ICAP/1.0\r\nHost: x\r\n\r\n")
        a = r.answer()
        s.sendall(b"OPTIONS icap://127.0.0.1/egresswatch/respmod ICAP/1.0\r\nHost: x\r\n\r\n")
        one = r.answer()
    assert a.status == 200 and a.fields["methods"] == "REQMOD, RESPMOD" and one.fields["methods"] == "RESPMOD"
    assert a.fields["istag"].startswith('"egresswatch-') and a.fields["istag"].endswith('"')
    assert (a.fields["allow"], a.fields["preview"], a.fields["transfer-preview"]) == ("204", "4096", "*")
    assert (a.fields["max-connections"], a.fields["options-ttl"]) == ("100", "3600")
    assert a.fields["encapsulated"] == "null-body=0"


def test_a_preview_gets_100_continue_then_the_rest_is_read_and_inspected(service: Service) -> None:
    hdr = http_request()
    head = icap_head("REQMOD", [("req-hdr", hdr)], "req-body", preview=40,
                     meta={"X-Client-IP": CLIENT, "X-Server-IP": ABROAD})
    with service.connect() as s:
        r = Reader(s)
        s.sendall(head + chunked(BODY[:40]))
        assert r.answer().status == 100
        s.sendall(chunked(BODY[40:], sizes=7))
        assert r.answer().status == 204
    service.stop()
    [flow] = rows(service.out, "flows")
    assert (flow["src_ip"], flow["dst_ip"], flow["dst_ip_source"]) == (CLIENT, ABROAD, "proxy")
    assert (flow["visibility"], flow["server_name"], flow["dst_port"]) == ("proxy", "api.example.com", 80)
    assert flow["inspected"] and flow["bytes_out"] == len(hdr) + len(BODY) and not flow["encrypted"]
    assert {"resident_id_cn", "mobile_cn", "person_name"} <= _types(service.out)
    assert not rows(service.out, "anomalies")
    # Every pi_values row names the deployment key (DESIGN §3 key_id), in the ICAP service as in a capture.
    key_id = hashlib.sha256(b"icap-test-key-not-secret-0000000").hexdigest()[:8]     # the engine's key
    assert {p["key_id"] for p in rows(service.out, "pi_values")} == {key_id}


def test_a_preview_that_holds_the_whole_body_is_answered_at_once(service: Service) -> None:
    head = icap_head("REQMOD", [("req-hdr", http_request())], "req-body", preview=4096, allow_204=False,
                     meta={"X-Client-IP": CLIENT, "X-Server-IP": ABROAD})
    with service.connect() as s:
        s.sendall(head + chunked(BODY, ieof=True))
        assert Reader(s).answer().status == 204    # after a preview 204 needs no Allow: 204
    service.stop()
    assert {"resident_id_cn", "mobile_cn"} <= _types(service.out)


def test_allow_204_gets_204_without_it_the_message_is_echoed_byte_for_byte(service: Service) -> None:
    hdr = http_request()
    with service.connect() as s:
        r = Reader(s)
        s.sendall(reqmod(allow_204=True))
        assert r.answer().status == 204
        s.sendall(reqmod(allow_204=False))
        echo = r.answer()
        # With a preview and no Allow: 204: 100 Continue, then the echo of preview and rest together.
        s.sendall(icap_head("REQMOD", [("req-hdr", hdr)], "req-body", preview=10, allow_204=False,
                            meta={"X-Client-IP": CLIENT}) + chunked(BODY[:10]))
        assert r.answer().status == 100
        s.sendall(chunked(BODY[10:], sizes=3))
        late = r.answer()
    for a in (echo, late):
        assert a.status == 200 and a.fields["encapsulated"] == f"req-hdr=0, req-body={len(hdr)}"
        assert (a.encapsulated, a.body) == (hdr, BODY)
    service.stop()
    assert len(rows(service.out, "flows")) == 3


def test_a_request_without_body_is_echoed_with_null_body(service: Service) -> None:
    get = b"GET /search?q=1 HTTP/1.1\r\nHost: api.example.com\r\n\r\n"
    with service.connect() as s:
        s.sendall(icap_head("REQMOD", [("req-hdr", get)], "null-body", allow_204=False))
        a = Reader(s).answer()
    assert (a.status, a.encapsulated) == (200, get)
    assert a.fields["encapsulated"] == f"req-hdr=0, null-body={len(get)}"
    service.stop()
    [flow] = rows(service.out, "flows")
    assert (flow["src_ip"], flow["requests"], flow["bytes_out"]) == ("0.0.0.0", 1, len(get))


def test_the_body_is_never_held_past_max_body_bytes(tmp_path: Path, engine) -> None:  # type: ignore[no-untyped-def]
    svc = Service(config(tmp_path, max_body_bytes=100), tmp_path / "spool", engine)
    big = BODY * 300
    with svc.connect() as s:
        r = Reader(s)
        s.sendall(icap_head("REQMOD", [("req-hdr", http_request(big))], "req-body", preview=64,
                            meta={"X-Client-IP": CLIENT, "X-Server-IP": ABROAD}) + chunked(big[:64]))
        assert r.answer().status == 100
        s.sendall(chunked(big[64:], sizes=4096))
        assert r.answer().status == 204            # read to its end, then answered as usual
    svc.stop()
    [anomaly] = [a for a in rows(svc.out, "anomalies") if a["layer"] == "icap"]
    assert anomaly["name"] == "body_truncated"
    # What reached the sink: max_body_bytes of the body, and the whole length said.
    assert anomaly["detail"] == f"message 0: 100 bytes of {len(big)} handed over"
    [flow] = rows(svc.out, "flows")
    assert flow["bytes_out"] == len(http_request(big)) + len(big) and flow["inspected"]


def test_pipelined_transactions_on_one_connection(service: Service) -> None:
    with service.connect() as s:
        r = Reader(s)
        s.sendall(reqmod() + b"OPTIONS icap://127.0.0.1/x ICAP/1.0\r\n\r\n" + reqmod(allow_204=False)
                  + reqmod())
        assert [r.answer().status for _ in range(4)] == [204, 200, 200, 204]
    service.stop()
    assert len(rows(service.out, "flows")) == 3


def test_a_request_sent_one_byte_at_a_time_is_read_whole(service: Service) -> None:
    wire = reqmod()
    with service.connect() as s:
        for i in range(len(wire)):
            s.send(wire[i:i + 1])
        assert Reader(s).answer().status == 204
    service.stop()
    [flow] = rows(service.out, "flows")
    assert flow["bytes_out"] == len(http_request()) + len(BODY)
    assert {"resident_id_cn", "mobile_cn", "person_name"} <= _types(service.out)


def test_a_peer_outside_allow_is_refused_before_a_byte_is_read(tmp_path: Path, engine) -> None:  # type: ignore[no-untyped-def]
    svc = Service(config(tmp_path, allow=["10.0.0.0/8"]), tmp_path / "spool", engine)
    with svc.connect() as s:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            s.sendall(reqmod())
        assert Reader(s).closed()
    stats = svc.stop()
    assert (stats.refused, stats.transactions) == (1, 0) and not rows(svc.out, "flows")


def test_over_max_connections_a_connection_gets_503(tmp_path: Path, engine) -> None:  # type: ignore[no-untyped-def]
    svc = Service(config(tmp_path, max_connections=1), tmp_path / "spool", engine)
    with svc.connect() as first:
        first.sendall(b"OPTIONS icap://127.0.0.1/x ICAP/1.0\r\n\r\n")
        assert Reader(first).answer().status == 200     # the first one is open and served
        with svc.connect() as second:
            assert Reader(second).answer().status == 503
    svc.stop()


def test_a_pull_is_read_and_inspected_as_the_export_to_the_client_abroad(service: Service) -> None:
    req = b"GET /export HTTP/1.1\r\nHost: files.corp.example:8443\r\n\r\n"
    res = (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
           f"Content-Length: {len(BODY)}\r\n\r\n").encode()
    head = icap_head("RESPMOD", [("req-hdr", req), ("res-hdr", res)], "res-body", preview=16,
                     meta={"X-Client-IP": ABROAD, "X-Server-IP": "10.9.9.9"})
    with service.connect() as s:
        r = Reader(s)
        s.sendall(head + chunked(BODY[:16]))
        assert r.answer().status == 100           # a pull's answer is read whole
        s.sendall(chunked(BODY[16:]))
        assert r.answer().status == 204
    service.stop()
    [flow] = rows(service.out, "flows")
    assert (flow["initiator"], flow["src_ip"], flow["dst_ip"]) == ("external", "10.9.9.9", ABROAD)
    assert (flow["src_port"], flow["server_name"], flow["inspected"]) == (8443, "files.corp.example", True)
    assert flow["bytes_out"] == len(res) + len(BODY)
    assert {"resident_id_cn", "mobile_cn", "person_name"} <= _types(service.out)


def test_a_respmod_names_the_server_of_the_waiting_request(tmp_path: Path, engine) -> None:  # type: ignore[no-untyped-def]
    svc = Service(config(tmp_path), tmp_path / "spool",  engine,
                  resolve=lambda name: pytest.fail("resolved although named"))
    res = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n"
    with svc.connect() as s:
        r = Reader(s)
        s.sendall(reqmod(meta={"X-Client-IP": CLIENT, "X-Transaction-ID": "7f1"}))
        assert r.answer().status == 204
        # The internal client's download: 204 right after the preview, the rest never read.
        s.sendall(icap_head("RESPMOD", [("req-hdr", http_request()), ("res-hdr", res)], "res-body",
                            preview=8, meta={"X-Client-IP": CLIENT, "X-Server-IP": ABROAD,
                                             "X-Transaction-ID": "7f1"}) + chunked(b"x" * 8))
        assert r.answer().status == 204
    svc.stop()
    [flow] = rows(svc.out, "flows")
    assert (flow["dst_ip"], flow["dst_ip_source"], flow["initiator"]) == (ABROAD, "proxy", "internal")


def test_a_request_nobody_names_is_resolved_after_the_wait(tmp_path: Path, engine) -> None:  # type: ignore[no-untyped-def]
    cfg = config(tmp_path, address_wait_s=0.05)
    cfg = cfg.model_copy(update={"live": cfg.live.model_copy(update={"flush_interval_s": 0.1})})
    svc = Service(cfg, tmp_path / "spool", engine, resolve={"api.example.com": ABROAD}.get)
    with svc.connect() as s:
        s.sendall(reqmod(meta={"X-Client-IP": CLIENT, "X-Transaction-ID": "9"}))
        assert Reader(s).answer().status == 204
    deadline = time.monotonic() + 30
    while not rows(svc.out, "flows"):         # the recorder's tick resolves it while the service runs
        assert time.monotonic() < deadline, "the held request was never written"
        time.sleep(0.05)
    [flow] = rows(svc.out, "flows")
    assert (flow["dst_ip"], flow["dst_ip_source"]) == (ABROAD, "resolved")
    svc.stop()


def test_https_is_named_by_sni_and_port_443(service: Service) -> None:
    hdr = b"POST https://api.example.com/v1/u HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: 3\r\n\r\n"
    with service.connect() as s:
        s.sendall(reqmod(b"abc", hdr=hdr, meta={"X-Client-IP": CLIENT, "X-SNI": "sni.example.net",
                                                 "X-Server-IP": ABROAD}))
        assert Reader(s).answer().status == 204
    service.stop()
    [flow] = rows(service.out, "flows")
    assert (flow["server_name"], flow["dst_port"], flow["encrypted"]) == ("sni.example.net", 443, True)


def test_a_body_the_proxy_abandons_midway_is_recorded_as_far_as_it_came(service: Service) -> None:
    # Squid aborts the ICAP transaction when the origin answers before the request body ended; what it
    # had sent by then did leave: recorded, marked truncated.
    head = icap_head("REQMOD", [("req-hdr", http_request(BODY * 4))], "req-body", allow_204=False,
                     meta={"X-Client-IP": CLIENT, "X-Server-IP": ABROAD})
    with service.connect() as s:
        s.sendall(head + chunked(BODY)[:-5])         # one whole body's chunks, not the last-chunk
        assert Reader(s).until(b"\r\n\r\n").startswith(b"ICAP/1.0 200 OK\r\n")    # the echo had begun
    service.stop()
    [flow] = rows(service.out, "flows")
    assert flow["inspected"] and {"resident_id_cn", "mobile_cn", "person_name"} <= _types(service.out)
    truncated = [a for a in rows(service.out, "anomalies") if a["name"] == "body_truncated"]
    assert [a["detail"] for a in truncated] == [f"message 0: {len(BODY)} bytes handed over"]
