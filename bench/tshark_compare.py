"""The agent's dissection against tshark's, on the same capture files (issue 10 §2).

    python bench/tshark_compare.py                       # all of ../shared/pcaps/real, table on stdout
    python bench/tshark_compare.py a.pcap b.pcapng --misses

tshark reads each file once (`-T json`, only the fields below); the agent runs each file on its own through
`run_capture` (one detector engine built once, inline), and its flow records are read back. Figures:

- streams: tshark's TCP/UDP streams (`tcp.stream`/`udp.stream`; headers quoted in ICMP errors left out).
  Per 5-tuple, min(tshark streams, agent flows) are matched — or more, as many as have their first packet
  inside an agent flow's time span: tshark also opens a stream on a malformed SYN in the middle of a
  connection, which the agent drops, rightly, as a bad header (min alone gives the first review's 344).
- bytes: per 5-tuple and direction, the agent's bytes equal tshark's payload as the union of sequence ranges
  (SYN data starts at seq+1; retransmitted bytes count once; UDP: the datagrams' payloads). "Holes aside"
  also accepts a 5-tuple whose flows report `missed_bytes`: the agent counts a hole in the sequence span
  (Zeek's definition), tshark has no bytes for it.
- SNI: each (5-tuple, ClientHello SNI) tshark shows, found as the flow's `server_name`.
- Host: each distinct (5-tuple, HTTP Host) tshark shows over TCP (port stripped, lower case; IP literals
  and values that are no host name, such as a fuzzer's "%s", left out: they never name a flow), found as
  the flow's `server_name`.
- wrong names: agent flows whose `server_name` tshark shows nowhere for that flow — not as its SNI or Host,
  nor as a DNS name answered with the server's address.
- requests: per capture, the agent's `requests` against tshark's HTTP-over-TCP request count (meaningful
  for HTTP-only captures: the agent also counts DNS queries and other protocols' requests).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from agent.config import load_agent_config
from agent.pipeline import build_engine, run_capture

log = logging.getLogger("bench.tshark_compare")

ROOT = Path(__file__).resolve().parent.parent
REAL = ROOT.parent / "shared" / "pcaps" / "real"
FIELDS = ("frame.time_epoch", "ip.src", "ip.dst", "ipv6.src", "ipv6.dst", "tcp.srcport", "tcp.dstport",
          "udp.srcport", "udp.dstport", "tcp.len", "udp.length", "tcp.stream", "udp.stream", "tcp.seq_raw",
          "tcp.flags.syn", "icmp.type", "icmpv6.type", "http.host", "http.request.method",
          "tls.handshake.extensions_server_name", "dns.flags.response", "dns.qry.name", "dns.resp.name",
          "dns.a", "dns.aaaa")
TSHARK_TIMEOUT_S = 120
TIME_SLACK_S = 1e-3     # tshark prints the epoch with nanosecond digits, the records hold microseconds
_HOST_RE = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*")

End = tuple[str, int]                   # (address, port)
Key = tuple[str, frozenset[End]]        # (transport, both ends): a conversation, either direction
Packet = Mapping[str, list[str]]


@dataclass(frozen=True)
class CaptureAgreement:
    """One capture's figures and the misses behind them (each miss a short readable line)."""

    name: str
    streams: int = 0
    matched: int = 0
    bytes_exact: int = 0
    bytes_holes_aside: int = 0
    sni: int = 0
    sni_agree: int = 0
    hosts: int = 0
    hosts_agree: int = 0
    wrong_names: int = 0
    requests_tshark: int = 0
    requests_agent: int = 0
    misses: tuple[str, ...] = ()


@dataclass(frozen=True)
class Agreement:
    captures: tuple[CaptureAgreement, ...]
    totals: Mapping[str, int] = field(default_factory=dict)

    def capture(self, name: str) -> CaptureAgreement:
        return next(c for c in self.captures if c.name == name)


# -- tshark ------------------------------------------------------------------------------------------------

def tshark_version(tshark: str = "tshark") -> str:
    out = subprocess.run([tshark, "--version"], capture_output=True, text=True, check=True).stdout
    return out.splitlines()[0] if out else "?"


def tshark_packets(path: Path, tshark: str = "tshark") -> list[Packet]:
    """Per frame, the FIELDS present. A file tshark calls damaged (exit 2) gives what it read before."""
    # Headers as soon as they are complete: a request whose body never ends still has its Host.
    args = [tshark, "-n", "-r", str(path), "-o", "http.desegment_body:FALSE", "-T", "json"]
    args += [a for f in FIELDS for a in ("-e", f)]
    done = subprocess.run(args, capture_output=True, timeout=TSHARK_TIMEOUT_S, check=False)
    if done.returncode not in (0, 2):
        raise RuntimeError(f"tshark exit {done.returncode} on {path.name}: {done.stderr[-300:]!r}")
    text = done.stdout.decode("utf-8", "replace").strip()
    return [p["_source"]["layers"] for p in json.loads(text)] if text else []


# -- the agent ---------------------------------------------------------------------------------------------

def agent_flows(paths: Sequence[Path]) -> dict[str, list[dict[str, Any]]]:
    """Flow records of the agent, each capture run on its own (so flows never span files)."""
    out: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="tshark-compare-") as tmp:
        key = Path(tmp) / "subject.key"
        config = load_agent_config(None, agent_id="tshark-compare", subject_key_file=str(key),
                                   detector_workers=0)
        engine = build_engine(config)
        for i, path in enumerate(paths):
            spool = Path(tmp) / f"run{i}"
            records = run_capture([path], config, spool, engine=engine)
            out[path.name] = [row for f in sorted(Path(records).glob("flows/*.parquet"))
                              for row in pq.read_table(f).to_pylist()]
    return out


# -- comparison --------------------------------------------------------------------------------------------

def _last(p: Packet, name: str) -> str:
    v = p.get(name)
    return v[-1] if v else ""     # tunnels list outer first: the innermost header is the flow's


def _host_name(host: str) -> str | None:
    """The name a Host header gives a flow; None for an IP literal or a value no host is called."""
    h = host.strip().lower()
    if h.startswith("["):
        return None               # [v6]:port
    if h.count(":") == 1:
        h = h.split(":", 1)[0]
    h = h.rstrip(".")
    try:
        ip_address(h)
        return None
    except ValueError:
        return h if _HOST_RE.fullmatch(h) else None


def _union(ranges: list[tuple[int, int]]) -> int:
    total, cur_s, cur_e = 0, None, 0
    for s, e in sorted(ranges):
        if cur_s is None or s > cur_e:
            total += cur_e - (cur_s if cur_s is not None else cur_e)
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    return total + (cur_e - cur_s if cur_s is not None else 0)


@dataclass
class _Conv:
    streams: dict[str, float] = field(default_factory=dict)   # stream -> time of its first packet
    ranges: dict[tuple[End, str], list[tuple[int, int]]] = field(default_factory=lambda: defaultdict(list))
    udp_bytes: Counter[End] = field(default_factory=Counter)
    snis: set[str] = field(default_factory=set)
    hosts: set[str] = field(default_factory=set)    # as names (_host_name), over TCP only

    def payload(self, end: End) -> int:
        total = self.udp_bytes[end]
        for (e, _stream), ranges in self.ranges.items():
            if e == end and ranges:
                base = ranges[0][0]   # sequence numbers relative to the stream's first, across the wrap
                rel = [((s - base + (1 << 31)) % (1 << 32) - (1 << 31), n) for s, n in ranges]
                total += _union([(s, s + n) for s, n in rel])
        return total


def _conversations(packets: Iterable[Packet]) -> tuple[dict[Key, _Conv], dict[str, set[str]], int]:
    convs: dict[Key, _Conv] = defaultdict(_Conv)
    dns_names: dict[str, set[str]] = defaultdict(set)     # address -> names a DNS answer gave it
    requests = 0
    for p in packets:
        if "tcp.stream" in p:
            requests += len(p.get("http.request.method", ()))     # SSDP and the like ride UDP
        if p.get("dns.flags.response", ["0"])[-1] in ("1", "True"):
            names = set(p.get("dns.qry.name", [])) | set(p.get("dns.resp.name", []))
            for addr in p.get("dns.a", []) + p.get("dns.aaaa", []):
                dns_names[addr] |= {n.lower().rstrip(".") for n in names}
        if "icmp.type" in p or "icmpv6.type" in p:
            continue                  # a header quoted in an ICMP error is not the flow's traffic
        src, dst = _last(p, "ip.src") or _last(p, "ipv6.src"), _last(p, "ip.dst") or _last(p, "ipv6.dst")
        if _last(p, "tcp.stream"):
            proto, stream = "tcp", _last(p, "tcp.stream")
            sport, dport = int(_last(p, "tcp.srcport")), int(_last(p, "tcp.dstport"))
        elif _last(p, "udp.stream"):
            proto, stream = "udp", _last(p, "udp.stream")
            sport, dport = int(_last(p, "udp.srcport")), int(_last(p, "udp.dstport"))
        else:
            continue
        conv = convs[(proto, frozenset({(src, sport), (dst, dport)}))]
        conv.streams.setdefault(stream, float(_last(p, "frame.time_epoch") or 0))
        if proto == "tcp":
            n = int(_last(p, "tcp.len") or 0)
            if n:
                syn = _last(p, "tcp.flags.syn") in ("1", "True")
                conv.ranges[((src, sport), stream)].append((int(_last(p, "tcp.seq_raw")) + syn, n))
        else:
            conv.udp_bytes[(src, sport)] += max(int(_last(p, "udp.length") or 8) - 8, 0)
        conv.snis |= {s.lower().rstrip(".") for s in p.get("tls.handshake.extensions_server_name", [])}
        if proto == "tcp":
            conv.hosts |= {h for h in map(_host_name, p.get("http.host", [])) if h}
    return convs, dns_names, requests


def compare(name: str, packets: Sequence[Packet], flows: Sequence[Mapping[str, Any]]) -> CaptureAgreement:
    convs, dns_names, requests = _conversations(packets)
    agent: dict[Key, list[Mapping[str, Any]]] = defaultdict(list)
    for f in flows:
        pair = frozenset({(f["src_ip"], f["src_port"]), (f["dst_ip"], f["dst_port"])})
        agent[(f["transport"], pair)].append(f)
    c: Counter[str] = Counter()
    misses: list[str] = []
    for key, conv in sorted(convs.items(), key=lambda kv: sorted(kv[0][1])):
        mine = agent.get(key, [])
        label = f"{key[0]} " + " <-> ".join(f"{a}:{p}" for a, p in sorted(key[1]))
        c["streams"] += len(conv.streams)
        spans = [(f["ts_start"].timestamp() - TIME_SLACK_S, f["ts_end"].timestamp() + TIME_SLACK_S)
                 for f in mine]
        covered = sum(any(a <= t <= b for a, b in spans) for t in conv.streams.values())
        matched = max(min(len(conv.streams), len(mine)), covered)
        c["matched"] += matched
        if matched < len(conv.streams):
            misses.append(f"flow: {label}: {len(conv.streams) - matched} of tshark's {len(conv.streams)} "
                          f"stream(s) in none of the agent's {len(mine)} flow(s)")
        names = {f["server_name"] for f in mine if f["server_name"]}
        for sni in sorted(conv.snis):
            c["sni"] += 1
            c["sni_agree"] += sni in names
            if sni not in names:
                misses.append(f"sni: {label}: tshark {sni!r}, agent {sorted(names)}")
        for want in sorted(conv.hosts):
            c["hosts"] += 1
            c["hosts_agree"] += want in names
            if want not in names:
                misses.append(f"host: {label}: tshark {want!r}, agent {sorted(names)}")
        if not matched:
            continue
        got: Counter[End] = Counter()
        for f in mine:
            got[(f["src_ip"], f["src_port"])] += f["bytes_out"]
            got[(f["dst_ip"], f["dst_port"])] += f["bytes_in"]
        ends = sorted(key[1])
        want_bytes = {e: conv.payload(e) for e in ends}
        exact = all(got[e] == want_bytes[e] for e in ends)
        holes = sum(f["missed_bytes"] for f in mine)
        c["bytes_exact"] += matched * exact
        c["bytes_holes_aside"] += matched * (exact or holes > 0)
        if not exact:
            misses.append(f"bytes: {label}: agent {[got[e] for e in ends]}, tshark "
                          f"{[want_bytes[e] for e in ends]}, missed_bytes {holes}")
    for key, mine in agent.items():
        seen = convs.get(key)
        shown = seen.snis | seen.hosts if seen is not None else set()
        for f in mine:
            name_ = f["server_name"]
            if not name_:
                continue
            if name_ not in shown and name_ not in dns_names.get(f["dst_ip"], set()):
                c["wrong_names"] += 1
                misses.append(f"wrong name: {f['transport']} {f['src_ip']}:{f['src_port']} -> "
                              f"{f['dst_ip']}:{f['dst_port']}: agent {name_!r}, tshark {sorted(shown)}")
    return CaptureAgreement(name=name, requests_tshark=requests,
                            requests_agent=sum(f["requests"] for f in flows), misses=tuple(misses), **c)


def run(paths: Sequence[Path], tshark: str = "tshark", jobs: int = 2) -> Agreement:
    """tshark (`jobs` processes at once) and the agent over `paths`: the figures per capture and in total."""
    paths = sorted(paths)
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        dissected = list(pool.map(lambda p: tshark_packets(p, tshark), paths))
    flows = agent_flows(paths)
    captures = tuple(compare(p.name, pk, flows[p.name]) for p, pk in zip(paths, dissected, strict=True))
    totals: Counter[str] = Counter()
    for cap in captures:
        for k, v in vars(cap).items():
            if isinstance(v, int):
                totals[k] += v
    return Agreement(captures, dict(totals))


def format_report(a: Agreement) -> str:
    t = a.totals
    lines = [
        f"flows matched      {t['matched']} of {t['streams']} tshark TCP/UDP streams",
        f"bytes exact        {t['bytes_exact']} of {t['streams']} "
        f"({t['bytes_holes_aside']} holes aside)",
        f"TLS SNI agree      {t['sni_agree']} of {t['sni']}",
        f"HTTP Host agree    {t['hosts_agree']} of {t['hosts']}",
        f"wrong server names {t['wrong_names']}",
        f"HTTP requests      agent {t['requests_agent']}, tshark {t['requests_tshark']}",
    ]
    for cap in a.captures:
        lines += [f"  {cap.name}: {m}" for m in cap.misses]
        if cap.requests_agent != cap.requests_tshark:
            lines.append(f"  {cap.name}: requests: agent {cap.requests_agent}, tshark {cap.requests_tshark}")
    return "\n".join(lines)


def captures_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*") if p.suffix in {".pcap", ".pcapng"})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="egresswatch's dissection against tshark's on capture files")
    p.add_argument("captures", nargs="*", type=Path, help=f"capture files (default: all in {REAL})")
    p.add_argument("--tshark", default="tshark")
    p.add_argument("--jobs", type=int, default=2, help="tshark processes at once")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    print(tshark_version(args.tshark))
    print(format_report(run(args.captures or captures_in(REAL), args.tshark, args.jobs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
