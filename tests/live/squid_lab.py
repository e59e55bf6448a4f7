"""Squid between a user's client and the servers abroad, in three network namespaces, for the ICAP tests.

    user ns ewc-<id2>            proxy ns ewc-<id> (netns.py's client side)      server ns ews-<id>
    +--------------------+ veth  +--------------------------------------+ veth  +----------------------+
    | vewc-<id2>         |-------| vewu-<id2> 10.78.0.1/24  vewc-<id>   |-------| vews-<id> 10.77.0.1  |
    | 10.78.0.2/24       |       | squid :3128 (ssl-bump)   10.77.0.2   |       | 203.116.1.77 (SG) …  |
    | curl --proxy …     |       | egress-agent icap 127.0.0.1:1344     |       | https_server.py      |
    +--------------------+       | (egress-agent run --iface vewc-<id>) |       | tcp 443 and 80       |
                                 +--------------------------------------+       +----------------------+

The proxy namespace is netns.py's client namespace (its veth to the server namespace is the proxy's
outward interface, where a wire-capturing agent runs); the user namespace is a third one, claimed under its
own id with netns.py's ownership records, so a crashed run's leftovers are removed the same way. Squid runs
`configs/squid/egresswatch.conf` — the fragment the README shows — included from a test squid.conf that
adds only what a site has anyway (where logs and the pid go, who may use the proxy, how names resolve, the
upstream CA), with the fragment's three site paths replaced by test files.

Squid's access log and ICAP log have formats of our own (ACCESS_FORMAT, ICAP_FORMAT), joined on the master
transaction id: each request says whether the agent answered its REQMOD (saw it) or Squid bypassed it.
Every wait is for a condition (a log line, a port) with a deadline, never a fixed sleep.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fixtures import certs
from tests.live import netns, plan
from tests.live.netns import PYTHON, NetnsError, Topology
from tests.live.tls_traffic import make_certificate, wait_for_text

ROOT = Path(__file__).resolve().parents[2]
FRAGMENT = ROOT / "configs" / "squid" / "egresswatch.conf"
SERVER = Path(__file__).resolve().parent / "https_server.py"
USER_IF_PREFIX = "vewu-"
USER_IP, PROXY_LAN_IP, LAN_PREFIX = "10.78.0.2", "10.78.0.1", 24
PROXY_PORT = 3128
ICAP_PORT = 1344
READY_TIMEOUT_S = 30
AGENT_TIMEOUT_S = 60
BIN = ROOT / ".venv" / "bin"
FAST_LIVE = {"flush_interval_s": 0.5, "stats_interval_s": 1.0, "ship_interval_s": 0.5}
# The fragment's site paths, replaced by the test's own files.
SITE_CA_CERT = "/etc/squid/egresswatch-ca.pem"
SITE_CA_KEY = "/etc/squid/egresswatch-ca.key"
SITE_CERT_DB = "/var/lib/squid/ssl_db"
CERTGEN = "/usr/lib/squid/security_file_certgen"
# One line per request Squid answered (tab-separated): its master transaction, time, client, method, URL
# (Squid strips the query), status to the client, upstream address, request size.
ACCESS_FORMAT = "%master_xaction\t%ts.%03tu\t%>a\t%rm\t%ru\t%>Hs\t%<a\t%>st"
# One line per ICAP transaction: the master transaction it served, the service, its outcome and status
# (000 when it failed and the message went on without it).
ICAP_FORMAT = "%master_xaction\t%icap::<service_name\t%icap::rm\t%icap::to\t%03icap::Hs"

# Debian packages the lab runs, by program (CI installs them: .ci/run).
PROGRAMS = {"squid": "squid-openssl", CERTGEN: "squid-openssl", "curl": "curl"}


def squid_unavailable() -> str | None:
    """Why the lab cannot run here for want of a program, or None. ("not available" and "squid": such a
    skip fails under CI=true, tests/conftest.py.)"""
    missing = [f"{p} (Debian package {pkg})" for p, pkg in PROGRAMS.items() if shutil.which(p) is None]
    return f"not available: {', '.join(missing)}" if missing else None


@dataclass(frozen=True)
class AccessLine:
    xaction: str
    ts: float
    client: str
    method: str
    url: str
    status: int
    server_ip: str
    request_bytes: int
    inspected: bool       # the REQMOD service answered (200 or 204), not bypassed
    named: bool           # the RESPMOD service answered: the agent learned the server's address


@dataclass
class SquidLab:
    t: Topology
    user_ns: str
    user_if: str
    lan_if: str
    ca_cert: Path = field(init=False)
    server_cert: Path = field(init=False)
    access_log: Path = field(init=False)
    cache_log: Path = field(init=False)
    squid: subprocess.Popen[Any] | None = None
    user_ip: str = USER_IP

    def __post_init__(self) -> None:
        # Squid's workers and helpers run as `proxy`, which cannot enter pytest's root-only directories:
        # everything Squid reads or writes lives in a directory of its own (copied to the workdir and
        # removed at teardown).
        self.squid_dir = Path(tempfile.mkdtemp(prefix="egresswatch-squid-"))
        self.access_log = self.squid_dir / "access.log"
        self.cache_log = self.squid_dir / "cache.log"
        self.icap_log = self.squid_dir / "icap.log"

    @property
    def proxy_ns(self) -> str:
        return self.t.client_ns

    @property
    def outward_if(self) -> str:
        return self.t.client_if

    @property
    def outward_ip(self) -> str:
        return self.t.client_ip

    # -- servers abroad ----------------------------------------------------------------------------------

    def start_servers(self) -> Path:
        """https_server.py on tcp 443 and 80 of every server address; returns its request log."""
        self.server_cert, key = make_certificate(self.t.workdir)
        log, stderr = self.t.workdir / "server.jsonl", self.t.workdir / "server.stderr"
        with stderr.open("w") as fh:
            proc = self.t.run_in(self.t.server_ns, [PYTHON, str(SERVER), "--cert", str(self.server_cert),
                                                    "--key", str(key), "--log", str(log)],
                                 stdout=fh, stderr=subprocess.STDOUT)
        wait_for_text("https_server.py", stderr, "Running on", proc, count=2)
        return log

    # -- squid ---------------------------------------------------------------------------------------------

    def write_squid_conf(self) -> Path:
        """The test squid.conf including the fragment, with the site paths made test files."""
        d = self.squid_dir
        upstream_ca = d / "upstream-ca.pem"
        shutil.copyfile(self.server_cert, upstream_ca)
        ca_dir = d / "ca"
        ca_dir.mkdir()
        self.ca_cert, ca_key = certs.self_signed(ca_dir, ["egresswatch test inspection CA"], ecdsa=False)
        cert_db = d / "ssl_db"
        r = subprocess.run([CERTGEN, "-c", "-s", str(cert_db), "-M", "4MB"], capture_output=True, text=True,
                           timeout=30, check=False)
        if r.returncode != 0:
            raise NetnsError(f"security_file_certgen -c: {r.stderr.strip()}")
        fragment = FRAGMENT.read_text(encoding="utf-8")
        for site, test in ((SITE_CA_CERT, self.ca_cert), (SITE_CA_KEY, ca_key), (SITE_CERT_DB, cert_db)):
            assert site in fragment, f"{FRAGMENT} no longer names {site}"
            fragment = fragment.replace(site, str(test))
        (d / "egresswatch.conf").write_text(fragment, encoding="utf-8")
        hosts = d / "hosts"
        hosts.write_text("".join(f"{dest.ip} {dest.server_name}\n" for dest in plan.DESTINATIONS))
        conf = d / "squid.conf"
        conf.write_text("\n".join([
            "# the test's squid.conf: what a site has anyway; the egresswatch part is included below",
            f"pid_filename {d / 'squid.pid'}",
            f"cache_log {self.cache_log}",
            f"logformat egresswatch_test {ACCESS_FORMAT}",
            f"access_log stdio:{self.access_log} egresswatch_test",
            f"logformat egresswatch_icap {ICAP_FORMAT}",
            f"icap_log stdio:{self.icap_log} egresswatch_icap",
            f"coredump_dir {d}",
            "cache deny all",
            "cache_mem 8 MB",
            f"hosts_file {hosts}",
            "dns_nameservers 127.0.0.1",     # names come from hosts_file; nothing leaves for DNS
            f"acl lan src {PROXY_LAN_IP.rsplit('.', 1)[0]}.0/{LAN_PREFIX}",
            "http_access allow lan",
            "http_access deny all",
            f"tls_outgoing_options cafile={upstream_ca}",   # the servers' self-signed certificate
            "shutdown_lifetime 1 seconds",
            "debug_options ALL,1",
            f"include {d / 'egresswatch.conf'}",
            ""]), encoding="utf-8")
        for path in [d, *d.rglob("*")]:
            os.chown(path, *_proxy_ids())
        return conf

    def start_squid(self) -> subprocess.Popen[Any]:
        conf = self.write_squid_conf()
        out = self.squid_dir / "squid.out"
        with out.open("w") as fh:
            self.squid = self.t.run_in(self.proxy_ns, ["squid", "-N", "-f", str(conf)], stdout=fh,
                                       stderr=subprocess.STDOUT)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not _listening(self.proxy_ns, PROXY_PORT):
            if self.squid.poll() is not None or time.monotonic() > deadline:
                text = self.cache_log.read_text(errors="replace") if self.cache_log.exists() else ""
                raise NetnsError(f"squid did not start (exit {self.squid.poll()}): {out.read_text()}"
                                 f"{text[-3000:]}")
            time.sleep(0.05)
        return self.squid

    def access_lines(self) -> list[AccessLine]:
        """Squid's access log, each request joined with its ICAP transactions' outcomes. (Squid writes a
        request's ICAP lines before its access line: both logs are read in that order.)"""
        answered: set[tuple[str, str]] = set()
        for line in _lines(self.icap_log):
            f = line.split("\t")
            if len(f) == 5 and f[4] in ("200", "204"):
                answered.add((f[0], f[2]))
        out = []
        for line in _lines(self.access_log):
            f = line.split("\t")
            if len(f) != 8:
                continue
            out.append(AccessLine(f[0], float(f[1]), f[2], f[3], f[4], int(f[5]), f[6],
                                  int(f[7]) if f[7].isdigit() else 0, (f[0], "REQMOD") in answered,
                                  (f[0], "RESPMOD") in answered))
        return out

    # -- the agent in the proxy namespace ------------------------------------------------------------------

    def agent_config(self, name: str, **overrides: Any) -> Path:
        """agent.yaml for both commands: inline detectors, records flushed and stats written often."""
        return self.t.write_agent_config(self.t.workdir / f"agent-{name}.yaml",
                                         enterprise_id=plan.ENTERPRISE_ID, detector_workers=0, live=FAST_LIVE,
                                         **overrides)

    def start_icap_agent(self, config: Path, spool: Path, log: Path, wait: bool = True
                         ) -> subprocess.Popen[Any]:
        """`egress-agent icap` on the proxy namespace's 127.0.0.1:1344; returns once it listens (with
        `wait`; else call `wait_icap_agent`)."""
        with log.open("w") as fh:
            proc = self.t.run_in(self.proxy_ns, [str(BIN / "egress-agent"), "icap", "--config", str(config),
                                                 "--out", str(spool)], stdout=fh, stderr=subprocess.STDOUT)
        if wait:
            self.wait_icap_agent(proc, log)
        return proc

    def wait_icap_agent(self, proc: subprocess.Popen[Any], log: Path) -> None:
        wait_for_text("egress-agent icap", log, f"icap: listening on 127.0.0.1:{ICAP_PORT}", proc,
                      timeout=AGENT_TIMEOUT_S)

    def start_wire_agent(self, config: Path, spool: Path, log: Path, wait: bool = True
                         ) -> subprocess.Popen[Any]:
        """`egress-agent run --iface` on the proxy's outward interface; returns once it captures (with
        `wait`; else call `wait_wire_agent`)."""
        with log.open("w") as fh:
            proc = self.t.run_in(self.proxy_ns, [str(BIN / "egress-agent"), "run", "--iface", self.outward_if,
                                                 "--config", str(config), "--out", str(spool)],
                                 stdout=fh, stderr=subprocess.STDOUT)
        if wait:
            self.wait_wire_agent(proc, log)
        return proc

    def wait_wire_agent(self, proc: subprocess.Popen[Any], log: Path) -> None:
        wait_for_text("egress-agent run", log, f"capturing on {self.outward_if}", proc,
                      timeout=AGENT_TIMEOUT_S)

    # -- the user's client -------------------------------------------------------------------------------

    def curl(self, url: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """curl in the user namespace through Squid, trusting the inspection CA; prints the status code
        and the total time."""
        argv = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{time_total}",
                "--proxy", f"http://{PROXY_LAN_IP}:{PROXY_PORT}", "--cacert", str(self.ca_cert),
                "--max-time", str(timeout), *args, url]
        return self.t.run(self.user_ns, argv, timeout=timeout + 10)


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8", errors="replace").splitlines() if path.exists() else []


def _proxy_ids() -> tuple[int, int]:
    import pwd
    entry = pwd.getpwnam("proxy")
    return entry.pw_uid, entry.pw_gid


def _listening(ns: str, port: int) -> bool:
    """Something in `ns` listens on tcp `port` (ss, as the namespace sees it)."""
    r = subprocess.run(["ip", "netns", "exec", ns, "ss", "-Hltn", f"sport = :{port}"], capture_output=True,
                       text=True, timeout=10, check=False)
    return bool(r.stdout.strip())


def wait_listening(ns: str, port: int, proc: subprocess.Popen[Any], what: str,
                   timeout: float = READY_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while not _listening(ns, port):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise NetnsError(f"{what} not listening on {port} (exit {proc.poll()})")
        time.sleep(0.05)


@contextlib.contextmanager
def squid_lab(workdir: Path) -> Iterator[SquidLab]:
    """The three namespaces and the servers abroad (Squid is started by `start_squid`, after the agent);
    always torn down. Call `netns.require_netns()` and check `squid_unavailable()` first."""
    with netns.topology(workdir, sink=False) as t:
        user_id = netns._new_id()
        user_ns, user_if, lan_if = (netns.CLIENT_PREFIX + user_id, netns.CLIENT_IF_PREFIX + user_id,
                                    USER_IF_PREFIX + user_id)
        netns._claim(user_id)
        lab: SquidLab | None = None
        try:
            netns._ip("netns", "add", user_ns)
            netns._ip("link", "add", user_if, "netns", user_ns, "type", "veth", "peer", "name", lan_if,
                      "netns", t.client_ns)
            for ns, dev, addr in ((user_ns, user_if, USER_IP), (t.client_ns, lan_if, PROXY_LAN_IP)):
                netns._ip("-n", ns, "link", "set", "lo", "up")
                netns._ip("-n", ns, "link", "set", "dev", dev, "addrgenmode", "none")
                netns._ip("-n", ns, "addr", "add", f"{addr}/{LAN_PREFIX}", "dev", dev)
                netns._ip("-n", ns, "link", "set", "dev", dev, "up")
            lab = SquidLab(t, user_ns, user_if, lan_if)
            lab.start_servers()
            yield lab
        finally:
            for proc in t.procs:       # squid and the agents first: the user namespace goes before t's
                with contextlib.suppress(Exception):
                    netns._stop(proc)
            for pid in netns._ip("netns", "pids", user_ns, check=False).stdout.split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), 9)
            netns._ip("netns", "del", user_ns, check=False)
            if user_ns not in netns.namespaces():
                netns._release(user_id)
            if lab is not None:
                shutil.copytree(lab.squid_dir, t.workdir / "squid", dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns("ca", "ssl_db"))
                shutil.rmtree(lab.squid_dir, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
