"""The agent at the egress, live (issue: live capture, sampling, store-and-forward): `egress-agent run
--iface` inside a client network namespace, the exporter posting known exports to overseas servers, and —
where shipping is tested — a real `egress-collector serve` process.

The collector runs inside the client namespace too (the agent reaches it on that namespace's loopback, and
captures only on the veth); the test process talks to its data directory before it starts and after it
stops, and the verdict comes from `egress-collector check`, the same checks as POST /v1/checks/run.
"""

from __future__ import annotations

import ctypes.util
import datetime as dt
import json
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml

from collector.auth import new_token, token_digest
from collector.warehouse import Warehouse
from tests.conftest import BIN
from tests.live import plan
from tests.live.netns import Topology, assert_report_matches_truth

pytestmark = pytest.mark.root

FAST = {"live": {"flush_interval_s": 0.5, "stats_interval_s": 1.0, "ship_interval_s": 0.5}}


def wait_for(what: str, ok: Callable[[], bool], proc: subprocess.Popen[Any] | None = None,
             log: Path | None = None, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not ok():
        tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"exited ({proc.returncode}) before {what}:\n{tail}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}:\n{tail}")
        time.sleep(0.2)


def start_agent(t: Topology, spool: Path, log: Path, *extra: str, **config: Any) -> subprocess.Popen[Any]:
    cfg = t.write_agent_config(t.workdir / f"agent-{log.stem}.yaml", enterprise_id=plan.ENTERPRISE_ID,
                               **{**FAST, **config})
    with open(log, "w") as fh:
        argv = [str(BIN / "egress-agent"), "run", "--iface", t.client_if, "--config", str(cfg), "--out",
                str(spool), *extra]
        proc = t.run_in(t.client_ns, argv, stdout=fh, stderr=subprocess.STDOUT)
    wait_for("the agent to capture", lambda: f"capturing on {t.client_if}" in log.read_text(), proc, log)
    return proc


def stop(proc: subprocess.Popen[Any], sig: int = signal.SIGINT, timeout: float = 60) -> int:
    proc.send_signal(sig)
    return proc.wait(timeout=timeout)


def truth_of(t: Topology) -> dict[str, Any]:
    return json.loads((t.workdir / "truth.json").read_text(encoding="utf-8"))


# --- capture, SIGINT, selfcheck ---------------------------------------------------------------------

def test_a_live_capture_stopped_with_sigint_gives_the_exact_truth(netns: Topology) -> None:
    spool, log = netns.workdir / "spool", netns.workdir / "agent.log"
    # With libpcap the capture is filtered in the kernel, as an operator would run it on a busy port.
    bpf = ("--bpf", "tcp port 80") if ctypes.util.find_library("pcap") else ()
    agent = start_agent(netns, spool, log, *bpf)
    r = netns.export(netns.workdir / "truth.json")
    assert r.returncode == 0, r.stderr
    assert stop(agent) == 0, log.read_text()[-3000:]       # exits on its own (stop() waits with a hang guard)
    text = log.read_text()
    assert "Traceback" not in text
    assert "SIGINT: stopping" in text and "stopping: writing" in text, text[-3000:]   # the stop path ran
    assert not list(spool.rglob(".*.tmp"))
    stats = [r for f in spool.glob("capture_stats/*.parquet") for r in pq.read_table(f).to_pylist()]
    assert sum(s["packets_received"] for s in stats) > 0
    assert sum(s["packets_kernel_dropped"] for s in stats) == 0
    out = netns.workdir / "report"
    r = subprocess.run([str(BIN / "egress-collector"), "selfcheck", "--records", str(spool), "--filing",
                        str(netns.write_filing()), "--out", str(out), "--format", "json"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stderr[-2000:]
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert_report_matches_truth(report, truth_of(netns))


# --- shipping to a real collector -----------------------------------------------------------------------

class Collector:
    """`egress-collector serve` inside the client namespace, on a data directory that outlives it."""

    def __init__(self, t: Topology) -> None:
        self.t = t
        self.data = t.workdir / "collector-data"
        self.token = new_token()
        self.token_file = t.workdir / "agent.token"
        self.token_file.write_text(self.token + "\n")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]     # the namespace's loopback is empty: any free number will do
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = t.workdir / "collector.yaml"
        self.config.write_text(yaml.safe_dump({
            "data_dir": str(self.data), "listen": {"host": "127.0.0.1", "port": self.port},
            "enterprises": [{"enterprise_id": plan.ENTERPRISE_ID, "ftz_area": "hangzhou"}],
            "tokens": [{"name": "gw-live", "sha256": token_digest(self.token), "role": "agent",
                        "enterprise_id": plan.ENTERPRISE_ID, "agent_id": f"live-{t.id}"}],
            "schedule": {"spot_checks": None}}))
        filing = json.loads(json.dumps(plan.filing(), default=str))
        wh = Warehouse(self.data)
        try:
            wh.put_document("filing", filing["filing_id"], filing, plan.ENTERPRISE_ID, filing["ftz_area"],
                            "test")
        finally:
            wh.close()
        self.proc: subprocess.Popen[Any] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log = self.t.workdir / f"collector-{self.starts}.log"
        with open(log, "w") as fh:
            argv = [str(BIN / "egress-collector"), "serve", "--config", str(self.config)]
            self.proc = self.t.run_in(self.t.client_ns, argv, stdout=fh, stderr=subprocess.STDOUT)
        wait_for("the collector to listen", lambda: "Uvicorn running" in log.read_text(), self.proc, log)

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)

    def batches(self) -> list[dict[str, Any]]:
        wh = Warehouse(self.data)
        try:
            with wh.cursor() as cur:
                result = cur.execute("SELECT batch_id, record_type, rows, stored_rows FROM batches")
                names = [d[0] for d in result.description]
                return [dict(zip(names, r, strict=True)) for r in result.fetchall()]
        finally:
            wh.close()

    def check(self) -> dict[str, Any]:
        year = dt.datetime.now(dt.timezone(dt.timedelta(hours=8))).year
        r = subprocess.run([str(BIN / "egress-collector"), "check", "--filing-id", plan.FILING_ID, "--from",
                            f"{year}-01-01", "--to", f"{year}-12-31", "--config", str(self.config)],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode in (0, 1), r.stderr
        wh = Warehouse(self.data)
        try:
            newest = wh.list_reports([plan.FILING_ID])[0]
            found = wh.get_report(newest["report_id"])
            assert found is not None
            return json.loads(found[1])
        finally:
            wh.close()


def spooled(spool: Path) -> list[Path]:
    return sorted(p for p in spool.glob("*/*.parquet") if p.parent.name != "rejected")


def test_a_collector_down_in_the_middle_gets_every_batch_exactly_once_after_its_restart(netns: Topology
                                                                                       ) -> None:
    collector = Collector(netns)
    collector.start()
    spool, log = netns.workdir / "spool", netns.workdir / "agent.log"
    agent = start_agent(netns, spool, log, "--collector", collector.url, "--token-file",
                        str(collector.token_file))
    collector.stop()                                  # down in the middle of the agent's run
    assert netns.export(netns.workdir / "truth.json").returncode == 0
    wait_for("the flows to be spooled while the collector is down",
             lambda: any(p.parent.name == "pi_values" for p in spooled(spool)), agent, log)
    time.sleep(1.5)                                   # a few failed shipping rounds, with backoff
    assert "retry" in log.read_text() or "unreachable" in log.read_text()
    collector.start()
    wait_for("the spool to drain", lambda: not spooled(spool), agent, log, timeout=90)
    assert stop(agent) == 0, log.read_text()[-3000:]
    collector.stop()
    batches = collector.batches()
    assert batches and all(b["rows"] == b["stored_rows"] for b in batches), batches   # nothing twice
    assert not spooled(spool)
    assert_report_matches_truth(collector.check(), truth_of(netns))


def test_kill_9_of_the_agent_leaves_no_corrupt_file_and_a_restart_ships_nothing_twice(netns: Topology
                                                                                      ) -> None:
    collector = Collector(netns)
    collector.start()
    spool = netns.workdir / "spool"
    first_log, second_log = netns.workdir / "agent-1.log", netns.workdir / "agent-2.log"
    ship = ("--collector", collector.url, "--token-file", str(collector.token_file))
    # The first agent spools but cannot ship yet (its shipper waits a long interval): files pile up.
    agent = start_agent(netns, spool, first_log, *ship, live={**FAST["live"], "ship_interval_s": 3600})
    assert netns.export(netns.workdir / "truth.json").returncode == 0
    wait_for("pi_values in the spool", lambda: any(p.parent.name == "pi_values" for p in spooled(spool)),
             agent, first_log)
    time.sleep(1.0)                                   # the flush after the flows ended
    agent.kill()                                      # SIGKILL: no handler, no flush
    agent.wait(timeout=10)
    left = spooled(spool)
    assert left, "the first agent spooled nothing before it was killed"
    for path in left:                                 # every complete file is whole
        assert pq.read_table(path).num_rows > 0
    names_before = {p.name for p in left}
    # What a kill during a write leaves: a hidden partial file, which the next start removes unshipped.
    partial = spool / "flows" / ".deadbeef.parquet.tmp"
    partial.parent.mkdir(exist_ok=True)
    partial.write_bytes(b"PAR1\0\0")
    second = start_agent(netns, spool, second_log, *ship)
    wait_for("the spool to drain", lambda: not spooled(spool), second, second_log, timeout=90)
    assert stop(second) == 0, second_log.read_text()[-3000:]
    collector.stop()
    batches = collector.batches()
    shipped = {f"{b['batch_id']}.parquet" for b in batches}
    assert not partial.exists() and "deadbeef.parquet" not in shipped
    assert names_before <= shipped                     # what the killed agent spooled arrived …
    assert len(batches) == len(shipped)                # … each batch once
    assert all(b["rows"] == b["stored_rows"] for b in batches)
    report = collector.check()
    truth = truth_of(netns)
    # The flows had ended before the kill (the exporter closes its connections), so nothing was lost.
    assert_report_matches_truth(report, truth)
