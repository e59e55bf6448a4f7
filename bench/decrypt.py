"""Decryption benchmark: the agent against tshark on one large TLS capture with its key log (issue 11 §Speed).

    python bench/decrypt.py                          # 100 MB capture (made once, cached), then both runs
    python bench/decrypt.py --size 200 --json bench/out/decrypt.json
    python bench/decrypt.py --regenerate             # make the capture again
    python bench/decrypt.py --plaintext-baseline     # also bench/throughput.py's plaintext figures

The capture comes from bench/tls_capture.py (hypercorn + httpx on loopback, captured with dumpcap: root).
Each tool runs on the same file:
- the agent's real path: `egress-agent run --pcap F --keylog KEYS` (default config: detector workers, the
  detectors and the records included). An agent without `--keylog` runs without it and decrypts nothing;
  the report says so.
- `tshark -r F -o tls.keylog_file:KEYS -T fields -e http2.header.value -e http2.data.data …`: it decrypts,
  reassembles and prints every HTTP/2 header value and DATA payload (and HTTP/1.1 bodies).
Figures: MB/s of capture for each (wall time; CPU time beside it), the ratio agent/tshark (by wall time, and
by CPU time, which a busy shared machine disturbs less: the agent's detector workers count), requests
decrypted by each — tshark's `:method` and HTTP/1.1 request lines, the agent's `requests` of its flows with
`visibility = decrypted` — compared per TCP connection (by client port), and where the agent's time goes:
a cProfile of one more agent run with the detectors inline (detector_workers: 0) so they show in the
profile, summarised by module and by function. Numbers are for comparing builds on one machine.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pstats
import resource
import shutil
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))   # bench/ is a folder of scripts

import pyarrow.parquet as pq
import throughput
import tls_capture
from throughput import RunResult, measure, median_run

log = logging.getLogger("bench.decrypt")

ROOT = throughput.ROOT
AGENT = throughput.AGENT
CACHE_DIR = ROOT / "bench" / "out" / "decrypt"
# Method fields first: the counts are read from the first columns of each line.
TSHARK_FIELDS = ("tcp.srcport", "http2.headers.method", "http.request.method", "http2.header.value",
                 "http2.data.data", "http.file_data")
PROFILE_TOP = 12


@dataclass(frozen=True)
class Requests:
    """Requests decrypted by each tool, in total and per TCP connection (client port)."""

    sent: int
    tshark: int
    agent: int
    connections: int              # client ports where either tool saw a request
    connections_agree: int        # … where both counted the same
    agent_flows_by_visibility: dict[str, int] = field(default_factory=dict)

    @property
    def agree(self) -> bool:
        return self.tshark == self.agent and self.connections == self.connections_agree


@dataclass(frozen=True)
class Profile:
    total_s: float
    packet_loop_share: float                  # Pipeline.feed's cumulative time: the rest is start-up and end
    by_module: list[tuple[str, float]]        # (module, share of own time)
    top: list[tuple[str, float, int]]         # (function, share of own time, calls)


# -- the two tools ---------------------------------------------------------------------------------------

def agent_has_keylog() -> bool:
    """Whether this build's `egress-agent run` takes `--keylog` (the TLS work may not be merged yet)."""
    done = subprocess.run([str(AGENT), "run", "--help"], capture_output=True, text=True, check=False,
                          env={**os.environ, "COLUMNS": "200"})   # rich wraps option names otherwise
    return "--keylog" in done.stdout


def _agent_cmd(capture: Path, keylog: Path | None, spool: Path, config: Path | None = None) -> list[str]:
    cmd = [str(AGENT), "run", "--pcap", str(capture), "--out", str(spool)]
    if keylog is not None:
        cmd += ["--keylog", str(keylog)]
    if config is not None:
        cmd += ["--config", str(config)]
    return cmd


def agent_flows(spool: Path) -> list[dict[str, Any]]:
    columns = ("src_port", "requests", "visibility", "app")
    rows = []
    for f in sorted(spool.glob("flows/*.parquet")):
        table = pq.read_table(f)
        rows += table.select([c for c in columns if c in table.column_names]).to_pylist()
    return rows


# The capture is on loopback: the client (127.0.0.1) is the enterprise's side, the server (127.77.0.x) is
# outside it, and an address without a country counts as cross-border — so every flow is an export that the
# agent inspects, as on a gateway. Default settings otherwise (detector workers included).
AGENT_CONFIG = "internal_networks: [127.0.0.1/32]\n"


def run_agent(capture: Path, keylog: Path | None, size: int) -> tuple[RunResult, list[dict[str, Any]]]:
    with tempfile.TemporaryDirectory(prefix="bench-decrypt-agent-") as tmp:
        # cwd=tmp: the agent's default ./egresswatch.key stays out of the checkout; the spool goes with tmp.
        config = Path(tmp) / "agent.yaml"
        config.write_text(AGENT_CONFIG)
        cmd = _agent_cmd(capture, keylog, Path(tmp) / "spool", config)
        result = measure("egress-agent", cmd, size, cwd=Path(tmp))
        flows = agent_flows(Path(tmp) / "spool") if result.returncode == 0 else []
    return result, flows


def tshark_cmd(capture: Path, keylog: Path) -> list[str]:
    cmd = [shutil.which("tshark") or "tshark", "-n", "-r", str(capture), "-o", f"tls.keylog_file:{keylog}",
           "-T", "fields"]
    return cmd + [a for f in TSHARK_FIELDS for a in ("-e", f)]


def run_tshark(capture: Path, keylog: Path, size: int) -> tuple[RunResult, Counter[int]]:
    """One timed tshark run; its output (decrypted PI, as hex) goes to a temporary file read afterwards."""
    with tempfile.TemporaryDirectory(prefix="bench-decrypt-tshark-") as tmp:
        out = Path(tmp) / "fields.tsv"
        result = measure("tshark", tshark_cmd(capture, keylog), size, stdout=out)
        per_port: Counter[int] = Counter()
        with out.open("rb") as f:
            for line in f:
                port, h2, h1 = line.split(b"\t", 3)[:3]
                n = len([m for m in h2.split(b",") if m]) + len([m for m in h1.split(b",") if m])
                if n:
                    per_port[int(port.split(b",")[0])] += n
    return result, per_port


def compare(sent: int, tshark: Counter[int], flows: list[dict[str, Any]]) -> Requests:
    agent: Counter[int] = Counter()
    visibility: Counter[str] = Counter()
    for row in flows:
        seen = row.get("visibility") or ("encrypted" if row.get("app") == "tls" else "none")
        visibility[seen] += 1
        if seen == "decrypted" and row.get("requests"):
            agent[row["src_port"]] += row["requests"]
    ports = set(tshark) | set(agent)
    return Requests(sent=sent, tshark=sum(tshark.values()), agent=sum(agent.values()), connections=len(ports),
                    connections_agree=sum(tshark[p] == agent[p] for p in ports),
                    agent_flows_by_visibility=dict(visibility))


# -- where the agent's time goes --------------------------------------------------------------------------

def _module(filename: str, func: str, file_level: bool = False) -> str:
    """A short name for the code a profile entry belongs to: agent/… path, installed package, stdlib file, or
    the built-in function itself (a C function such as an AEAD's decrypt has no file)."""
    if filename == "~":
        return "(built-in) " + func.strip("<>").removeprefix("built-in method ").removeprefix("method ")
    if "site-packages/" in filename:
        inside = filename.split("site-packages/", 1)[1]
        return inside if file_level else inside.split("/", 1)[0]
    path = Path(filename)
    if path.is_relative_to(ROOT):
        return str(path.relative_to(ROOT))
    if filename.startswith("<frozen"):
        return "(imports)"
    return "(stdlib) " + path.name


def summarise_profile(prof: Path) -> Profile:
    stats: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = \
        pstats.Stats(str(prof)).stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in stats.values()) or 1.0
    by_module: defaultdict[str, float] = defaultdict(float)
    packet_loop = 0.0
    for (filename, _, func), (_, _, tt, ct, _) in stats.items():
        by_module[_module(filename, func)] += tt
        if func == "feed" and filename.endswith("agent/pipeline.py"):
            packet_loop += ct
    top = sorted(stats.items(), key=lambda kv: kv[1][2], reverse=True)[:PROFILE_TOP]
    return Profile(
        total_s=round(total, 2),
        packet_loop_share=round(packet_loop / total, 3),
        by_module=[(m, round(t / total, 3)) for m, t in sorted(by_module.items(), key=lambda kv: -kv[1])[:10]
                   ],
        top=[(_module(fn, func, file_level=True) + ("" if fn == "~" else f":{line}({func})"),
              round(v[2] / total, 3), v[1]) for (fn, line, func), v in top])


def profile_agent(capture: Path, keylog: Path | None) -> Profile:
    with tempfile.TemporaryDirectory(prefix="bench-decrypt-profile-") as tmp:
        config = Path(tmp) / "agent.yaml"
        config.write_text(AGENT_CONFIG + "detector_workers: 0\n")
        prof = Path(tmp) / "agent.prof"
        cmd = [str(AGENT.parent / "python"), "-m", "cProfile", "-o", str(prof),
               *_agent_cmd(capture, keylog, Path(tmp) / "spool", config)]
        subprocess.run(cmd, cwd=tmp, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        return summarise_profile(prof)


# -- report -------------------------------------------------------------------------------------------------

def format_report(doc: dict[str, Any]) -> str:
    cap, req = doc["capture"], doc["requests"]
    results = [RunResult(**r) for r in doc["results"]]
    lines = [f"TLS capture: {cap['capture_bytes'] / 1e6:.1f} MB, {cap['requests_sent']} requests sent "
             f"({', '.join(f'{k} {v}' for k, v in sorted(cap['requests'].items()))}); {cap['dumpcap']}",
             throughput.format_table(results, cap["capture_bytes"] / 1e6)]
    if doc.get("ratio_agent_tshark_cpu"):
        lines.append(f"ratio agent/tshark by CPU time: {doc['ratio_agent_tshark_cpu']:.2f}x")
    if not doc["agent_keylog"]:
        lines.append("note: this egress-agent has no --keylog option yet: it ran without the key log and "
                     "decrypted nothing")
    lines.append(f"requests decrypted: tshark {req['tshark']}, agent {req['agent']} (sent {req['sent']}); "
                 f"connections agreeing {req['connections_agree']}/{req['connections']}; "
                 f"agent flows by visibility {req['agent_flows_by_visibility']}")
    prof = doc.get("profile")
    if prof:
        lines.append(f"agent profile (inline detectors, {prof['total_s']} s under cProfile, "
                     f"{prof['packet_loop_share']:.0%} of it in the packet loop):")
        lines.append("  by module: " + ", ".join(f"{m} {s:.0%}" for m, s in prof["by_module"]))
        lines += [f"  {s:6.1%} {calls:>9} calls  {name}" for name, s, calls in prof["top"]]
    base = doc.get("plaintext_baseline")
    if base:
        lines.append("plaintext baseline (bench/throughput.py, same size):")
        lines.append(throughput.format_table([RunResult(**r) for r in base["results"]],
                                             base["capture_bytes"] / 1e6))
    return "\n".join(lines)


def plaintext_baseline(cache_dir: Path, size_mb: float, repeat: int) -> dict[str, Any]:
    """bench/throughput.py's measurement (its mixed, mostly-TLS capture without keys: the plaintext path)."""
    capture = cache_dir / f"mixed-{size_mb:g}MB.pcap"
    if not capture.exists():
        throughput.generate(capture, size_mb)
    results = throughput.run_all(capture, repeat)
    return {"capture": str(capture), "capture_bytes": capture.stat().st_size,
            "results": [asdict(r) for r in results]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="egress-agent vs tshark on one TLS capture with its key log")
    p.add_argument("--size", type=float, default=100.0, help="MB of capture (default 100)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--cache-dir", type=Path, default=CACHE_DIR, help="where the capture and key log are kept")
    p.add_argument("--regenerate", action="store_true", help="make the capture again even if cached")
    p.add_argument("--generate-only", action="store_true")
    p.add_argument("--repeat", type=int, default=1, help="runs of each tool; the median is reported")
    p.add_argument("--no-profile", action="store_true", help="skip the profiled agent run")
    p.add_argument("--plaintext-baseline", action="store_true",
                   help="also run bench/throughput.py's measurement on a plaintext capture of the same size")
    p.add_argument("--json", type=Path, default=None, help="write the results as JSON here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    if not args.generate_only and not AGENT.exists():
        log.error("bench/decrypt.py: %s not found (make install)", AGENT)
        return 2
    reason = tls_capture.check_can_capture()
    cached = all(x.is_file() for x in tls_capture.paths(args.cache_dir, args.size))
    if reason and (args.regenerate or not cached):
        log.error("bench/decrypt.py: cannot make the capture: %s", reason)
        return 2
    info = tls_capture.load_or_generate(args.cache_dir, args.size, args.seed, args.regenerate)
    log.info("capture %s (%.1f MB, %d requests)", info.pcap, info.capture_bytes / 1e6, info.requests_sent)
    if args.generate_only:
        return 0
    capture, keylog = Path(info.pcap), Path(info.keylog)
    has_keylog = agent_has_keylog()
    agent_keylog = keylog if has_keylog else None
    agent_runs, tshark_runs = [], []
    flows: list[dict[str, Any]] = []
    per_port: Counter[int] = Counter()
    for _ in range(max(1, args.repeat)):    # interleaved, so that a noisy moment hurts both alike
        result, flows = run_agent(capture, agent_keylog, info.capture_bytes)
        agent_runs.append(result)
        result, per_port = run_tshark(capture, keylog, info.capture_bytes)
        tshark_runs.append(result)
    requests = compare(info.requests_sent, per_port, flows)
    doc: dict[str, Any] = {
        "capture": {**asdict(info), "requests_sent": info.requests_sent},
        "agent_keylog": has_keylog,
        "results": [asdict(median_run(agent_runs)), asdict(median_run(tshark_runs))],
        "requests": {**asdict(requests), "agree": requests.agree},
        "profile": None if args.no_profile else asdict(profile_agent(capture, agent_keylog)),
        "plaintext_baseline": (plaintext_baseline(args.cache_dir, args.size, args.repeat)
                               if args.plaintext_baseline else None),
        "self_rusage_maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    a, t = doc["results"]
    ok = a["mb_per_s"] and t["mb_per_s"] and a["cpu_s"] and t["cpu_s"] and not a["note"] and not t["note"]
    doc["ratio_agent_tshark"] = round(a["mb_per_s"] / t["mb_per_s"], 3) if ok else None
    # By CPU time (the agent's detector workers included): steadier than wall time on a shared machine.
    doc["ratio_agent_tshark_cpu"] = round(t["cpu_s"] / a["cpu_s"], 3) if ok else None
    print(format_report(doc))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
