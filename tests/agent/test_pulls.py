"""Pulls count (issue 10 §2, rules.md): a flow an external client opened to an internal server is
`initiator = external`; its client side names it and counts its requests, its server side's HTTP/1.x
responses are framed, paired and inspected within the flow's budgets. Internal-initiated flows are as
before."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import pytest

from agent.anomalies import AnomalySink
from agent.config import load_agent_config
from agent.decode import Packet
from agent.flows import Flow, FlowContext, FlowTable, InternalNetworks
from agent.inspection import Inspector, InspectStats
from agent.pipeline import Pipeline, run_capture_stats
from agent.protocols.http_body import HttpResponse
from agent.protocols.served import MAX_EARLY_BYTES, ServedSession
from agent.spool import Spool
from tests.agent.test_flows import Recorder
from tests.conftest import REAL_PCAPS

NMAP = REAL_PCAPS / "http_pipelined-nmap-multi-req-per-segment.pcap"
NMAP_CLIENT, NMAP_SERVER = "223.72.39.14", "192.168.182.147"     # the client is in Beijing (CN)
OVERSEAS_SG = "203.116.1.77"
SYN, ACK, PSH = 0x02, 0x10, 0x08
INTERNAL, EXTERNAL = "10.0.0.5", "203.0.113.7"


# -- who initiated ---------------------------------------------------------------------------------------

def _packet(src: str, sport: int, dst: str, dport: int, flags: int, payload: bytes = b"", proto: int = 6
            ) -> Packet:
    return Packet(1.0, src, dst, proto, sport, dport, flags, 1000, payload, 0)


def _datagram(src: str, sport: int, dst: str, dport: int) -> Packet:
    return _packet(src, sport, dst, dport, 0, b"x", proto=17)


@pytest.mark.parametrize(("name", "first", "src", "inbound"), [
    ("internal client's SYN", _packet(INTERNAL, 40000, EXTERNAL, 443, SYN), INTERNAL, False),
    ("external client's SYN", _packet(EXTERNAL, 40000, INTERNAL, 8080, SYN), INTERNAL, True),
    ("internal server's SYN-ACK (the SYN was missed)", _packet(INTERNAL, 8080, EXTERNAL, 40000, SYN | ACK),
     INTERNAL, True),
    ("external server's SYN-ACK", _packet(EXTERNAL, 443, INTERNAL, 40000, SYN | ACK), INTERNAL, False),
    ("mid-stream, external ephemeral port", _packet(EXTERNAL, 51000, INTERNAL, 80, ACK | PSH, b"x"),
     INTERNAL, True),
    ("mid-stream, internal ephemeral port", _packet(INTERNAL, 51000, EXTERNAL, 443, ACK | PSH, b"x"),
     INTERNAL, False),
    ("both internal: src is the initiator", _packet("10.0.0.9", 40000, INTERNAL, 22, SYN), "10.0.0.9", False),
    ("neither internal: src is the initiator", _packet(EXTERNAL, 40000, "198.51.100.1", 80, SYN), EXTERNAL,
     False),
    ("UDP query from abroad to an internal server", _datagram(EXTERNAL, 53000, INTERNAL, 53), INTERNAL, True),
    ("UDP answer from abroad seen first", _datagram(EXTERNAL, 53, INTERNAL, 53000), INTERNAL, False),
    ("UDP broadcast from an internal server's port", _datagram(INTERNAL, 67, "255.255.255.255", 68), INTERNAL,
     False),
    ("UDP from an internal ephemeral to a higher one", _datagram(INTERNAL, 50000, "255.255.255.255", 62976),
     INTERNAL, False),
])
def test_the_initiator_is_the_syn_sender_else_the_ephemeral_port(name: str, first: Packet, src: str,
                                                                 inbound: bool) -> None:
    ended: list[Flow] = []
    ctx = FlowContext("a", InternalNetworks(["10.0.0.0/8"]), lambda f: None, ended.append, AnomalySink())
    flow = FlowTable(ctx).process(first)
    assert flow is not None and (flow.src, flow.inbound) == (src, inbound), name


def test_an_inbound_flows_client_bytes_go_to_the_sessions_in_sink_and_its_server_bytes_to_the_session(
        ) -> None:
    class Served(Recorder):
        def __init__(self) -> None:
            super().__init__()
            self.in_sink = Recorder()

    sessions: list[Served] = []
    def make(flow: Flow) -> Served:
        sessions.append(Served())
        return sessions[-1]

    ctx = FlowContext("a", InternalNetworks(["10.0.0.0/8"]), make, lambda f: None, AnomalySink(strict=True))
    table = FlowTable(ctx)
    table.process(_packet(EXTERNAL, 40000, INTERNAL, 8080, SYN))
    table.process(Packet(1.0, INTERNAL, EXTERNAL, 6, 8080, 40000, SYN | ACK, 5000, b"", 0))
    request, response = b"GET / HTTP/1.1\r\n\r\n", b"HTTP/1.1 200 OK\r\n"
    table.process(Packet(1.1, EXTERNAL, INTERNAL, 6, 40000, 8080, ACK | PSH, 1001, request, 0))
    table.process(Packet(1.2, INTERNAL, EXTERNAL, 6, 8080, 40000, ACK | PSH, 5001, response, 0))
    (session,) = sessions
    assert session.in_sink.stream() == [("data", request)]
    assert session.stream() == [("data", response)]


# -- the session of an inbound flow ----------------------------------------------------------------------

def served(inspect: bool = True, max_body: int = 1 << 20, strict: bool = True
           ) -> tuple[ServedSession, list[HttpResponse]]:
    got: list[HttpResponse] = []
    session = ServedSession("F1", 8080, 40000, max_body_bytes=max_body, max_decompressed_bytes=1 << 20,
                            inspect=inspect, anomalies=AnomalySink(strict=strict), on_response=got.append,
                            on_dns=lambda answers: None)
    return session, got


REQUESTS = (b"GET /api/v1/employees?page=0 HTTP/1.1\r\nHost: hr-api.corp.example\r\n\r\n"
            b"HEAD /api/v1/employees HTTP/1.1\r\nHost: hr-api.corp.example\r\n\r\n"
            b"GET /api/v1/employees?page=1 HTTP/1.1\r\nHost: hr-api.corp.example\r\n\r\n")
RESPONSES = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{\"a\":1}"
             b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n"
             b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{\"b\":2}")


def test_pipelined_responses_are_paired_with_their_requests_and_handed_over_with_content() -> None:
    session, got = served()
    session.in_sink.on_data(REQUESTS)
    session.on_data(RESPONSES)
    session.on_close()
    assert [(r.number, r.method, r.target, r.body) for r in got] == [
        (0, "GET", "/api/v1/employees?page=0", b'{"a":1}'),
        (2, "GET", "/api/v1/employees?page=1", b'{"b":2}')]
    assert (session.app, session.host, session.requests, session.responses) == (
        "http", "hr-api.corp.example", 3, 3)
    assert session.inspected and not session.encrypted


def test_responses_that_arrive_before_their_request_is_framed_wait_for_it() -> None:
    session, got = served()
    session.in_sink.on_data(REQUESTS[:20])          # the client side has chosen HTTP, no request is whole
    session.on_data(RESPONSES)
    assert got == []
    session.in_sink.on_data(REQUESTS[20:])
    session.on_close()
    assert [r.body for r in got] == [b'{"a":1}', b'{"b":2}']


def test_an_uninspected_inbound_flow_is_named_and_counted_and_its_responses_are_not_read() -> None:
    session, got = served(inspect=False)
    assert not session.wants_data                   # the server direction is not even reassembled
    session.in_sink.on_data(REQUESTS)
    session.on_close()
    assert (session.app, session.host, session.requests, session.inspected, got) == (
        "http", "hr-api.corp.example", 3, False, [])


def test_an_inbound_tls_flow_is_named_from_its_client_hello_and_its_server_side_not_framed() -> None:
    session, got = served(strict=False)        # the hello is cut short: an anomaly, and TLS all the same
    session.in_sink.on_data(b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00")
    session.on_data(b"\x16\x03\x03 server flight")
    assert (session.app, session.encrypted, session.wants_data, got) == ("tls", True, False, [])


def test_a_server_that_speaks_first_is_not_framed_past_a_bound() -> None:
    session, got = served()
    session.on_data(b"220 smtp.corp.example ESMTP\r\n" * (MAX_EARLY_BYTES // 16))
    assert not session.wants_data and got == []


def test_response_bodies_share_the_flows_budget() -> None:
    session, got = served(max_body=10)
    session.in_sink.on_data(REQUESTS)
    session.on_data(RESPONSES)
    session.on_close()
    assert [(r.body, r.body_truncated) for r in got] == [(b'{"a":1}', False), (b'{"b', True)]


# -- the real nmap capture -------------------------------------------------------------------------------

class Recording:
    """An `Inspector` that only records what the pipeline hands it (the seam the pipeline depends on)."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, int, str, int, str | None]] = []

    def request(self, flow_id: str, request_no: int, target: str, body: bytes, content_type: str | None,
                at: date | None = None) -> None:
        self.messages.append((flow_id, request_no, target, len(body), content_type))

    def flow_ended(self, flow_id: str) -> None:
        pass

    def flush(self) -> None:
        pass

    def finish(self) -> InspectStats:
        return InspectStats(0, 0)

    def close(self) -> None:
        pass


def _overseas_nmap(tmp_path: Path) -> Path:
    """The real nmap capture with its client moved to an SG address: the same bytes otherwise (scapy
    recomputes the IP and TCP checksums of the rewritten packets)."""
    from scapy.all import IP, TCP, rdpcap, wrpcap

    packets = rdpcap(str(NMAP))
    for p in packets:
        for attr in ("src", "dst"):
            if getattr(p[IP], attr) == NMAP_CLIENT:
                setattr(p[IP], attr, OVERSEAS_SG)
        del p[IP].chksum
        del p[TCP].chksum
    out = tmp_path / "nmap-overseas.pcap"
    wrpcap(str(out), packets)
    return out


def _flows(out: Path) -> list[dict]:
    rel = duckdb.sql(f"SELECT * FROM read_parquet('{out}/flows/*.parquet')")
    return [dict(zip(rel.columns, r, strict=True)) for r in rel.fetchall()]


@pytest.mark.skipif(not NMAP.exists(), reason=f"{NMAP} is absent")
def test_the_real_nmap_capture_gives_its_requests_in_the_default_orientation(tmp_path: Path) -> None:
    key = tmp_path / "k.key"
    key.write_bytes(b"pulls-test-key-not-a-secret-0000")
    cfg = load_agent_config(None, agent_id="t", subject_key_file=str(key), detector_workers=0)
    run_capture_stats([NMAP], cfg, tmp_path / "out")
    (flow,) = _flows(tmp_path / "out")
    assert (flow["src_ip"], flow["dst_ip"], flow["initiator"], flow["app"], flow["requests"]) == (
        NMAP_SERVER, NMAP_CLIENT, "external", "http", 40)
    assert not flow["inspected"] and not flow["cross_border"]     # a client in Beijing: no export


@pytest.mark.skipif(not NMAP.exists(), reason=f"{NMAP} is absent")
def test_the_real_nmap_capture_with_an_overseas_client_has_its_40_responses_inspected(tmp_path: Path
                                                                                     ) -> None:
    capture = _overseas_nmap(tmp_path)
    key = tmp_path / "k.key"
    key.write_bytes(b"pulls-test-key-not-a-secret-0000")
    cfg = load_agent_config(None, agent_id="t", subject_key_file=str(key), detector_workers=0)
    from agent.capture import open_capture

    pipeline = Pipeline(cfg, Spool(tmp_path / "rec", "t", None), lambda: None, strict=True)  # type: ignore
    pipeline.inspector.close()
    recording = Recording()
    inspector: Inspector = recording
    pipeline.inspector = inspector
    pipeline.feed(open_capture(capture, pipeline.anomalies))
    pipeline.finish()
    # 40 pipelined 404 pages of 146 bytes, numbered in the flow, no query inspected (it came from abroad).
    assert [(n, target, size) for _, n, target, size, _ in recording.messages] == [
        (n, "", 146) for n in range(40)]
    assert pipeline.anomalies.records == []

    run_capture_stats([capture], cfg, tmp_path / "out")            # the real detectors: nothing is PI there
    (flow,) = _flows(tmp_path / "out")
    assert (flow["initiator"], flow["app"], flow["requests"], flow["inspected"], flow["dst_country"]) == (
        "external", "http", 40, True, "SG")
