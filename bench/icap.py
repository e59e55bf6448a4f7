"""ICAP benchmark: transactions/s and the latency `egress-agent icap` adds behind Squid (issue 12 §Speed).

    python bench/icap.py                                   # loads 50,100,150,200,300 tx/s, 3 repeats
    python bench/icap.py --loads 100,200 --duration 20 --repeats 3
    make bench-icap

What it measures: a client posts 10 KB PI-dense JSON bodies (about 97 distinct persons each: Chinese name,
resident ID with a valid check digit, mobile, email) through Squid (Debian squid-openssl, a plain HTTP
forward proxy on loopback) to an origin server that answers 200 (bench/icap_load.py). Each round runs one
offered load in one mode: ICAP on — Squid hands every request (REQMOD) and answer (RESPMOD) to the real
`egress-agent icap` (default settings but --out, a subject key of the run and 127.0.0.1 as the
enterprise's network), as configs/squid/egresswatch.conf does — or ICAP off (the same squid.conf without the
ICAP lines). Both modes run in the same invocation, in alternating order round after round (on/off, then
off/on), so that a busy moment of the shared machine hits both alike. Every round starts fresh servers
(Squid, and the agent when on), waits for them (port or log line), sends `--warmup` seconds of traffic,
then measures `--duration` seconds. A pair of rounds (on and off at one load) during which other processes
took more than `--max-other-pct` of a core is run again, up to `--retries` times (the JSON keeps it).

How: open-loop pacing (request i is due at t0 + i/rate whatever earlier answers did) over a bounded pool of
keep-alive connections; latency from the moment a request was due to its whole answer. Per mode and load,
the latencies of all its rounds are pooled; added latency = p50(on) − p50(off) and p99(on) − p99(off), a
difference of percentiles (requests are not paired, so there is no per-request difference), and the same
per repeat to show the spread. Also: transactions/s achieved, errors (non-200, timeouts, resets), CPU% of
each process over the measured window (the agent with its detector workers, Squid, origin, the client
itself — which must not be the bottleneck: its CPU and how late it started requests are shown) and of the
rest of the machine (other work on it). After each ICAP-on round the agent is stopped and its spool read:
it must hold one inspected flow per request and four pi_values per person sent, or the round is failed.

The limit: the highest offered load where p99 added latency ≤ 10 ms, no errors in either mode, achieved
≥ 95 % of offered and the records complete; what saturates there and above is told from CPU shares (a
single-threaded process near 100 % of a core, or the machine's two cores full). Results: a table on stdout
and bench/out/icap/results.json. Needs Squid (`apt-get install squid-openssl`) and root or a `proxy` user
for Squid to drop to.

Where the agent's time goes (py-spy, a dev dependency): during a long round (`--loads 100 --duration 60
--repeats 1`),
    py-spy record --pid <egress-agent pid> --subprocesses --threads --format raw -o spy.txt
gives the main process (ICAP loop thread, recorder thread, queue feeders) and each detector worker apart.
The JSON's `slowest_at_s_ms` (when the slowest requests of a round were due) shows whether slow answers
come in bursts (e.g. the detectors' batches) or spread out.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))   # bench/ is a folder of scripts

import icap_load
import icap_procs
import icap_report
from icap_load import Batch, LoadResult, People
from icap_procs import Children, Records

log = logging.getLogger("bench.icap")

OUT_DIR = icap_procs.ROOT / "bench" / "out" / "icap"
ORIGIN_HOST = "127.77.0.1"         # not the enterprise's network (127.0.0.1) and no country: cross-border


@dataclass
class Round:
    """One (mode, offered load, repeat): client figures, CPU seconds over the window, the records check."""

    mode: str                          # on | off
    offered: float
    repeat: int
    load: LoadResult
    cpu_s: dict[str, float] = field(default_factory=dict)      # component -> CPU seconds in the window
    cpu_max_proc_s: dict[str, float] = field(default_factory=dict)   # busiest single process per component
    records: Records | None = None
    records_expected: dict[str, int] = field(default_factory=dict)
    records_ok: bool | None = None
    squid_status: dict[str, int] = field(default_factory=dict)
    agent_exit: int | None = None
    agent_stop_s: float | None = None


class Bench:
    def __init__(self, args: argparse.Namespace, children: Children) -> None:
        self.args, self.children = args, children
        self.people = People(args.seed)
        self.origin_port = icap_procs.free_port(ORIGIN_HOST)
        self.origin = f"{ORIGIN_HOST}:{self.origin_port}"
        self.rounds: list[Round] = []
        self.discarded: list[Round] = []     # pairs run again because other work disturbed them

    def run(self) -> list[Round]:
        icap_procs.start_origin(self.children, ORIGIN_HOST, self.origin_port)
        for repeat in range(self.args.repeats):
            for k, rate in enumerate(self.args.loads):
                order = ("off", "on") if (repeat + k) % 2 == 0 else ("on", "off")
                for attempt in range(self.args.retries + 1):
                    pair = [self.round(mode, rate, repeat) for mode in order]
                    for r in pair:
                        log.info("%s", icap_report.round_line(r))
                    noisy = [r for r in pair if self._other_pct(r) > self.args.max_other_pct]
                    if not noisy or attempt == self.args.retries:
                        self.rounds += pair
                        break
                    log.info("other work took %.0f %% of a core meanwhile: this pair again",
                             max(self._other_pct(r) for r in noisy))
                    self.discarded += pair
        return self.rounds

    @staticmethod
    def _other_pct(r: Round) -> float:
        return 100 * r.cpu_s.get("other", 0.0) / (r.load.wall_s or 1.0)

    def round(self, mode: str, rate: float, repeat: int) -> Round:
        warmup = int(rate * self.args.warmup)
        batch = icap_load.prepare(self.people, warmup + int(rate * self.args.duration), self.origin,
                                  self.args.body_kb * 1024)
        folder = self.args.out / f"r{repeat}-{rate:g}-{mode}"
        shutil.rmtree(folder, ignore_errors=True)
        squid_port = icap_procs.free_port()
        agent = None
        if mode == "on":
            icap_port = icap_procs.free_port()
            agent = icap_procs.start_agent(self.children, folder / "agent", icap_port)
        squid = icap_procs.start_squid(self.children, folder / "squid", squid_port,
                                       icap_port if agent else None, not self.args.reqmod_only)
        procs = {"squid": squid.pid, "origin": self.children.procs[0].pid}
        if agent is not None:
            procs["agent"] = agent.pid
        samples: dict[str, tuple[dict[str, dict[int, float]], float]] = {}

        def window(what: str) -> None:
            samples[what] = ({name: icap_procs.cpu_tree(pid) for name, pid in procs.items()},
                             icap_procs.machine_busy_s())

        load = icap_load.run_load(batch, rate, warmup, ("127.0.0.1", squid_port), self.args.connections,
                                  window)
        result = Round(mode, rate, repeat, load)
        self._cpu(result, samples)
        self.children.stop(squid)
        result.squid_status = icap_report.squid_codes(folder / "squid" / "access.log")
        if agent is not None:
            stopping = time.monotonic()
            result.agent_exit = self.children.stop(agent)
            # It inspects what it still holds before it exits: long here = the detectors fell behind.
            result.agent_stop_s = time.monotonic() - stopping
            self._check_records(result, batch, folder / "agent" / "spool")
            if not self.args.keep_spool:    # keyed hashes only, but a round's pi_values run to megabytes
                shutil.rmtree(folder / "agent" / "spool", ignore_errors=True)
        return result

    @staticmethod
    def _cpu(result: Round, samples: dict[str, tuple[dict[str, dict[int, float]], float]]) -> None:
        if "start" not in samples or "end" not in samples:
            return
        (start, busy0), (end, busy1) = samples["start"], samples["end"]
        ours = 0.0
        for name in end:
            per = {pid: end[name][pid] - start[name].get(pid, 0.0) for pid in end[name]}
            result.cpu_s[name] = sum(per.values())
            result.cpu_max_proc_s[name] = max(per.values(), default=0.0)
            ours += result.cpu_s[name]
            if len(per) > 1:    # the agent: its main process (ICAP loop, recorder) and detector workers
                main_pid = next(iter(end[name]))
                result.cpu_s[f"{name}_main"] = per[main_pid]
                result.cpu_s[f"{name}_workers"] = result.cpu_s[name] - per[main_pid]
        result.cpu_s["client"] = result.load.client_cpu_s
        # What the rest of the machine used meanwhile (other helpers' tests): all busy time but ours.
        result.cpu_s["other"] = max(0.0, (busy1 - busy0) - ours - result.load.client_cpu_s)
        result.cpu_s["machine"] = busy1 - busy0

    @staticmethod
    def _check_records(result: Round, batch: Batch, spool: Path) -> None:
        got = icap_procs.read_records(spool)
        expected = {"flows": len(batch.requests), "inspected": len(batch.requests),
                    "requests": len(batch.requests), "pi_values": batch.persons * icap_load.VALUES_PER_PERSON}
        result.records, result.records_expected = got, expected
        result.records_ok = all(getattr(got, k) == v for k, v in expected.items())


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="egress-agent icap behind Squid: tx/s and added latency")
    p.add_argument("--loads", default="50,100,150,200,300",
                   help="offered loads, transactions/s, comma-separated")
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds per round")
    p.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds at the start of a round")
    p.add_argument("--repeats", type=int, default=3, help="rounds per mode and load")
    p.add_argument("--connections", type=int, default=32, help="client keep-alive connections to Squid")
    p.add_argument("--body-kb", type=int, default=10)
    p.add_argument("--max-other-pct", type=float, default=30.0,
                   help="a pair of rounds during which other processes used more than this %% of a core "
                        "is run again (shared machines)")
    p.add_argument("--retries", type=int, default=2, help="times a disturbed pair is run again")
    p.add_argument("--reqmod-only", action="store_true", help="no RESPMOD service in squid.conf")
    p.add_argument("--target-ms", type=float, default=10.0, help="p99 added latency allowed at the limit")
    p.add_argument("--seed", type=int, default=12)
    p.add_argument("--out", type=Path, default=OUT_DIR, help="servers' files of each round")
    p.add_argument("--keep-spool", action="store_true", help="keep the agent's records after the check")
    p.add_argument("--json", type=Path, default=None, help="results (default OUT/results.json)")
    args = p.parse_args(argv)
    args.loads = [float(x) for x in args.loads.split(",") if x.strip()]
    args.json = args.json or args.out / "results.json"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not Path(icap_procs.SQUID).exists():
        log.error("squid not found: apt-get install squid-openssl")
        return 2
    if not icap_procs.AGENT.exists():
        log.error("%s not found: make install", icap_procs.AGENT)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    children = Children()
    icap_procs.on_signals(children.stop_all)
    started = time.time()
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    bench = Bench(args, children)
    try:
        rounds = bench.run()
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130
    finally:
        children.stop_all()
    summary = icap_report.summarise(rounds, args.target_ms)
    print(icap_report.table(summary))
    doc: dict[str, Any] = {
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "machine": {"cpus": os.cpu_count(), "loadavg_before": load_before,
                    "bench_niceness": os.getpriority(os.PRIO_PROCESS, 0),
                    "loadavg_after": Path("/proc/loadavg").read_text().split()[:3],
                    "squid": icap_report.version([icap_procs.SQUID, "-v"])},
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "summary": summary,
        "rounds": [icap_report.round_doc(r) for r in rounds],
        "discarded_rounds": [icap_report.round_doc(r) for r in bench.discarded],
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    print(f"results: {args.json}")
    ok = all(r.records_ok is not False and r.agent_exit in (None, 0) for r in [*rounds, *bench.discarded])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

