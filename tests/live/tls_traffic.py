"""Real encrypted traffic for the decryption tests: the HTTPS server abroad, the key-logging clients, and a
capture of it all, in the two network namespaces of tests/live/netns.py.

    with topology(workdir, sink=False) as t:
        run = capture_traffic(t, "mixed")          # or "demo"; tests/live/tls_sessions.py says what is sent
        run.pcapng, run.keylog, run.truth, run.server_log()

Steps, each waiting for readiness (never a fixed sleep):
1. a self-signed certificate (RSA 2048, CA:TRUE, every plan server name as a SAN) made with `cryptography`
   in the workdir; the clients trust it as their CA;
2. tests/live/https_server.py (hypercorn) in the server namespace on tcp 443 (TLS: h2, http/1.1), udp 443
   (QUIC: h3) and tcp 80 (HTTP/1.1 and h2c): ready once it has logged a "Running on" line per socket;
   for the mixed set also `openssl s_server -early_data` on 203.116.1.77:8443 (0-RTT), ready at "ACCEPT";
3. dumpcap on the client's veth writing pcapng (tests/live/dumpcap.py): ready once it says "Capturing on";
   optionally `egress-agent run --iface` beside it (`agent_argv`), ready once it logs "capturing on";
4. tests/live/tls_clients.py in the client namespace: every session of the set, all secrets appended to
   one key log, the truth written;
5. dumpcap stopped once a sentinel datagram sent after the clients has come through (dumpcap.py says
   why), so the file holds every packet of the run.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fixtures import certs
from tests.live import plan
from tests.live.dumpcap import Dumpcap
from tests.live.netns import PYTHON, NetnsError, Topology

HERE = Path(__file__).resolve().parent
SERVER = HERE / "https_server.py"
CLIENTS = HERE / "tls_clients.py"
READY_TIMEOUT_S = 20
CLIENTS_TIMEOUT_S = 120
EXTRA_NAMES = ("edge.partner-logistics.example",)


@dataclass(frozen=True)
class Capture:
    """What one run left in the workdir."""

    pcapng: Path
    keylog: Path
    truth_file: Path
    server_log_file: Path
    cert: Path
    zero_rtt_log: Path | None

    @property
    def truth(self) -> dict[str, Any]:
        return json.loads(self.truth_file.read_text(encoding="utf-8"))

    def server_log(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.server_log_file.read_text(encoding="utf-8").splitlines()
                if line]


# Debian packages the harness runs (CI installs them: .ci/run), by program.
PROGRAMS = {"dumpcap": "wireshark-common", "editcap": "wireshark-common", "tshark": "tshark", "curl": "curl",
            "openssl": "openssl"}


def programs_unavailable() -> str | None:
    """Why the harness cannot run here for want of a program, or None. (The words "not available" make
    such a skip a failure under CI=true: tests/conftest.py.)"""
    missing = [f"{p} (Debian package {pkg})" for p, pkg in PROGRAMS.items() if shutil.which(p) is None]
    return f"not available: {', '.join(missing)}" if missing else None


def make_certificate(workdir: Path) -> tuple[Path, Path]:
    """A self-signed RSA certificate for every plan server name; returns (cert.pem, key.pem)."""
    names = ["egresswatch live TLS test", *(d.server_name for d in plan.DESTINATIONS), *EXTRA_NAMES]
    return certs.self_signed(workdir, names, ecdsa=False)


def wait_for_text(what: str, path: Path, needle: str, proc: subprocess.Popen[Any], count: int = 1,
                  timeout: float = READY_TIMEOUT_S) -> None:
    """Poll `path` until `needle` appears `count` times; fail early if `proc` exits first."""
    deadline = time.monotonic() + timeout
    while True:
        text = path.read_text(errors="replace") if path.exists() else ""
        if text.count(needle) >= count:
            return
        if proc.poll() is not None or time.monotonic() > deadline:
            raise NetnsError(f"{what} not ready (exit {proc.poll()}): {text[-2000:]}")
        time.sleep(0.05)


def start_server(t: Topology, cert: Path, key: Path) -> tuple[subprocess.Popen[Any], Path]:
    log, stderr = t.workdir / "server.jsonl", t.workdir / "server.stderr"
    quic = [arg for addr in plan.SERVER_ADDRESSES for arg in ("--quic", addr)]
    with stderr.open("w") as fh:
        proc = t.run_in(t.server_ns, [PYTHON, str(SERVER), "--cert", str(cert), "--key", str(key),
                                      "--log", str(log), *quic], stdout=fh, stderr=subprocess.STDOUT)
    # tcp 443, tcp 80 and udp 443 on each server address
    wait_for_text("https_server.py", stderr, "Running on", proc, count=2 + len(plan.SERVER_ADDRESSES))
    return proc, log


def start_zero_rtt_server(t: Topology, cert: Path, key: Path) -> Path:
    """`openssl s_server -early_data` on 203.116.1.77:8443 (hypercorn accepts no 0-RTT): it prints what
    it receives, early data marked, to its log. Its stdin stays open (EOF would stop it) until teardown."""
    out = t.workdir / "s_server.out"
    with out.open("w") as fh:
        proc = t.run_in(t.server_ns, ["openssl", "s_server", "-accept", f"{plan.OVERSEAS_SG}:8443", "-cert",
                                      str(cert), "-key", str(key), "-early_data", "-tls1_3"],
                        stdin=subprocess.PIPE, stdout=fh, stderr=subprocess.STDOUT)
    wait_for_text("openssl s_server", out, "ACCEPT", proc)
    return out


def run_clients(t: Topology, set_name: str, keylog: Path, cafile: Path, truth: Path
                ) -> subprocess.CompletedProcess[str]:
    return t.run(t.client_ns, [PYTHON, str(CLIENTS), "--set", set_name, "--keylog", str(keylog),
                               "--cafile", str(cafile), "--truth", str(truth)], timeout=CLIENTS_TIMEOUT_S)


def capture_traffic(t: Topology, set_name: str = "mixed", *, agent_argv: Sequence[str] = (),
                    agent_log: Path | None = None) -> Capture:
    """Serve, capture, run the set's clients, stop the capture. With `agent_argv`, `egress-agent run
    --iface` runs in the client namespace during the clients too (the caller stops it)."""
    cert, key = make_certificate(t.workdir)
    start_server(t, cert, key)
    zero_rtt = start_zero_rtt_server(t, cert, key) if set_name == "mixed" else None
    pcapng, keylog = t.workdir / "capture.pcapng", t.workdir / "keys.log"
    truth, server_log = t.workdir / "truth.json", t.workdir / "server.jsonl"
    keylog.touch()            # the agent follows it from the start; the clients append to it
    dumpcap = Dumpcap(t, pcapng)
    dumpcap.wait_ready()
    if agent_argv:
        assert agent_log is not None
        with agent_log.open("w") as fh:
            agent = t.run_in(t.client_ns, list(agent_argv), stdout=fh, stderr=subprocess.STDOUT)
        wait_for_text("egress-agent", agent_log, f"capturing on {t.client_if}", agent, timeout=60)
    r = run_clients(t, set_name, keylog, cert, truth)
    dumpcap.stop()
    if r.returncode != 0:
        raise NetnsError(f"tls_clients.py failed: {r.stderr.strip()[-2000:]}")
    return Capture(pcapng, keylog, truth, server_log, cert, zero_rtt)
