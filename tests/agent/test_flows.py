"""agent.flows + agent.reassembly: direction, sequence-space byte counts, delivery, closing, bounds."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.anomalies import AnomalySink
from agent.capture import CaptureFormatError, open_capture
from agent.decode import Decoder, Packet
from agent.flows import Flow, FlowContext, FlowTable, InternalNetworks, flow_id_for

REAL = Path(__file__).parents[2].parent / "shared" / "pcaps" / "real"
INTERNAL = ["10.0.0.0/8", "192.168.0.0/16", "fc00::/7"]
CLIENT, SERVER = "10.0.0.5", "203.0.113.7"
FLAGS = {"F": 0x01, "S": 0x02, "R": 0x04, "P": 0x08, "A": 0x10}


def pkt(seq: int, data: bytes = b"", flags: str = "A", *, out: bool = True, ts: float = 1.0,
        truncated: int = 0, sport: int = 40000, dport: int = 443, proto: int = 6) -> Packet:
    bits = sum(FLAGS[c] for c in flags)
    if out:
        return Packet(ts, CLIENT, SERVER, proto, sport, dport, bits, seq & 0xFFFFFFFF, data, truncated)
    return Packet(ts, SERVER, CLIENT, proto, dport, sport, bits, seq & 0xFFFFFFFF, data, truncated)


class Recorder:
    """A trivial session: records every callback."""

    def __init__(self, wants_data: bool = True, log: list | None = None) -> None:
        self.wants_data = wants_data
        self.in_sink = None
        self.events: list[tuple] = []
        self.log = log

    def on_data(self, data: bytes) -> None:
        self.events.append(("data", data))

    def on_gap(self, n: int) -> None:
        self.events.append(("gap", n))

    def on_datagram(self, outbound: bool, payload: bytes) -> None:
        self.events.append(("datagram", outbound, payload))

    def on_close(self) -> None:
        if self.log is not None:
            self.log.append("on_close")

    def stream(self) -> list[tuple]:
        """Delivered events with adjacent data merged (segment boundaries are not part of the contract)."""
        out: list[tuple] = []
        for ev in self.events:
            if ev[0] == "data" and out and out[-1][0] == "data":
                out[-1] = ("data", out[-1][1] + ev[1])
            else:
                out.append(ev)
        return out


def table(sink: AnomalySink | None = None, *, wants_data: bool = True, session: bool = True, **kw: object
          ) -> tuple[FlowTable, list[Flow]]:
    ended: list[Flow] = []
    ctx = FlowContext("agent-1", InternalNetworks(INTERNAL),
                      (lambda f: Recorder(wants_data)) if session else (lambda f: None), ended.append,
                      sink or AnomalySink(strict=True), **kw)  # type: ignore[arg-type]
    return FlowTable(ctx), ended


ISN = 1000
# name: (isn, [(offset from ISN+1, data, truncated)], bytes_out, missed_bytes, delivered,
#        inconsistent overlap reported)
STREAMS: dict[str, tuple[int, list[tuple[int, bytes, int]], int, int, list[tuple], bool]] = {
    "in_order": (ISN, [(0, b"hello ", 0), (6, b"world", 0)], 11, 0, [("data", b"hello world")], False),
    "reordered": (ISN, [(6, b"world", 0), (0, b"hello ", 0)], 11, 0, [("data", b"hello world")], False),
    "retransmitted": (ISN, [(0, b"hello ", 0), (0, b"hello ", 0), (6, b"world", 0), (6, b"world", 0)], 11, 0,
                      [("data", b"hello world")], False),
    "overlapping_same_data": (ISN, [(0, b"hello ", 0), (3, b"lo world", 0)], 11, 0,
                              [("data", b"hello world")], False),
    "retransmission_with_different_data": (ISN, [(0, b"hello ", 0), (0, b"HELLO ", 0), (6, b"world", 0)],
                                           11, 0, [("data", b"hello world")], True),
    "buffered_overlap_with_different_data": (ISN, [(6, b"world", 0), (4, b"o WORLD", 0), (0, b"hello ", 0)],
                                             11, 0, [("data", b"hello world")], True),
    "gap_never_filled": (ISN, [(0, b"hello ", 0), (10, b"d!", 0)], 12, 4,
                         [("data", b"hello "), ("gap", 4), ("data", b"d!")], False),
    "seq_wraparound": (0xFFFFFFFD, [(0, b"hello ", 0), (6, b"world", 0), (2, b"llo", 0)], 11, 0,
                       [("data", b"hello world")], False),
    "seq_wraparound_reordered": (0xFFFFFFFD, [(6, b"world", 0), (0, b"hello ", 0)], 11, 0,
                                 [("data", b"hello world")], False),
    "snaplen_cut_payload_counts_wire_length": (ISN, [(0, b"hel", 3), (6, b"world", 0)], 11, 3,
                                               [("data", b"hel"), ("gap", 3), ("data", b"world")], False),
    "keepalive_probe_is_not_an_overlap": (ISN, [(0, b"hello ", 0), (5, b"\0", 0), (6, b"world", 0)], 11, 0,
                                          [("data", b"hello world")], False),
}


@pytest.mark.parametrize("case", STREAMS)
def test_bytes_out_counts_sequence_space_once_and_delivers_in_order(case: str) -> None:
    isn, segments, bytes_out, missed, delivered, inconsistent = STREAMS[case]
    sink = AnomalySink()
    ft, ended = table(sink)
    ft.process(pkt(isn, flags="S"))
    ft.process(pkt(7000, flags="SA", out=False))
    for off, data, truncated in segments:
        ft.process(pkt(isn + 1 + off, data, "PA", truncated=truncated))
    ft.process(pkt(isn + 1 + bytes_out, flags="FA"))
    ft.process(pkt(7001, flags="FA", out=False))
    (flow,) = ended
    assert (flow.bytes_out, flow.bytes_in, flow.missed_bytes) == (bytes_out, 0, missed)
    assert flow.session.stream() == delivered
    assert (sink.counts["overlap_inconsistent"] == 1) is inconsistent
    assert flow.closed_by == "fin"


@pytest.mark.parametrize("case", ["in_order", "reordered", "retransmitted", "gap_never_filled",
                                  "seq_wraparound"])
def test_bytes_in_is_counted_the_same_way_but_never_delivered(case: str) -> None:
    isn, segments, bytes_in, missed, _delivered, _ = STREAMS[case]
    ft, ended = table(AnomalySink())
    ft.process(pkt(1, flags="S"))
    ft.process(pkt(isn, flags="SA", out=False))
    for off, data, truncated in segments:
        ft.process(pkt(isn + 1 + off, data, "PA", out=False, truncated=truncated))
    ft.flush()
    (flow,) = ended
    assert (flow.bytes_in, flow.bytes_out, flow.missed_bytes) == (bytes_in, 0, missed)
    assert flow.session.events == []


def test_flow_without_captured_syn_starts_at_the_first_seen_seq() -> None:
    ft, ended = table()
    ft.process(pkt(555_555, b"abc", "PA"))
    ft.process(pkt(555_558, b"def", "PA"))
    ft.flush()
    assert (ended[0].bytes_out, ended[0].missed_bytes) == (6, 0)
    assert ended[0].session.stream() == [("data", b"abcdef")]


def test_data_on_a_syn_counts_and_is_delivered_first() -> None:
    ft, ended = table()
    ft.process(pkt(ISN, b"early", "S"))  # TCP Fast Open
    ft.process(pkt(ISN + 6, b" data", "PA"))
    ft.flush()
    assert ended[0].bytes_out == 10 and ended[0].session.stream() == [("data", b"early data")]


def test_hole_is_given_up_when_buffered_bytes_exceed_the_budget() -> None:
    ft, ended = table(AnomalySink(), max_buffer_bytes=8)
    ft.process(pkt(ISN, flags="S"))
    ft.process(pkt(ISN + 1, b"ab", "PA"))
    ft.process(pkt(ISN + 5, b"efgh", "PA"))  # 2-byte hole before it; 4 bytes held
    assert ended == [] and ft.flows[next(iter(ft.flows))].session.stream() == [("data", b"ab")]
    ft.process(pkt(ISN + 9, b"ijklm", "PA"))  # 9 bytes held > 8: the hole is given up now, not at close
    flow = next(iter(ft.flows.values()))
    assert flow.session.stream() == [("data", b"ab"), ("gap", 2), ("data", b"efghijklm")]
    assert (flow.bytes_out, flow.missed_bytes) == (13, 2)


def test_session_that_stops_wanting_data_is_no_longer_fed_but_still_counted() -> None:
    ft, _ended = table()
    ft.process(pkt(ISN, flags="S"))
    ft.process(pkt(ISN + 1, b"first", "PA"))
    flow = next(iter(ft.flows.values()))
    flow.session.wants_data = False
    ft.process(pkt(ISN + 6, b"second", "PA"))
    ft.flush()
    assert flow.session.stream() == [("data", b"first")] and flow.bytes_out == 11


def test_session_not_wanting_data_gets_nothing_and_counts_still_work() -> None:
    ft, ended = table(wants_data=False)
    for off, data in [(6, b"world"), (0, b"hello ")]:
        ft.process(pkt(ISN + 1 + off, data, "PA"))
    ft.flush()
    assert ended[0].session.events == [] and ended[0].bytes_out == 11


def test_session_error_becomes_an_anomaly_and_counting_continues() -> None:
    class Broken(Recorder):
        def on_data(self, data: bytes) -> None:
            raise RuntimeError("parser bug")

    sink = AnomalySink()
    ended: list[Flow] = []
    ft = FlowTable(FlowContext("a", InternalNetworks(INTERNAL), lambda f: Broken(), ended.append, sink))
    ft.process(pkt(ISN, b"abc", "PA"))
    ft.process(pkt(ISN + 3, b"def", "PA"))
    ft.flush()
    assert ended[0].bytes_out == 6 and sink.counts["session_error"] == 1
    assert "parser bug" not in sink.records[0].detail  # exception text may quote payload


DIRECTIONS = {
    # name: (first packet: src, sport, dst, dport, flags), expected (src, sport)
    "internal_sender_is_src": (("10.0.0.5", 40000, "8.8.8.8", 53, "A"), ("10.0.0.5", 40000)),
    "internal_receiver_is_src": (("8.8.8.8", 443, "10.0.0.5", 40000, "A"), ("10.0.0.5", 40000)),
    "both_internal_syn_sender_is_src": (("10.0.0.9", 80, "10.0.0.5", 50000, "S"), ("10.0.0.9", 80)),
    "both_external_syn_ack_receiver_is_src": (("1.1.1.1", 443, "9.9.9.9", 50000, "SA"), ("9.9.9.9", 50000)),
    "neither_internal_no_syn_higher_port_is_src": (("1.1.1.1", 443, "9.9.9.9", 50000, "A"),
                                                   ("9.9.9.9", 50000)),
    "equal_ports_first_sender_is_src": (("9.9.9.9", 500, "1.1.1.1", 500, "A"), ("9.9.9.9", 500)),
    "ipv6_internal_is_src": (("2001:db8::1", 443, "fd00::5", 40000, "A"), ("fd00::5", 40000)),
}


@pytest.mark.parametrize("case", DIRECTIONS)
def test_flow_src_is_the_internal_side_else_the_initiator(case: str) -> None:
    (src, sport, dst, dport, flags), expected = DIRECTIONS[case]
    ft, ended = table()
    bits = sum(FLAGS[c] for c in flags)
    first = Packet(1.0, src, dst, 6, sport, dport, bits, 1, b"xy", 0)
    ft.process(first)
    ft.process(Packet(1.1, dst, src, 6, dport, sport, 0x10, 1, b"z", 0))
    ft.flush()
    (flow,) = ended
    assert (flow.src, flow.sport) == expected
    assert {flow.packets_out, flow.packets_in} == {1}
    out_first = (src, sport) == expected
    assert (flow.bytes_out, flow.bytes_in) == ((2, 1) if out_first else (1, 2))


def test_flow_id_is_deterministic_20_hex_chars() -> None:
    ft, ended = table()
    ft.process(pkt(1, b"x", "PA", ts=1234.5))
    ft.flush()
    fid = ended[0].flow_id
    assert len(fid) == 20 and int(fid, 16) >= 0
    assert fid == flow_id_for("agent-1", "tcp", CLIENT, 40000, SERVER, 443, 1234.5)


CLOSES = {
    "fin_from_both_sides": ([pkt(ISN, flags="S"), pkt(ISN + 1, flags="FA"), pkt(9, flags="FA", out=False)],
                            "fin"),
    "rst": ([pkt(ISN, flags="S"), pkt(9, flags="RA", out=False)], "rst"),
    "fin_from_one_side_only_ends_at_flush": ([pkt(ISN, flags="S"), pkt(ISN + 1, flags="FA")], "end"),
}


@pytest.mark.parametrize("case", CLOSES)
def test_flow_closed_by(case: str) -> None:
    packets, reason = CLOSES[case]
    ft, ended = table()
    for p in packets:
        ft.process(p)
    ft.flush()
    assert [f.closed_by for f in ended] == [reason]


def test_idle_flows_are_closed_as_capture_time_advances() -> None:
    ft, ended = table(idle_timeout_s=60.0)
    ft.process(pkt(1, b"a", ts=0.0))
    ft.process(pkt(1, b"a", ts=30.0, sport=40001))
    ft.process(pkt(1, b"b", ts=70.0, sport=40002))  # process() scans for idle flows itself
    assert [(f.sport, f.closed_by) for f in ended] == [(40000, "idle")]
    ft.expire(200.0)
    assert [f.sport for f in ended] == [40000, 40001, 40002] and len(ft) == 0


def test_least_recently_used_flow_is_evicted_at_max_flows() -> None:
    ft, ended = table(max_flows=2)
    ft.process(pkt(1, b"a", sport=1001))
    ft.process(pkt(1, b"a", sport=1002))
    ft.process(pkt(2, b"b", sport=1001))  # 1001 is now the most recently used
    ft.process(pkt(1, b"a", sport=1003))
    assert [(f.sport, f.closed_by) for f in ended] == [(1002, "evicted")]
    assert ft.stats["evicted"] == 1 and len(ft) == 2


def test_late_packets_after_close_are_ignored_but_a_new_syn_opens_a_new_flow() -> None:
    ft, ended = table()
    for p in CLOSES["fin_from_both_sides"][0]:
        ft.process(p)
    assert ft.process(pkt(ISN + 2, flags="A")) is None  # the last ACK
    assert ft.process(pkt(ISN + 1, b"late retransmission", "PA")) is None
    assert len(ft) == 0 and ft.stats["late_packets"] == 2
    assert ft.process(pkt(50_000, flags="S", ts=5.0)) is not None  # port reuse
    ft.flush()
    assert [f.closed_by for f in ended] == ["fin", "end"] and ended[0].flow_id != ended[1].flow_id


def test_on_close_runs_before_on_flow_end() -> None:
    log: list[str] = []
    ctx = FlowContext("a", InternalNetworks(INTERNAL), lambda f: Recorder(log=log),
                      lambda f: log.append("on_flow_end"), AnomalySink(strict=True))
    ft = FlowTable(ctx)
    ft.process(pkt(1, b"x"))
    ft.flush()
    assert log == ["on_close", "on_flow_end"]


def test_udp_counts_payload_lengths_and_hands_every_datagram_to_the_session() -> None:
    ft, ended = table()
    ft.process(pkt(0, b"query", proto=17, dport=53))
    ft.process(pkt(0, b"answer!", proto=17, dport=53, out=False))
    ft.process(pkt(0, b"abc", proto=17, dport=53, truncated=4))
    ft.flush()
    (flow,) = ended
    assert flow.transport == "udp" and flow.closed_by == "end"
    assert (flow.bytes_out, flow.bytes_in, flow.packets_out, flow.packets_in) == (12, 7, 2, 1)
    assert flow.session.events == [("datagram", True, b"query"), ("datagram", False, b"answer!"),
                                   ("datagram", True, b"abc")]


def test_flows_without_a_session_are_counted() -> None:
    ft, ended = table(session=False)
    ft.process(pkt(ISN, b"abc", "PA"))
    ft.process(pkt(ISN + 10, b"xyz", "PA"))
    ft.flush()
    assert (ended[0].bytes_out, ended[0].missed_bytes, ended[0].session) == (13, 7, None)


CAPTURES = sorted(p for p in REAL.glob("*") if p.suffix in {".pcap", ".pcapng"}) if REAL.is_dir() else []


@pytest.mark.skipif(not CAPTURES, reason=f"{REAL} is absent")
@pytest.mark.parametrize("capture", CAPTURES, ids=[p.name for p in CAPTURES])
def test_every_real_capture_goes_through_capture_decode_and_flows_without_an_exception(capture: Path) -> None:
    sink = AnomalySink()
    ft, ended = table(sink)
    try:
        packets = open_capture(capture, sink)
    except CaptureFormatError:
        return  # a clear error is an acceptable outcome for a file that is not a capture
    decoder = Decoder(sink)
    n = 0
    for ts, linktype, frame in packets:
        p = decoder.decode(ts, linktype, frame)
        if p is not None:
            ft.process(p)
            n += 1
    ft.flush()
    assert len(ft) == 0
    assert (n == 0) == (not ended)
    for flow in ended:
        assert flow.closed_by in {"fin", "rst", "idle", "evicted", "end"}
        assert flow.bytes_out >= 0 and flow.bytes_in >= 0 and flow.missed_bytes >= 0
        if flow.transport == "tcp" and flow.session is None:
            # Sessions are made at a flow's first payload byte: a flow without one carried none.
            assert flow.bytes_out == flow.bytes_in == 0, flow
        elif flow.transport == "tcp":
            delivered = sum(e[1] if e[0] == "gap" else len(e[1]) for e in flow.session.events)
            # Bytes sent before the first one seen (capture began mid-stream) are counted, not delivered.
            assert delivered <= flow.bytes_out or not flow.session.wants_data


@settings(max_examples=150, deadline=None)
@given(cuts=st.lists(st.integers(0, 400), max_size=12), order=st.randoms(use_true_random=False),
       dups=st.integers(0, 4), isn=st.sampled_from([0, 1000, 0xFFFFFF00, 0xFFFFFFFF]))
def test_any_order_of_overlapping_segments_counts_and_delivers_the_stream_exactly_once(
        cuts: list[int], order: random.Random, dups: int, isn: int) -> None:
    body = bytes(i % 251 for i in range(400))
    points = sorted({0, 400, *cuts})
    segs = [(a, body[a:b]) for a, b in itertools.pairwise(points)]
    segs += [(a, body[a:a + 37]) for a, _ in order.sample(segs, min(dups, len(segs)))]  # overlapping copies
    order.shuffle(segs)
    ft, ended = table()
    ft.process(pkt(isn, flags="S"))
    for off, data in segs:
        ft.process(pkt(isn + 1 + off, data, "PA"))
    ft.flush()
    (flow,) = ended
    assert (flow.bytes_out, flow.missed_bytes) == (400, 0)
    assert flow.session.stream() == [("data", body)]
