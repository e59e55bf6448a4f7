"""The servers of bench/icap.py as child processes: the origin, Squid (`squid -N` with a generated
squid.conf), and the real `egress-agent icap`; readiness by port or log line (never a fixed sleep); CPU
time of a process and its descendants from /proc; and a stop that every child gets on exit or Ctrl-C.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from agent.config import AgentConfig

log = logging.getLogger("bench.icap.procs")

ROOT = Path(__file__).resolve().parent.parent
# The agent installed beside the Python running the bench (a worktree shares its venv), else the checkout's.
_AGENTS = (Path(sys.executable).parent / "egress-agent", ROOT / ".venv" / "bin" / "egress-agent")
AGENT = next((p for p in _AGENTS if p.exists()), _AGENTS[1])
SQUID = shutil.which("squid") or "/usr/sbin/squid"
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 120.0            # the agent inspects what it still holds before it exits
TICKS = os.sysconf("SC_CLK_TCK")

# Plain HTTP forward proxy on loopback, nothing cached, its own files; `icap` adds the ICAP lines.
SQUID_BASE = """\
http_port 127.0.0.1:{port}
visible_hostname egresswatch-bench
pid_filename {dir}/squid.pid
cache_log {dir}/cache.log
access_log stdio:{dir}/access.log squid
coredump_dir {dir}
cache_effective_user proxy
cache deny all
cache_mem 8 MB
pinger_enable off
shutdown_lifetime 0 seconds
max_filedescriptors 8192
http_access allow localhost
http_access deny all
"""

# The ICAP lines of the tested configs/squid/egresswatch.conf (REQMOD for what users send, RESPMOD for
# the answers, the preview size, the metadata that correlates them and names the upstream address, the
# timeouts) except bypass=off and no failure limit: in a bench a failing service must show as errors, not
# be skipped. The SNI line is there for likeness: plain HTTP has none.
SQUID_ICAP = """\
icap_enable on
icap_send_client_ip on
icap_persistent_connections on
icap_preview_enable on
icap_preview_size 4096
icap_service_failure_limit -1
icap_connect_timeout 2 seconds
icap_io_timeout 5 seconds
icap_service egresswatch_req reqmod_precache icap://127.0.0.1:{icap_port}/egresswatch bypass=off
adaptation_access egresswatch_req allow all
adaptation_meta X-SNI "%ssl::>sni"
adaptation_meta X-Transaction-ID "%master_xaction"
"""
SQUID_RESPMOD = """\
icap_service egresswatch_resp respmod_precache icap://127.0.0.1:{icap_port}/egresswatch bypass=off
adaptation_access egresswatch_resp allow all
adaptation_meta X-Server-IP "%<a"
"""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_port(host: str, port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    """Until `host:port` accepts a connection; raises if `proc` exits first or it takes too long."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before listening")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)   # poll interval, not a readiness guess
    raise RuntimeError(f"{what} not listening on {host}:{port} after {READY_TIMEOUT_S:.0f} s")


def wait_line(path: Path, needle: str, proc: subprocess.Popen[bytes], what: str) -> None:
    """Until the log file `path` holds `needle`; raises if `proc` exits first or it takes too long."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if path.exists() and needle in path.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            tail = path.read_text(errors="replace").strip().splitlines()[-3:] if path.exists() else []
            raise RuntimeError(f"{what} exited with {proc.returncode}: {' | '.join(tail)}")
        time.sleep(0.02)
    raise RuntimeError(f"{what}: no {needle!r} in {path} after {READY_TIMEOUT_S:.0f} s")


class Children:
    """Every child started here; `stop_all` ends them (SIGTERM, then SIGKILL) — at exit and on Ctrl-C."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, cmd: list[str], **kw: object) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(cmd, **kw)  # type: ignore[call-overload]
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT_S) -> int:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("pid %d did not stop in %.0f s: killed", proc.pid, timeout)
                proc.kill()
                proc.wait()
        if proc in self.procs:
            self.procs.remove(proc)
        return proc.returncode

    def stop_all(self) -> None:
        for proc in reversed(list(self.procs)):
            self.stop(proc, timeout=10.0)


# -- the three servers ------------------------------------------------------------------------------------

def start_origin(children: Children, host: str, port: int) -> subprocess.Popen[bytes]:
    proc = children.start([sys.executable, str(Path(__file__).with_name("icap_load.py")), "origin",
                           f"{host}:{port}"], stdout=subprocess.DEVNULL)
    wait_port(host, port, proc, "origin")
    return proc


def squid_conf(folder: Path, port: int, icap_port: int | None, respmod: bool) -> Path:
    text = SQUID_BASE.format(port=port, dir=folder)
    if icap_port is not None:
        text += SQUID_ICAP.format(icap_port=icap_port)
        if respmod:
            text += SQUID_RESPMOD.format(icap_port=icap_port)
    conf = folder / "squid.conf"
    conf.write_text(text)
    return conf


def start_squid(children: Children, folder: Path, port: int, icap_port: int | None,
                respmod: bool) -> subprocess.Popen[bytes]:
    """Squid in the foreground (-N) with its own pid, logs and config in `folder` (which Squid, dropping
    root for the proxy user, must be able to write)."""
    folder.mkdir(parents=True, exist_ok=True)
    conf = squid_conf(folder, port, icap_port, respmod)
    if os.geteuid() == 0:
        shutil.chown(folder, "proxy", "proxy")
    proc = children.start([SQUID, "-N", "-f", str(conf)], stdout=subprocess.DEVNULL,
                          stderr=(folder / "squid.stderr").open("wb"))
    # Its log line rather than a probe connection, which would show in the access log as a request.
    wait_line(folder / "cache.log", "Accepting HTTP Socket connections at", proc, "squid")
    return proc


def agent_config(folder: Path, icap_port: int) -> Path:
    """Default settings but the listen address, a subject key of this run, and the client's side: Squid
    reports the client as 127.0.0.1, which is then the enterprise's network (the origin, 127.77.0.1, is not
    and has no country: cross-border), so every request is an export the agent inspects."""
    conf = folder / "agent.yaml"
    conf.write_text(f"internal_networks: [127.0.0.1/32]\nsubject_key_file: {folder / 'subject.key'}\n"
                    f"icap:\n  listen: 127.0.0.1:{icap_port}\n")
    return conf


def start_agent(children: Children, folder: Path, icap_port: int) -> subprocess.Popen[bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    conf = agent_config(folder, icap_port)
    logfile = folder / "agent.log"
    proc = children.start([str(AGENT), "icap", "--listen", f"127.0.0.1:{icap_port}", "--config", str(conf),
                           "--out", str(folder / "spool")], cwd=folder, stdout=subprocess.DEVNULL,
                          stderr=logfile.open("wb"))
    wait_line(logfile, "icap: listening on", proc, "egress-agent icap")
    wait_workers(proc, AgentConfig().detector_workers)
    return proc


def wait_workers(proc: subprocess.Popen[bytes], workers: int) -> None:
    """Until the agent's detector workers are all there. The first worker builds the detectors (presidio
    and all, a second or more) and only then forks the others (agent/inspector_worker.py), so their
    presence says the detectors are ready: otherwise the first measured seconds would also measure
    that start-up and the backlog it leaves."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while len(cpu_tree(proc.pid)) < 1 + workers and workers > 1:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"egress-agent icap: {workers} detector workers not there")
        time.sleep(0.05)   # poll interval, not a readiness guess


# -- CPU and records --------------------------------------------------------------------------------------

def _stat(pid: int) -> tuple[int, str, float] | None:
    """(ppid, comm, cpu seconds) of a live process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = raw[raw.index("(") + 1:raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2:].split()
    return int(fields[1]), comm, (int(fields[11]) + int(fields[12])) / TICKS


def cpu_tree(pid: int) -> dict[int, float]:
    """CPU seconds of `pid` (first) and each of its descendants, by pid."""
    table = {p: s for p in (int(d) for d in os.listdir("/proc") if d.isdigit()) if (s := _stat(p))}
    out, todo = {}, [pid]
    while todo:
        p = todo.pop()
        if p in table:
            out[p] = table[p][2]
            todo += [c for c, (ppid, _, _) in table.items() if ppid == p]
    return out


def machine_busy_s() -> float:
    """CPU seconds all processors spent busy since boot (/proc/stat), for the share other work took."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values[:8]) - idle) / TICKS


@dataclass(frozen=True)
class Records:
    flows: int
    inspected: int
    requests: int
    pi_values: int
    anomalies: int


def read_records(spool: Path) -> Records:
    def rows(kind: str, columns: list[str]) -> list[dict[str, object]]:
        out: list[dict[str, object]] = []
        for f in sorted((spool / kind).glob("[!.]*.parquet")):
            out += pq.read_table(f, columns=columns).to_pylist()
        return out

    flows = rows("flows", ["inspected", "requests"])
    return Records(flows=len(flows), inspected=sum(bool(r["inspected"]) for r in flows),
                   requests=sum(int(r["requests"] or 0) for r in flows),  # type: ignore[call-overload]
                   pi_values=len(rows("pi_values", ["flow_id"])), anomalies=len(rows("anomalies", ["name"])))


def on_signals(handler: Callable[[], None]) -> None:
    """SIGTERM ends the bench like Ctrl-C: `handler` runs, then KeyboardInterrupt unwinds."""
    def stop(_signum: int, _frame: object) -> None:
        handler()
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, stop)
