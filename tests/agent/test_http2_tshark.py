"""HTTP/2 against an oracle and into the detectors: tshark reads the same requests and authorities from a
capture of a real h2 client's bytes, and a gRPC request's PI is found through the whole chain."""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import wrpcap

from agent.anomalies import AnomalySink
from agent.protocols.http import HttpRequest
from agent.protocols.http2 import Http2Connection
from detectors.engine import Engine
from tests.agent.h2pair import H2Pair, Sent
from tests.agent.test_http2 import send_all
from tests.detectors.helpers import rid

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
PORT = 8080


def parse(transcript: list[tuple[bool, bytes]]) -> list[HttpRequest]:
    out: list[HttpRequest] = []
    conn = Http2Connection(flow_id="F", anomalies=AnomalySink(strict=True), max_body_bytes=1 << 20,
                           max_decompressed_bytes=1 << 20, on_request=out.append)
    for from_client, data in transcript:
        conn.feed(data, from_client)
    conn.close()
    return out


def write_pcap(path: Path, transcript: list[tuple[bool, bytes]]) -> None:
    """One TCP connection (handshake, then the transcript in segments of at most 1200 bytes, each acked)."""
    cli, srv = ("192.0.2.10", 40000), ("198.51.100.20", PORT)
    seq = {True: 1000, False: 5000}
    t = [1_700_000_000.0]

    def seg(from_client: bool, flags: str, data: bytes = b"") -> Ether:
        (src, sport), (dst, dport) = (cli, srv) if from_client else (srv, cli)
        # Explicit MAC addresses: scapy would otherwise try to resolve them (slowly) for each packet.
        pkt = (Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src=src, dst=dst)
               / TCP(sport=sport, dport=dport, flags=flags, seq=seq[from_client], ack=seq[not from_client]))
        if data:
            pkt = pkt / Raw(data)
        pkt.time = t[0]
        t[0] += 0.001
        seq[from_client] += len(data) + (1 if "S" in flags or "F" in flags else 0)
        return pkt

    pkts = [seg(True, "S"), seg(False, "SA"), seg(True, "A")]
    for from_client, data in transcript:
        for i in range(0, len(data), 1200):
            pkts.append(seg(from_client, "PA", data[i: i + 1200]))
            pkts.append(seg(not from_client, "A"))
    pkts += [seg(True, "FA"), seg(False, "FA"), seg(True, "A")]
    wrpcap(str(path), pkts)


def test_tshark_reads_the_same_requests_and_authorities(tmp_path: Path) -> None:
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed")
    rnd = random.Random(11)
    pair = H2Pair()
    sents = [Sent(rnd.choice(["GET", "POST"]), f"/{i}", f"svc{i % 3}.example.org",
                  [("content-type", "application/json"), ("x-big", "b" * rnd.choice([10, 20000]))],
                  body=rnd.randbytes(rnd.randint(0, 30000)), trailers=[("x-t", "1")] if i % 4 == 0 else [])
             for i in range(12)]
    send_all(pair, sents, rnd, pad=True)
    ours = parse(pair.transcript)
    pcap = tmp_path / "h2c.pcap"
    write_pcap(pcap, pair.transcript)
    out = subprocess.run(["tshark", "-n", "-r", str(pcap), "-d", f"tcp.port=={PORT},http2", "-Y",
                          "http2.type == 1 && tcp.dstport == 8080", "-T", "fields", "-E", "occurrence=a",
                          "-E", "aggregator=\x1f", "-e", "http2.header.name", "-e", "http2.header.value"],
                         capture_output=True, text=True, check=True).stdout
    authorities, methods = [], 0
    for line in out.splitlines():
        names, values = (f.split("\x1f") for f in line.split("\t"))
        for name, value in zip(names, values, strict=True):
            methods += name == ":method"
            if name == ":authority":
                authorities.append(value)
    assert methods == len(ours) == len(sents)
    assert sorted(authorities) == sorted(r.host for r in ours)


def test_pi_in_a_grpc_request_over_h2_is_found_with_its_field_path() -> None:
    id_no = rid("33010619900101123")
    person = b"\x0a\x06" + "张三".encode() + b"\x12\x12" + id_no.encode()
    message = b"\x0a" + bytes([len(person)]) + person                       # field 1: the person
    body = b"\x00" + len(message).to_bytes(4, "big") + message
    pair = H2Pair()
    sent = Sent("POST", "/people.v1.People/Create", "grpc.example.com",
                [("content-type", "application/grpc"), ("te", "trailers")], body=body)
    send_all(pair, [sent])
    (request,) = parse(pair.transcript)
    assert request.content_type == "application/grpc"
    engine = Engine.from_configs(CONFIGS, b"test-deployment-key-0123456789ab")
    hits = {(h.field_type, h.key_path) for h in engine.inspect(request.body, request.content_type).hits}
    assert ("resident_id_cn", "grpc.1.2") in hits
