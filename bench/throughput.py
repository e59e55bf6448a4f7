"""Throughput benchmark: the agent against tshark field extraction on one large mixed capture.

    python bench/throughput.py                      # ~200 MB capture in bench/out/, then both runs
    python bench/throughput.py --size-mb 50 --json bench/out/throughput.json
    python bench/throughput.py --generate-only      # just write the capture

The capture is mostly TLS bulk flows to overseas hosts, about 5 % (by bytes) plaintext HTTP JSON POSTs
carrying PI to overseas hosts, and about 10 % domestic traffic (TLS to CN addresses, DNS). It is built
fast: a few header templates per flow, patched with `struct` per packet (no scapy per packet), payloads
sliced from a random pool, written as a classic pcap by hand. TCP checksums are left 0, as in captures
taken with checksum offload; IPv4 header checksums are correct.

Each tool runs once on the same file; wall time and the child's peak RSS (os.wait4 rusage) are reported
as MB/s of capture, the agent/tshark ratio and peak RSS. The numbers are for comparing builds on one
machine, not absolute claims (see reference/engineering-notes.md for tshark's ~24 MB/s here).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from stdnum.cn import ric

log = logging.getLogger("bench.throughput")

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "bench" / "out"
AGENT = ROOT / ".venv" / "bin" / "egress-agent"
START_TS = 1_772_413_200   # 2026-03-02T09:00:00+08:00

# Overseas and domestic servers; countries checked with geoip2fast's bundled data.
OVERSEAS = [("203.116.1.%d", "SG"), ("8.8.4.%d", "US"), ("52.28.0.%d", "DE"), ("133.242.0.%d", "JP"),
            ("18.162.0.%d", "HK")]
DOMESTIC = ["114.114.114.%d", "223.5.5.%d"]
RESOLVER = "114.114.114.114"
MSS = 1448
TARGET_MIX = {"tls_overseas": 0.85, "http_pi_overseas": 0.05, "domestic": 0.10}

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华"


@dataclass
class GenStats:
    path: str
    packets: int = 0
    bytes: int = 0
    flows: dict[str, int] = field(default_factory=dict)
    wire_bytes: dict[str, int] = field(default_factory=dict)   # frame bytes by category


# ---------------------------------------------------------------------------------------------- frames

def _ip_bytes(dotted: str) -> bytes:
    return bytes(int(x) for x in dotted.split("."))


def _checksum(header: bytes) -> int:
    total = sum(struct.unpack("!10H", header))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


class Direction:
    """Header template of one direction of one flow; `frame()` patches lengths, ids, seq/ack and flags."""

    __slots__ = ("dport", "dst", "eth", "ident", "proto", "sport", "src")

    def __init__(self, src: str, dst: str, sport: int, dport: int, proto: int = 6) -> None:
        self.src, self.dst = _ip_bytes(src), _ip_bytes(dst)
        self.sport, self.dport, self.proto = sport, dport, proto
        internal = src.startswith("10.")
        client_mac, gw_mac = b"\x52\x54\x00\x14\x00\x29", b"\x00\x1c\x73\x5a\x10\x01"
        self.eth = (gw_mac + client_mac if internal else client_mac + gw_mac) + b"\x08\x00"
        self.ident = (sport * 31) & 0xFFFF

    def _ip(self, l4_len: int) -> bytes:
        self.ident = (self.ident + 1) & 0xFFFF
        hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + l4_len, self.ident, 0x4000, 64, self.proto, 0,
                          self.src, self.dst)
        return hdr[:10] + struct.pack("!H", _checksum(hdr)) + hdr[12:]

    def tcp(self, seq: int, ack: int, flags: int, payload: bytes = b"") -> bytes:
        tcp = struct.pack("!HHIIBBHHH", self.sport, self.dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 0x50,
                          flags, 64240, 0, 0)
        return self.eth + self._ip(20 + len(payload)) + tcp + payload

    def udp(self, payload: bytes) -> bytes:
        return self.eth + self._ip(8 + len(payload)) + struct.pack("!HHHH", self.sport, self.dport,
                                                                    8 + len(payload), 0) + payload


SYN, ACK, PSH_ACK, FIN_ACK, SYN_ACK = 0x02, 0x10, 0x18, 0x11, 0x12


def _client_hello(sni: str, rnd: bytes) -> bytes:
    host = sni.encode()
    sni_ext = struct.pack("!HHHBH", 0, len(host) + 5, len(host) + 3, 0, len(host)) + host
    exts = sni_ext + b"\x00\x2b\x00\x03\x02\x03\x04" + b"\x00\x0a\x00\x04\x00\x02\x00\x1d"
    body = b"\x03\x03" + rnd[:32] + b"\x20" + rnd[32:64] + b"\x00\x04\x13\x01\x13\x02\x01\x00"
    body += struct.pack("!H", len(exts)) + exts
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs


def _app_data(pool: bytes, off: int, n: int) -> bytes:
    return b"\x17\x03\x03" + struct.pack("!H", n - 5) + pool[off:off + n - 5]


# ---------------------------------------------------------------------------------------------- flows

class Mix:
    """Builds flows as generators of frames; the scheduler interleaves them."""

    def __init__(self, seed: int, max_segments: int = 400) -> None:
        self.rng = random.Random(seed)
        self.max_segments = max(8, max_segments)
        self.pool = self.rng.randbytes(1 << 17)
        self.port = 40000

    def _next_port(self) -> int:
        self.port = 1024 + (self.port - 1023) % 64000
        return self.port

    def _client(self) -> str:
        return f"10.20.{self.rng.randrange(1, 40)}.{self.rng.randrange(2, 250)}"

    def _tcp_flow(self, client: str, server: str, dport: int, out: list[bytes], inn: list[bytes]
                  ) -> tuple[Iterator[bytes], int]:
        """The flow's frames and about how many bytes they take (for the mix accounting)."""
        planned = sum(map(len, out)) + sum(map(len, inn)) + 70 * (len(out) + len(inn) + 6)
        return self._tcp_frames(client, server, dport, out, inn), planned

    def _tcp_frames(self, client: str, server: str, dport: int, out: list[bytes], inn: list[bytes]
                    ) -> Iterator[bytes]:
        """Handshake, then client segments `out` interleaved with server segments `inn`, then FIN."""
        sport = self._next_port()
        c, s = Direction(client, server, sport, dport), Direction(server, client, dport, sport)
        cs, ss = self.rng.getrandbits(32), self.rng.getrandbits(32)
        yield c.tcp(cs, 0, SYN)
        yield s.tcp(ss, cs + 1, SYN_ACK)
        cs += 1
        ss += 1
        yield c.tcp(cs, ss, ACK)
        i = j = 0
        while i < len(out) or j < len(inn):
            if i < len(out):
                yield c.tcp(cs, ss, PSH_ACK, out[i])
                cs += len(out[i])
                i += 1
            if j < len(inn):
                yield s.tcp(ss, cs, PSH_ACK, inn[j])
                ss += len(inn[j])
                j += 1
            elif i % 2 == 0:
                yield s.tcp(ss, cs, ACK)   # delayed ACK every other segment
        yield c.tcp(cs, ss, FIN_ACK)
        yield s.tcp(ss, cs + 1, FIN_ACK)
        yield c.tcp(cs + 1, ss + 1, ACK)

    def tls(self, server: str, sni: str, up_segments: int, down_segments: int) -> tuple[Iterator[bytes], int]:
        rnd = self.rng.randbytes(64)
        out = [_client_hello(sni, rnd)]
        out += [_app_data(self.pool, self.rng.randrange(0, len(self.pool) - MSS), MSS)
                for _ in range(up_segments)]
        inn = [_app_data(self.pool, self.rng.randrange(0, len(self.pool) - MSS), MSS)
               for _ in range(down_segments)]
        return self._tcp_flow(self._client(), server, 443, out, inn)

    def _person(self) -> dict[str, str]:
        r = self.rng
        born = f"{r.randrange(1965, 2001)}{r.randrange(1, 13):02d}{r.randrange(1, 29):02d}"
        body = f"330106{born}{r.randrange(1, 1000):03d}"
        return {"name": r.choice(SURNAMES) + "".join(r.choice(GIVEN) for _ in range(r.randrange(1, 3))),
                "mobile": f"1{r.choice('3578')}{r.randrange(10**8, 10**9)}",
                "idNo": body + ric.calc_check_digit(body + "0")}

    def http_pi(self, server: str, host: str) -> tuple[Iterator[bytes], int]:
        records = [self._person() for _ in range(self.rng.randrange(5, 40))]
        body = json.dumps({"records": records}, ensure_ascii=False, separators=(",", ":")).encode()
        req = (f"POST /api/v1/sync HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
        out = [req[k:k + MSS] for k in range(0, len(req), MSS)]
        resp = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"code":0}\n'
        return self._tcp_flow(self._client(), server, 80, out, [resp])

    def dns(self, name: str) -> tuple[Iterator[bytes], int]:
        return self._dns_frames(name), 200

    def _dns_frames(self, name: str) -> Iterator[bytes]:
        sport = self._next_port()
        client = self._client()
        q = struct.pack("!HHHHHH", self.rng.getrandbits(16), 0x0100, 1, 0, 0, 0)
        q += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00\x00\x01\x00\x01"
        a = q[:2] + b"\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00" + q[12:] + b"\xc0\x0c\x00\x01\x00\x01"
        a += struct.pack("!IH", 60, 4) + _ip_bytes(DOMESTIC[0] % self.rng.randrange(2, 250))
        yield Direction(client, RESOLVER, sport, 53, 17).udp(q)
        yield Direction(RESOLVER, client, 53, sport, 17).udp(a)

    def flow(self, kind: str) -> tuple[Iterator[bytes], int]:
        r = self.rng
        n, m = r.randrange(2, 250), self.max_segments
        if kind == "tls_overseas":
            fmt, cc = r.choice(OVERSEAS)
            return self.tls(fmt % n, f"bulk{n}.{cc.lower()}-cloud.example", r.randrange(m // 20, m),
                            r.randrange(m // 80, m * 3 // 10))
        if kind == "http_pi_overseas":
            fmt, cc = r.choice(OVERSEAS)
            return self.http_pi(fmt % n, f"api{n}.{cc.lower()}-partner.example")
        if r.random() < 0.2:
            return self.dns(f"www{n}.domestic.example")
        return self.tls(r.choice(DOMESTIC) % n, f"cdn{n}.domestic.example", r.randrange(m // 80, m * 3 // 8),
                        r.randrange(m // 80, m * 3 // 8))


def generate(path: Path, size_mb: float, seed: int = 7, concurrency: int = 24) -> GenStats:
    """Write a mixed capture of about `size_mb` MB to `path`; deterministic for a given seed."""
    target = int(size_mb * 1_000_000)
    # Small captures get proportionally shorter flows, so the mix holds when the file is cut at `target`.
    mix = Mix(seed, max_segments=min(400, target // (MSS * concurrency)))
    stats = GenStats(str(path), flows={k: 0 for k in TARGET_MIX}, wire_bytes={k: 0 for k in TARGET_MIX})
    active: list[tuple[str, Iterator[bytes]]] = []
    planned = {k: 0 for k in TARGET_MIX}
    ts_us = START_TS * 1_000_000
    written = 24

    def pick() -> str:
        # Start whichever category is furthest below its share of the bytes planned so far (flows are
        # long and interleaved, so bytes already written would lag behind and skew the mix).
        total = sum(planned.values()) or 1
        kind = min(TARGET_MIX, key=lambda k: planned[k] / total - TARGET_MIX[k])
        stats.flows[kind] += 1
        return kind

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb", buffering=1 << 20) as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        buf: list[bytes] = []
        while written < target:
            while len(active) < concurrency:
                kind = pick()
                frames, size = mix.flow(kind)
                planned[kind] += size
                active.append((kind, frames))
            i = mix.rng.randrange(len(active))
            kind, frames = active[i]
            frame = next(frames, None)
            if frame is None:
                active[i] = active[-1]
                active.pop()
                continue
            ts_us += 8 + len(frame) // 125   # about 1 Gbit/s of capture time
            buf.append(struct.pack("<IIII", ts_us // 1_000_000, ts_us % 1_000_000, len(frame), len(frame)))
            buf.append(frame)
            stats.packets += 1
            stats.wire_bytes[kind] += len(frame)
            written += 16 + len(frame)
            if len(buf) > 4096:
                f.write(b"".join(buf))
                buf.clear()
        f.write(b"".join(buf))
    stats.bytes = written
    return stats


# ---------------------------------------------------------------------------------------------- runs

@dataclass
class RunResult:
    tool: str
    command: list[str]
    returncode: int | None
    wall_s: float | None
    mb_per_s: float | None
    peak_rss_mb: float | None
    note: str = ""
    cpu_s: float | None = None      # user + system time of the process tree: steadier than wall time
    runs: int = 1


def measure(tool: str, cmd: list[str], capture_bytes: int, cwd: Path | None = None,
            stdout: Path | None = None) -> RunResult:
    """Run `cmd` once, stdout to /dev/null (or to `stdout`, for a caller that reads the output afterwards);
    wall time and the child's own peak RSS via os.wait4."""
    stderr_path = Path(tempfile.mkstemp(prefix=f"bench-{tool}-", suffix=".err")[1])
    start = time.perf_counter()
    with open(stdout or os.devnull, "wb") as out, stderr_path.open("wb") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=cwd)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    note = ""
    if proc.returncode != 0:
        tail = stderr_path.read_text(errors="replace").strip().splitlines()[-1:] or [""]
        note = f"exit {proc.returncode}: {tail[0][:160]}"
    stderr_path.unlink(missing_ok=True)
    # ru_maxrss is in KiB on Linux.
    return RunResult(tool, cmd, proc.returncode, round(wall, 3), round(capture_bytes / 1e6 / wall, 2),
                     round(usage.ru_maxrss / 1024, 1), note,
                     cpu_s=round(usage.ru_utime + usage.ru_stime, 3))


def median_run(runs: list[RunResult]) -> RunResult:
    """The run with the median wall time (a shared 2-core machine makes single runs noisy)."""
    ok = sorted((r for r in runs if r.wall_s is not None), key=lambda r: r.wall_s or 0.0)
    pick = ok[len(ok) // 2] if ok else runs[0]
    pick.runs = len(runs)
    return pick


def run_all(capture: Path, repeat: int = 1) -> list[RunResult]:
    """Both tools `repeat` times, interleaved so that a noisy moment hurts both alike; median of each."""
    size = capture.stat().st_size
    tshark = shutil.which("tshark")
    agent_runs: list[RunResult] = []
    tshark_runs: list[RunResult] = []
    for _ in range(max(1, repeat)):
        if AGENT.exists():
            with tempfile.TemporaryDirectory(prefix="bench-agent-") as tmp:
                # cwd=tmp so the agent's default ./egresswatch.key and spool stay out of the checkout.
                agent_runs.append(measure("egress-agent", [str(AGENT), "run", "--pcap", str(capture),
                                                           "--out", str(Path(tmp) / "spool")],
                                          size, cwd=Path(tmp)))
        if tshark:
            fields = ["ip.dst", "tcp.len", "tls.handshake.extensions_server_name", "http.host"]
            cmd = [tshark, "-r", str(capture), "-T", "fields", *[a for f in fields for a in ("-e", f)]]
            tshark_runs.append(measure("tshark", cmd, size))
    results = [median_run(agent_runs) if agent_runs else
               RunResult("egress-agent", [], None, None, None, None, f"skipped: {AGENT} not found")]
    results.append(median_run(tshark_runs) if tshark_runs else
                   RunResult("tshark", [], None, None, None, None, "skipped: tshark not installed"))
    return results


def format_table(results: list[RunResult], capture_mb: float) -> str:
    def cell(v: float | None, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    lines = [f"capture: {capture_mb:.1f} MB",
             f"{'tool':<14}{'wall s':>9}{'MB/s':>9}{'Mbit/s':>9}{'CPU s':>8}{'peak RSS MB':>13}  note",
             "-" * 72]
    for r in results:
        mbit = None if r.mb_per_s is None else r.mb_per_s * 8
        lines.append(f"{r.tool:<14}{cell(r.wall_s, '.2f'):>9}{cell(r.mb_per_s, '.1f'):>9}"
                     f"{cell(mbit, '.0f'):>9}{cell(r.cpu_s, '.2f'):>8}{cell(r.peak_rss_mb, '.0f'):>13}  "
                     f"{r.note or f'median of {r.runs}'}")
    by = {r.tool: r for r in results}
    a, t = by.get("egress-agent"), by.get("tshark")
    if a and t and a.mb_per_s and t.mb_per_s and a.returncode == 0 and t.returncode == 0:
        lines.append(f"ratio agent/tshark: {a.mb_per_s / t.mb_per_s:.2f}x")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="egress-agent vs tshark throughput on a generated capture")
    p.add_argument("--size-mb", type=float, default=200.0)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--capture", type=Path, default=None,
                   help="capture path (default bench/out/mixed-<size>MB.pcap)")
    p.add_argument("--reuse", action="store_true", help="reuse an existing capture of that name")
    p.add_argument("--generate-only", action="store_true")
    p.add_argument("--json", type=Path, default=None, help="write the results as JSON here")
    p.add_argument("--repeat", type=int, default=3, help="runs of each tool; the median is reported")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    capture = args.capture or OUT_DIR / f"mixed-{args.size_mb:g}MB.pcap"
    gen: GenStats | None = None
    if not (args.reuse and capture.exists()):
        t0 = time.perf_counter()
        gen = generate(capture, args.size_mb, args.seed)
        print(f"generated {capture} ({gen.bytes / 1e6:.1f} MB, {gen.packets} packets) "
              f"in {time.perf_counter() - t0:.1f} s; flows {gen.flows}")
    if args.generate_only:
        return 0
    results = run_all(capture, args.repeat)
    print(format_table(results, capture.stat().st_size / 1e6))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        doc = {"capture": str(capture), "capture_bytes": capture.stat().st_size,
               "generated": asdict(gen) if gen else None, "results": [asdict(r) for r in results],
               "self_rusage_maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
