"""A two-namespace network for live-capture tests, built on this machine and always torn down.

    client ns ewc-<id>                         server ns ews-<id>
    +----------------------------+  veth pair  +------------------------------------------------+
    | vewc-<id>  10.77.0.2/24    |-------------| vews-<id>  10.77.0.1/24 (the client's gateway) |
    | default via 10.77.0.1      |             |            203.116.1.77/32 (SG)                |
    | exporter.py, egress-agent  |             |            8.8.4.77/32 (US)                    |
    |                            |             |            52.28.0.77/32 (DE)                  |
    +----------------------------+             |            114.114.114.77/32 (CN)              |
                                               | http_sink.py on port 80 of all of them         |
                                               +------------------------------------------------+

The server namespace plays the egress router and every server behind it: the client routes everything to
10.77.0.1, and the server side owns the destination addresses, so no forwarding or NAT is involved and the
client's interface sees each connection whole (both directions) — the agent runs in the client namespace
with `--iface vewc-<id>`. The veths get no IPv6 addresses (addrgenmode none), so the link carries only the
tests' IPv4 traffic and ARP. Addresses and server names: tests/live/plan.py; countries are those of the
agent's geo-IP (agent/destinations.py), checked by test_netns_harness.py.

Names carry a random 6-hex-digit id, so runs never collide, and nothing is created in the host's own
namespace (the veth pair is created directly inside the two namespaces). Each topology records its owner
(pid and process start time) in /run/egresswatch-live/<id>; on setup, namespaces with our prefixes whose
owner is gone (a crashed or killed run) are removed, with any process still inside them. Teardown always
runs: processes started through `Topology.run_in` are stopped (SIGTERM, then SIGKILL), both namespaces
deleted (which deletes the veth pair), and their absence checked.

`ip netns exec NS PROG` execs PROG in place (no extra process), so a Popen's pid is PROG's own pid and a
signal sent to it reaches PROG (what stopping `egress-agent run --iface` with SIGINT needs).
Offloads stay at the kernel's defaults: frames captured on a veth's sending side may carry unfinished TCP
checksums (CHECKSUM_PARTIAL) and, with TSO/GSO, segments larger than the MTU — as on a real gateway host
capturing its own traffic; the agent must not drop such frames.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.live import plan

CLIENT_PREFIX = "ewc-"
SERVER_PREFIX = "ews-"
CLIENT_IF_PREFIX = "vewc-"
SERVER_IF_PREFIX = "vews-"
OWNERS = Path("/run/egresswatch-live")
HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PYTHON = sys.executable
SINK = HERE / "http_sink.py"
EXPORTER = HERE / "exporter.py"
IP_TIMEOUT_S = 10
START_TIMEOUT_S = 10
STOP_TIMEOUT_S = 5
_NAME = re.compile(rf"^(?:{CLIENT_PREFIX}|{SERVER_PREFIX})([0-9a-f]{{6}})$")


class NetnsError(RuntimeError):
    """A step of building or tearing down the topology failed; the message names the command."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=IP_TIMEOUT_S, check=False)
    if check and r.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {r.stderr.strip() or f'exit status {r.returncode}'}")
    return r


def namespaces() -> list[str]:
    """Names of the named network namespaces (`ip netns list`)."""
    out = _ip("netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


# ---------------------------------------------------------------------------------------------- skipping

@functools.cache
def netns_unavailable() -> str | None:
    """Why namespaces cannot be used here (not root, no `ip`, `ip netns add` or veth refused), or None."""
    if not sys.platform.startswith("linux"):
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "needs root: creates network namespaces and a veth pair"
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed"
    probe = _new_id()
    name = CLIENT_PREFIX + probe
    try:
        _claim(probe)
    except OSError as e:
        return f"cannot record the topology's owner in {OWNERS}: {e.strerror or e}"
    try:
        r = _ip("netns", "add", name, check=False)
        if r.returncode != 0:
            return f"`ip netns add` failed (unprivileged container?): {r.stderr.strip()}"
        r = _ip("-n", name, "link", "add", "p0", "type", "veth", "peer", "name", "p1", check=False)
        if r.returncode != 0:
            return f"cannot create a veth pair: {r.stderr.strip()}"
        return None
    finally:
        _ip("netns", "del", name, check=False)
        _release(probe)


def require_netns() -> None:
    """Skip the calling test, with the reason, where the topology cannot be built."""
    reason = netns_unavailable()
    if reason:
        pytest.skip(reason)


# ---------------------------------------------------------------------------------------------- ownership

def _new_id() -> str:
    return secrets.token_hex(3)


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22): pid plus this names
    one process, even after its pid is reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2:].split()[19]


def _claim(topo_id: str) -> None:
    OWNERS.mkdir(mode=0o700, parents=True, exist_ok=True)
    (OWNERS / topo_id).write_text(f"{os.getpid()} {_start_time(os.getpid())}\n")


def _release(topo_id: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        (OWNERS / topo_id).unlink()


def _owner_alive(topo_id: str) -> bool:
    try:
        pid, started = (OWNERS / topo_id).read_text().split()
    except (OSError, ValueError):
        return False
    return _start_time(int(pid)) == started


def cleanup_leftovers() -> list[str]:
    """Delete namespaces with our prefixes whose owning process is gone; returns the names deleted.

    Processes still inside such a namespace (a sink or agent of the crashed run) are killed first, by the
    pids `ip netns pids` lists for that namespace only, so the namespace really goes away."""
    removed = []
    for name in namespaces():
        m = _NAME.match(name)
        if m is None or _owner_alive(m.group(1)):
            continue
        for pid in _ip("netns", "pids", name, check=False).stdout.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        _ip("netns", "del", name, check=False)
        removed.append(name)
    for owner in OWNERS.glob("*") if OWNERS.is_dir() else ():
        if not _owner_alive(owner.name):
            with contextlib.suppress(FileNotFoundError):
                owner.unlink()
    return removed


# ---------------------------------------------------------------------------------------------- topology

def run_in(ns: str, argv: Sequence[str], **popen_kw: Any) -> subprocess.Popen[Any]:
    """Start `argv` inside namespace `ns` (`ip netns exec`; the Popen's pid is the program's own)."""
    return subprocess.Popen(["ip", "netns", "exec", ns, *argv], **popen_kw)


@dataclass
class Topology:
    id: str
    workdir: Path
    client_ns: str
    server_ns: str
    client_if: str          # the capture point: `egress-agent run --iface <client_if>` in client_ns
    server_if: str
    client_ip: str = plan.CLIENT_IP
    gateway_ip: str = plan.GATEWAY_IP
    overseas: dict[str, str] = field(default_factory=lambda: {"SG": plan.OVERSEAS_SG, "US": plan.OVERSEAS_US,
                                                              "DE": plan.OVERSEAS_DE})
    domestic_ip: str = plan.DOMESTIC_CN
    sink_log: Path | None = None
    procs: list[subprocess.Popen[Any]] = field(default_factory=list)

    # -- processes ---------------------------------------------------------------------------------------

    def run_in(self, ns: str, argv: Sequence[str], **popen_kw: Any) -> subprocess.Popen[Any]:
        """Like the module's `run_in`, and the process is stopped at teardown if still running."""
        popen_kw.setdefault("cwd", ROOT)
        proc = run_in(ns, argv, **popen_kw)
        self.procs.append(proc)
        return proc

    def run(self, ns: str, argv: Sequence[str], timeout: float = 30,
            **kw: Any) -> subprocess.CompletedProcess[str]:
        """Run `argv` in `ns` to completion; output captured as text."""
        return subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True,
                              timeout=timeout, cwd=kw.pop("cwd", ROOT), check=False, **kw)

    def start_sink(self) -> subprocess.Popen[Any]:
        """http_sink.py on port 80 of every server address; returns once it listens."""
        self.sink_log = self.workdir / "sink.jsonl"
        ready = self.workdir / "sink.ready"
        log = (self.workdir / "sink.stderr").open("w")
        proc = self.run_in(self.server_ns, [PYTHON, str(SINK), "--log", str(self.sink_log),
                                            "--port", str(plan.PORT), "--ready", str(ready)],
                           stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ready.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise NetnsError(f"http_sink.py did not start: {(self.workdir / 'sink.stderr').read_text()}")
            time.sleep(0.02)
        return proc

    def export(self, truth: Path, *options: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run exporter.py in the client namespace (options as on its command line)."""
        return self.run(self.client_ns, [PYTHON, str(EXPORTER), "--truth", str(truth), *options],
                        timeout=timeout)

    # -- what the sink saw -------------------------------------------------------------------------------

    def sink_requests(self) -> list[dict[str, Any]]:
        if self.sink_log is None or not self.sink_log.exists():
            return []
        return [json.loads(line) for line in self.sink_log.read_text(encoding="utf-8").splitlines() if line]

    def sink_counts(self) -> Counter[str]:
        """Requests per Host header."""
        return Counter(r["host"] for r in self.sink_requests())

    # -- files for the agent and the collector ---------------------------------------------------------

    def write_filing(self, path: Path | None = None) -> Path:
        path = path or self.workdir / "filing.yaml"
        path.write_text(yaml.safe_dump(plan.filing(), allow_unicode=True, sort_keys=False), encoding="utf-8")
        return path

    def write_agent_config(self, path: Path | None = None, **overrides: Any) -> Path:
        """agent.yaml for `egress-agent run --iface`: its own subject key in the workdir, 1 detector
        worker; the client address 10.77.0.2 is internal under the default internal_networks."""
        path = path or self.workdir / "agent.yaml"
        cfg = {"agent_id": f"live-{self.id}", "subject_key_file": str(self.workdir / "subject.key"),
               "detector_workers": 1, **overrides}
        path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
        return path


def _build(t: Topology) -> None:
    _ip("netns", "add", t.client_ns)
    _ip("netns", "add", t.server_ns)
    # Created inside the namespaces: the host namespace never holds either end, even for a moment.
    _ip("link", "add", t.client_if, "netns", t.client_ns, "type", "veth",
        "peer", "name", t.server_if, "netns", t.server_ns)
    for ns, dev in ((t.client_ns, t.client_if), (t.server_ns, t.server_if)):
        _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", ns, "link", "set", "dev", dev, "addrgenmode", "none")   # no IPv6 link-local chatter
    _ip("-n", t.client_ns, "addr", "add", f"{t.client_ip}/{plan.PREFIX_LEN}", "dev", t.client_if)
    _ip("-n", t.server_ns, "addr", "add", f"{t.gateway_ip}/{plan.PREFIX_LEN}", "dev", t.server_if)
    for addr in plan.SERVER_ADDRESSES:
        _ip("-n", t.server_ns, "addr", "add", f"{addr}/32", "dev", t.server_if)
    _ip("-n", t.server_ns, "link", "set", "dev", t.server_if, "up")
    _ip("-n", t.client_ns, "link", "set", "dev", t.client_if, "up")
    _ip("-n", t.client_ns, "route", "add", "default", "via", t.gateway_ip, "dev", t.client_if)


def _stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=STOP_TIMEOUT_S)


def _teardown(t: Topology) -> None:
    errors = []
    for proc in t.procs:
        try:
            _stop(proc)
        except Exception as e:   # keep going: the namespaces must go whatever happened
            errors.append(f"stopping pid {proc.pid}: {e}")
    for ns in (t.client_ns, t.server_ns):
        if ns in namespaces():
            # Whatever our processes left inside (e.g. an agent's detector workers after a SIGKILL) would
            # keep the namespace, and its veth, alive after its name is gone.
            for pid in _ip("netns", "pids", ns, check=False).stdout.split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            r = _ip("netns", "del", ns, check=False)
            if r.returncode != 0:
                errors.append(f"ip netns del {ns}: {r.stderr.strip()}")
    left = [ns for ns in (t.client_ns, t.server_ns) if ns in namespaces()]
    if not left:
        _release(t.id)
    if errors or left:
        raise NetnsError("; ".join(errors + [f"still present: {ns}" for ns in left]))


@contextlib.contextmanager
def topology(workdir: Path, *, sink: bool = True) -> Iterator[Topology]:
    """Build the client/server namespaces (and start the sink unless `sink=False`); always torn down.

    Call `require_netns()` first (the `netns` fixture does) to skip where namespaces are not available."""
    cleanup_leftovers()
    topo_id = _new_id()
    workdir.mkdir(parents=True, exist_ok=True)
    t = Topology(topo_id, workdir, CLIENT_PREFIX + topo_id, SERVER_PREFIX + topo_id,
                 CLIENT_IF_PREFIX + topo_id, SERVER_IF_PREFIX + topo_id)
    _claim(topo_id)
    try:
        _build(t)
        if sink:
            t.start_sink()
        yield t
    finally:
        _teardown(t)


def assert_report_matches_truth(report: dict[str, Any], truth: dict[str, Any]) -> None:
    """A §7 report against the exporter's truth: findings, persons, and per cross-border destination its
    country, scenario, persons and distinct values per field type."""
    assert {(f["check"], f["scenario_id"], f["subject"]) for f in report["findings"]} == {
        (f["check"], f["scenario_id"], f["subject"]) for f in truth["expected_findings"]}
    observed = report["observed"]
    assert (observed["persons_nonsensitive"], observed["persons_sensitive"]) == (
        truth["cross_border"]["persons_nonsensitive"], truth["cross_border"]["persons_sensitive"])
    dests = {d["server_name"]: d for d in observed["destinations"]}
    want = {n: d for n, d in truth["destinations"].items() if d["cross_border"]}
    assert set(dests) == set(want)
    for name, d in want.items():
        o = dests[name]
        assert (o["country"], o["scenario_id"]) == (d["country"], d["scenario_id"]), name
        assert (o["persons_nonsensitive"], o["persons_sensitive"]) == (
            d["persons_nonsensitive"], d["persons_sensitive"]), name
        assert {ft: v["distinct_values"] for ft, v in o["field_types"].items()} == {
            ft: v["distinct_values"] for ft, v in d["field_types"].items()}, name


"""How the live tests use this (the agent's `egress-agent run --iface`, DESIGN §8):

    require_netns()                                   # or the `netns` fixture of tests/live/conftest.py
    with topology(tmp_path) as t:                     # sink already listening on :80 of every server address
        filing = t.write_filing()                     # order-fulfilment consistent, crm-sync not
        cfg = t.write_agent_config()
        spool = t.workdir / "spool"
        # optional: a real collector (tests/e2e/test_collector_service.py's `server` fixture), PUT the filing,
        # and add  --collector URL --token-file F  (an `agent` token for plan.ENTERPRISE_ID)
        agent = t.run_in(t.client_ns, [str(BIN / "egress-agent"), "run", "--iface", t.client_if,
                                       "--config", str(cfg), "--out", str(spool)],
                         stdout=log, stderr=subprocess.STDOUT, text=True)
        # wait until its log shows "capturing on <t.client_if>" (agent/live.py, at INFO; poll the log file,
        # fail if the agent exits first)
        r = t.export(t.workdir / "truth.json")        # exporter.py in the client ns; rc 0, truth written
        agent.send_signal(signal.SIGINT)              # the pid is the agent's own (ip netns exec execs)
        agent.wait(timeout=60)                        # it flushes open flows and the spool, exits 0
        subprocess.run([str(BIN / "egress-collector"), "selfcheck", "--records", str(spool),
                        "--filing", str(filing), "--out", str(t.workdir / "report"), "--format", "json"])
        # exit 1 (findings); compare report.json with truth.json: per destination requests, persons,
        # field_types[*].distinct_values; observed persons_* with truth["cross_border"]; the findings with
        # truth["expected_findings"]; api.domestic-crm.example (CN) must be no export and in no finding.
        # (test_netns_harness.py's selfcheck-on-a-pcap test does exactly this comparison today.)
    # or, with a collector: POST /v1/checks/run {"filing_id": plan.FILING_ID, ...} and read the report.
"""
