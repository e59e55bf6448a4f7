"""Live capture on a real interface (`lo`: always there, root or CAP_NET_RAW needed), long-flow intervals,
the spool cap, and a clean stop of the real `egress-agent run --iface` on SIGINT.

The end-to-end live tests through network namespaces are in tests/live/. Here the capture point is the
loopback interface: the client is 127.0.0.1 (declared internal), the server 127.0.0.2 (not internal, no
geo-IP country: counted as cross-border), so the agent inspects what the client posts.
"""

from __future__ import annotations

import ctypes.util
import hashlib
import http.server
import json
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from stdnum.cn import ric

from agent.anomalies import AnomalySink
from agent.config import load_agent_config
from agent.decode import Packet
from agent.flows import Flow, FlowContext, FlowTable, InternalNetworks
from agent.live import LiveCaptureError, LiveSource
from agent.records import FlowRecord
from agent.spool import Spool
from tests.conftest import BIN

SERVER = "127.0.0.2"


def _can_capture() -> str | None:
    try:
        socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3)).close()
    except PermissionError:
        return "live capture needs root or CAP_NET_RAW"
    except OSError as e:
        return f"no AF_PACKET sockets here: {e}"
    return None


needs_capture = pytest.mark.skipif(_can_capture() is not None, reason=_can_capture() or "")
needs_libpcap = pytest.mark.skipif(ctypes.util.find_library("pcap") is None,
                                   reason="--bpf compiles filters with libpcap, which is not installed")


class Sink(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def sink() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer((SERVER, 0), Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def rid(n: int) -> str:
    first17 = f"33010619{80 + n % 20:02d}0101{n % 1000:03d}"
    return first17 + ric.calc_check_digit(first17 + "0")


def post_people(port: int, people: range) -> None:
    for i in people:
        body = json.dumps({"customer": {"name": "张伟", "mobile": f"138{i:08d}", "idNo": rid(i)}}).encode()
        headers = {"Content-Type": "application/json", "Host": "api.partner.example"}
        req = urllib.request.Request(f"http://{SERVER}:{port}/v1/orders", data=body, method="POST",
                                     headers=headers)
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert resp.status == 200


def agent_config(tmp_path: Path, **extra: object) -> Path:
    cfg = {"agent_id": "live-test", "subject_key_file": str(tmp_path / "k.key"), "detector_workers": 1,
           "internal_networks": ["127.0.0.1/32"], "live": {"flush_interval_s": 0.5, "stats_interval_s": 0.5},
           **extra}
    path = tmp_path / "agent.yaml"
    path.write_text(json.dumps(cfg))
    return path


def rows(spool: Path, record_type: str) -> list[dict]:
    return [r for f in sorted((spool / record_type).glob("*.parquet")) for r in pq.read_table(f).to_pylist()]


# --- the source ---------------------------------------------------------------------------------------

@needs_capture
@needs_libpcap
@pytest.mark.parametrize(("iface", "bpf", "needle"), [
    ("no-such0", None, "no such network interface"),
    ("lo", "tcp port banana", "--bpf 'tcp port banana'"),
])
def test_a_bad_interface_or_filter_is_one_line(iface: str, bpf: str | None, needle: str) -> None:
    with pytest.raises(LiveCaptureError) as err:
        LiveSource(iface, bpf)
    assert needle in str(err.value) and "\n" not in str(err.value)


@needs_capture
@needs_libpcap
def test_the_filter_runs_in_the_kernel_and_loopback_frames_count_once(sink: int) -> None:
    source = LiveSource("lo", bpf=f"tcp port {sink}", promiscuous=False)
    frames: list[bytes] = []
    done = threading.Event()

    def traffic() -> None:
        time.sleep(0.3)
        post_people(sink, range(1))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.sendto(b"x", (SERVER, sink))
        time.sleep(0.3)
        done.set()

    threading.Thread(target=traffic, daemon=True).start()
    deadline = time.time() + 10
    for _ts, linktype, frame in source.frames(lambda: done.is_set() or time.time() > deadline,
                                              lambda _: None):
        assert linktype == 1
        frames.append(frame)
    source.close()
    assert frames, "no frame captured"
    assert all(f[23] == 6 for f in frames)          # IPv4 protocol byte: TCP only, the UDP datagram filtered
    # On lo the kernel hands every frame out twice (outgoing, incoming); the agent keeps one.
    assert len(frames) == len(set(frames))


@needs_capture
@needs_libpcap
def test_frames_already_queued_when_the_stop_comes_are_still_read() -> None:
    # SIGINT right after the last packet: what the kernel already queued for the agent is part of the
    # capture (counted as received, never as dropped), so it must reach the pipeline, not vanish.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((SERVER, 0))
        port = probe.getsockname()[1]
    source = LiveSource("lo", bpf=f"udp dst port {port}", promiscuous=False)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            for i in range(50):
                udp.sendto(b"queued %d" % i, (SERVER, port))
        frames = [frame for _ts, _lt, frame in source.frames(lambda: True, lambda _: None)]
    finally:
        source.close()
    assert sorted(int(f.rsplit(b" ", 1)[1]) for f in frames) == list(range(50))


@needs_libpcap
def test_no_frame_outside_the_filter_is_read_however_busy_the_link_is_while_the_source_opens() -> None:
    # The filter is compiled (milliseconds) after the socket exists: a socket made for ETH_P_ALL queues
    # every frame of every interface from its creation, so frames the filter rejects would be read first.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((SERVER, 0))
        port = probe.getsockname()[1]
    stop = threading.Event()

    def noise() -> None:        # other traffic on the link while the source opens, as on a busy gateway
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            while not stop.is_set():
                udp.sendto(b"noise", (SERVER, 9))

    blaster = threading.Thread(target=noise, daemon=True)
    blaster.start()
    try:
        stray = 0
        for _ in range(5):
            source = LiveSource("lo", bpf=f"udp dst port {port}", promiscuous=False)
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                    udp.sendto(b"wanted", (SERVER, port))
                frames = [f for _ts, _lt, f in source.frames(lambda: True, lambda _: None)]
            finally:
                source.close()
            stray += sum(not f.endswith(b"wanted") for f in frames)
            assert any(f.endswith(b"wanted") for f in frames)
    finally:
        stop.set()
        blaster.join()
    assert stray == 0


# --- long flows ---------------------------------------------------------------------------------------

def test_a_long_flow_is_written_in_intervals_whose_counts_add_up() -> None:
    ended: list[tuple[str, tuple]] = []

    def on_end(flow: Flow) -> None:
        ended.append((flow.flow_id, flow.delta(0)))

    def on_interval(flow: Flow, now: float) -> None:
        on_end(flow)
        flow.next_interval(now, 0)

    ctx = FlowContext("a", InternalNetworks(["10.0.0.0/8"]), lambda f: None, on_end, AnomalySink(strict=True),
                      idle_timeout_s=1e9, on_flow_interval=on_interval)
    ft = FlowTable(ctx)
    seq = 1
    for t in range(0, 250, 10):                    # one segment every 10 s for 250 s
        ft.process(Packet(float(t), "10.0.0.5", "203.0.113.7", 6, 40000, 443, 0x10, seq, b"x" * 100, 0))
        seq += 100
        if t % 100 == 90:
            ft.cut_active(float(t), active_timeout_s=90)
    ft.flush()
    ids = [fid for fid, _ in ended]
    assert ids[1:] == [f"{ids[0]}.1", f"{ids[0]}.2"]
    assert sum(d[0] for _, d in ended) == 25 * 100          # bytes_out: every byte in exactly one interval
    assert sum(d[2] for _, d in ended) == 25                # packets_out
    assert all(d[0] > 0 for _, d in ended)


# --- the spool's cap ------------------------------------------------------------------------------------

def test_a_full_spool_drops_loudly_and_counts_what_it_dropped(tmp_path: Path, caplog) -> None:
    t = datetime(2026, 1, 1, tzinfo=UTC)
    row = FlowRecord("f", t, t, "10.0.0.1", "1.1.1.1", 1, 2, "tcp", "http", None, None, True, 1, 1, 1, 1, 0,
                     False, True, 1.0, 1)
    probe = Spool(tmp_path / "probe", "a", None).write("flows", [row] * 50)
    assert probe is not None
    cap = int(probe.stat().st_size * 2.5)          # room for two batches, not three
    spool = Spool(tmp_path / "spool", "a", None, max_bytes=cap)
    written = [spool.write("flows", [row] * 50) for _ in range(5)]
    assert [w is not None for w in written] == [True, True, False, False, False]
    assert spool.dropped_rows() == 3 * 50
    assert spool.size_bytes() <= cap
    assert "is full" in caplog.text and "NOT written" in caplog.text


# --- the whole agent, live ------------------------------------------------------------------------------

@needs_capture
@needs_libpcap
def test_sigint_flushes_every_open_flow_and_the_spool_holds_exactly_what_was_sent(tmp_path: Path,
                                                                                   sink: int) -> None:
    """No periodic flush can happen during the run (intervals of an hour): whatever the spool holds after
    the SIGINT, the stop wrote — and the agent exits on its own, with 0."""
    spool, log = tmp_path / "spool", tmp_path / "agent.log"
    cfg = agent_config(tmp_path, live={"flush_interval_s": 3600, "stats_interval_s": 3600})
    with open(log, "w") as fh:
        argv = [str(BIN / "egress-agent"), "run", "--iface", "lo", "--bpf", f"tcp port {sink}", "--config",
                str(cfg), "--out", str(spool)]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=fh, text=True)
    try:
        deadline = time.monotonic() + 60                          # a hang guard, not a measurement
        while "capturing on lo" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.05)
        post_people(sink, range(20))
        assert not list(spool.rglob("*.parquet")), "flushed before the stop: the test proves nothing"
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=120)                    # a hang guard, not a measurement
    finally:
        if proc.poll() is None:
            proc.kill()
    err = log.read_text()
    assert proc.returncode == 0, err[-2000:]
    assert "Traceback" not in err
    assert "SIGINT: stopping" in err and "stopping: writing" in err, err[-2000:]     # the stop path ran
    flows = [f for f in rows(spool, "flows") if f["dst_ip"] == SERVER]
    assert sum(f["requests"] for f in flows) == 20
    assert all(f["inspected"] and f["cross_border"] for f in flows)
    # This test's flows only: the filter's port may also be an ephemeral port of other loopback traffic.
    ours = {f["flow_id"] for f in flows}
    pi = [p for p in rows(spool, "pi_values") if p["flow_id"] in ours]
    assert len({(p["field_type"], p["value_key"]) for p in pi if p["field_type"] == "mobile_cn"}) == 20
    assert len({(p["field_type"], p["value_key"]) for p in pi if p["field_type"] == "resident_id_cn"}) == 20
    assert {p["key_id"] for p in pi} == {hashlib.sha256((tmp_path / "k.key").read_bytes()).hexdigest()[:8]}
    stats = rows(spool, "capture_stats")
    assert sum(s["packets_received"] for s in stats) > 0 and stats[-1]["source"] == "lo"
    assert sum(s["flows_ended"] for s in stats) >= len(flows)
    assert not list(spool.rglob(".*.tmp")), "a half-written file was left behind"
    assert "13800000001" not in out + err


def test_pcap_and_iface_are_exclusive_and_bpf_needs_iface(tmp_path: Path) -> None:
    cfg = load_agent_config(None)
    assert cfg.live.flush_interval_s == 30 and cfg.limits.active_timeout_s == 3600
    for args, needle in ((["--iface", "lo", "--pcap", "x.pcap"], "either --pcap"),
                         (["--pcap", "x.pcap", "--bpf", "tcp"], "needs --iface"), ([], "either --pcap")):
        proc = subprocess.run([str(BIN / "egress-agent"), "run", *args], capture_output=True, text=True,
                              cwd=tmp_path, timeout=60)
        assert proc.returncode == 2 and needle in proc.stderr, proc.stderr
