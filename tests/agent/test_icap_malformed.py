"""Malformed ICAP against the running service: one ICAP error (or a close), never a hang — every read is
bounded by a socket timeout — and the next connection is served as usual; random and garbled requests
always get either valid ICAP answers or an error."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.config import load_agent_config
from agent.pipeline import build_engine
from tests.agent.icap_harness import (
    BODY,
    Reader,
    Service,
    chunked,
    config,
    http_request,
    icap_head,
    reqmod,
    rows,
)

OPTIONS = b"OPTIONS icap://127.0.0.1/egresswatch ICAP/1.0\r\nHost: x\r\n\r\n"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    tmp = tmp_path_factory.mktemp("icap")
    engine = build_engine(load_agent_config(None, subject_key_file=str(config(tmp).subject_key_file)))
    svc = Service(config(tmp, idle_timeout_s=0.3), tmp / "spool", engine)
    yield svc
    svc.stop()


def _still_serving(service: Service) -> None:
    with service.connect() as s:
        s.sendall(OPTIONS)
        assert Reader(s).answer().status == 200


def _error(service: Service, wire: bytes) -> tuple[int | None, str]:
    """Send `wire` and read the answer: (status, X-Error), or (None, "") when the service just closed."""
    with service.connect() as s:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            s.sendall(wire)
        r = Reader(s)
        try:
            a = r.answer()
        except (EOFError, ConnectionResetError):
            return None, ""
        assert r.closed()          # an error closes the connection
        return a.status, a.fields.get("x-error", "")


HDR = http_request()
CASES = {
    "bad offsets": (icap_head("REQMOD", [("req-hdr", HDR[:-7])], "req-body") + HDR[-7:] + chunked(BODY),
                    "does not end at the next offset"),
    "missing chunk terminator": (icap_head("REQMOD", [("req-hdr", HDR)], "req-body")
                                 + b"%x\r\n%bXX0\r\n\r\n" % (len(BODY), BODY), "not followed by CRLF"),
    "a chunk size that lies": (icap_head("REQMOD", [("req-hdr", HDR)], "req-body")
                               + b"10\r\nabc\r\n0\r\n\r\n" + b"x" * 20, "not followed by CRLF"),
    "a chunk-size line that never ends": (icap_head("REQMOD", [("req-hdr", HDR)], "req-body") + b"1" * 1000,
                                          "chunk-size line longer"),
    "huge headers": (b"REQMOD icap://x/s ICAP/1.0\r\n" + b"X-Pad: " + b"a" * 100_000 + b"\r\n\r\n",
                     "ICAP head longer than 65536"),
    "too many fields": (b"OPTIONS icap://x/s ICAP/1.0\r\n" + b"X-A: 1\r\n" * 200 + b"\r\n", "more than 100"),
    "huge encapsulated header": (icap_head("REQMOD", [("req-hdr", HDR[:-2] + b"X-Pad: " + b"a" * 70_000
                                                       + b"\r\n\r\n")], "req-body"), "longer than 65536"),
    "not ICAP": (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "malformed ICAP request line"),
    "preview longer than said": (icap_head("REQMOD", [("req-hdr", HDR)], "req-body", preview=4)
                                 + chunked(BODY[:10]), "preview longer"),
    "bad encapsulated HTTP": (icap_head("REQMOD", [("req-hdr", b"\x00\x01 nonsense\r\n\r\n")], "req-body")
                              + chunked(b""), "no valid HTTP start line"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_malformed_icap_gets_one_error_and_the_service_goes_on(service: Service, case: str) -> None:
    wire, reason = CASES[case]
    status, error = _error(service, wire)
    assert status == 400 and reason in error, (status, error)
    _still_serving(service)


def test_unknown_methods_and_versions(service: Service) -> None:
    assert _error(service, b"FOO icap://x/s ICAP/1.0\r\n\r\n")[0] == 405
    assert _error(service, b"OPTIONS icap://x/s ICAP/2.0\r\n\r\n")[0] == 505


def test_a_connection_closed_mid_body_is_no_crash(service: Service) -> None:
    with service.connect() as s:
        s.sendall(reqmod()[:-40])
        s.shutdown(socket.SHUT_WR)
        status = Reader(s).answer().status
    assert status == 400
    _still_serving(service)


def test_a_silent_connection_mid_request_gets_408(service: Service) -> None:
    with service.connect() as s:
        s.sendall(icap_head("REQMOD", [("req-hdr", HDR)], "req-body") + b"10\r\nabc")
        a = Reader(s).answer()             # idle_timeout_s=0.3, the socket's timeout 10 s
    assert a.status == 408
    _still_serving(service)


def test_a_head_trickled_byte_by_byte_is_cut_off(service: Service) -> None:
    """Slow-loris: each byte comes before the idle timeout, but the head as a whole may take no longer."""
    wire = b"REQMOD icap://x/s ICAP/1.0\r\n" + b"X-Slow: " + b"a" * 10_000
    with service.connect() as s:
        for i in range(len(wire)):
            try:
                s.send(wire[i:i + 1])
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(0.02)          # the slow client under test, not a wait for the service
            s.setblocking(False)
            try:
                if s.recv(1, socket.MSG_PEEK):
                    break
            except BlockingIOError:
                pass
            finally:
                s.setblocking(True)
                s.settimeout(10)
        else:
            pytest.fail("the trickled head was never cut off")
        assert Reader(s).answer().status == 408
    _still_serving(service)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.one_of(
    st.binary(max_size=400),
    st.tuples(st.integers(0, len(reqmod(BODY[:64])) - 1), st.binary(min_size=1, max_size=6)).map(
        lambda t: (w := reqmod(BODY[:64]))[:t[0]] + t[1] + w[t[0] + len(t[1]):]),
    st.lists(st.sampled_from([OPTIONS, reqmod(BODY[:32]), b"\r\n", b"0\r\n\r\n", b"REQMOD ", b"ICAP/1.0"]),
             max_size=5).map(b"".join),
))
def test_random_icap_gets_answers_or_an_error(service: Service, data: bytes) -> None:
    with service.connect() as s:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        got = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := s.recv(65536):
                got += chunk
    if got:
        assert got.startswith(b"ICAP/1.0 "), got[:40]
        statuses = [int(line[9:12]) for line in got.split(b"\r\n") if line.startswith(b"ICAP/1.0 ")]
        assert all(s in (100, 200, 204, 400, 405, 408, 505) for s in statuses)
    _still_serving(service)


def test_a_malformed_rest_after_100_continue_still_gets_its_error(service: Service) -> None:
    with service.connect() as s:
        r = Reader(s)
        s.sendall(icap_head("REQMOD", [("req-hdr", HDR)], "req-body", preview=4) + chunked(BODY[:4]))
        assert r.answer().status == 100
        s.sendall(b"zz\r\n")
        a = r.answer()
    assert a.status == 400 and "chunk-size line" in a.fields["x-error"]


def test_what_reached_the_records(service: Service) -> None:
    """Runs last in this module: malformed requests are icap anomalies, never flows of garbage."""
    service.stop()
    names = {a["name"] for a in rows(service.out, "anomalies") if a["layer"] == "icap"}
    assert {"malformed_request", "idle_timeout"} <= names
