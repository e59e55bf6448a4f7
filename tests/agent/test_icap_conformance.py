"""Protocol conformance against a second implementation: Debian's `c-icap-client` (package c-icap) sends
OPTIONS, REQMOD and RESPMOD with previews to the real `egress-agent icap` process; its records through
`egress-collector selfcheck --records` give the persons and field types sent. The CLI's errors too."""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.agent.icap_harness import BODY, CLIENT, PEOPLE, rows
from tests.conftest import BIN, ROOT

CICAP = shutil.which("c-icap-client")
needs_cicap = pytest.mark.skipif(CICAP is None,
                                 reason="c-icap-client is not available (Debian package c-icap)")
READY = re.compile(r"icap: listening on 127\.0\.0\.1:(\d+)")
LARGE = json.dumps({"customers": PEOPLE * 300}, ensure_ascii=False).encode()     # far over the preview


class Agent:
    """`egress-agent icap` as a process; `port` once its log says it listens."""

    def __init__(self, tmp_path: Path, **icap: object) -> None:
        key = tmp_path / "k.key"
        key.write_bytes(b"icap-test-key-not-secret-0000000")
        self.cfg = tmp_path / "agent.yaml"
        self.cfg.write_text(yaml.safe_dump({
            "agent_id": "icap-cli", "subject_key_file": str(key), "detector_workers": 1,
            "icap": {"listen": "127.0.0.1:0", "address_wait_s": 0.2, **icap}}), encoding="utf-8")
        self.out = tmp_path / "spool"
        self.log = tmp_path / "agent.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen([str(BIN / "egress-agent"), "icap", "--config", str(self.cfg),
                                          "--out", str(self.out)], stdout=subprocess.PIPE, stderr=log,
                                         text=True, cwd=ROOT)
        deadline = time.monotonic() + 120
        while not (m := READY.search(self.log.read_text(encoding="utf-8", errors="replace"))):
            assert self.proc.poll() is None, self.log.read_text(encoding="utf-8")
            assert time.monotonic() < deadline, "no readiness line"
            time.sleep(0.05)
        self.port = int(m.group(1))

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=60)
        assert self.proc.returncode == 0, self.log.read_text(encoding="utf-8")
        return out


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Agent]:
    a = Agent(tmp_path)
    yield a
    if a.proc.poll() is None:
        a.proc.kill()
        a.proc.wait()


def cicap(agent: Agent, *args: str) -> subprocess.CompletedProcess[str]:
    assert CICAP is not None
    # Its report (-v) goes to stderr: one stream here.
    return subprocess.run([CICAP, "-i", "127.0.0.1", "-p", str(agent.port), "-s", "egresswatch", "-v", *args],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=30)


@needs_cicap
def test_c_icap_client_options(agent: Agent) -> None:
    proc = cicap(agent)
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"Allow 204: Yes", proc.stdout) and re.search(r"Preview: 4096", proc.stdout)
    assert "Methods: REQMOD, RESPMOD" in proc.stdout and 'ISTag: "egresswatch-' in proc.stdout
    agent.stop()


@needs_cicap
def test_c_icap_client_reqmod_and_respmod_are_answered_and_inspected(agent: Agent, tmp_path: Path) -> None:
    small, large = tmp_path / "small.json", tmp_path / "large.json"
    small.write_bytes(BODY)
    large.write_bytes(LARGE)
    meta = ["-x", f"X-Client-IP: {CLIENT}", "-x", "X-Server-IP: 8.8.8.8",
            "-hx", "Content-Type: application/json"]
    answers = []
    for preview in ("0", "64", "4096"):        # body in the preview or not, each way
        for body in (small, large):
            answers.append(cicap(agent, "-req", "http://api.example.com/upload", "-f", str(body),
                                 "-w", preview, *meta))
    echo = tmp_path / "echo.out"
    answers.append(cicap(agent, "-req", "http://api.example.com/upload", "-f", str(large), "-w", "128",
                         "-no204", "-o", str(echo), *meta))
    # A pull: a client abroad fetching from an internal server, through a reverse proxy.
    answers.append(cicap(agent, "-resp", "http://files.corp.example/export", "-f", str(large), "-w", "512",
                         "-x", "X-Client-IP: 8.8.4.4", "-x", "X-Server-IP: 10.9.9.9",
                         "-rhx", "Content-Type: application/json"))
    for proc in answers:
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "ICAP/1.0 204 No Content" in proc.stdout or "ICAP/1.0 200 OK" in proc.stdout, proc.stdout
    assert "ICAP/1.0 200 OK" in answers[-2].stdout and echo.read_bytes() == LARGE     # echoed unchanged
    agent.stop()
    flows = rows(agent.out, "flows")
    assert len(flows) == 8 and all(f["inspected"] and f["visibility"] == "proxy" for f in flows)
    pull = [f for f in flows if f["initiator"] == "external"]
    assert [(f["src_ip"], f["dst_ip"]) for f in pull] == [("10.9.9.9", "8.8.4.4")]
    per_flow: dict[str, int] = {}
    for d in rows(agent.out, "detections"):
        if d["field_type"] == "resident_id_cn":
            per_flow[d["flow_id"]] = d["occurrences"]
    assert sorted(per_flow.values()) == sorted([2, 600] * 3 + [600, 600])    # every body inspected whole

    report = tmp_path / "report"
    proc = subprocess.run([str(BIN / "egress-collector"), "selfcheck", "--records", str(agent.out),
                           "--filing", str(ROOT / "configs" / "filings" / "demo.yaml"), "--out", str(report),
                           "--format", "json"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode in (0, 1), proc.stderr
    observed = json.loads((report / "report.json").read_text(encoding="utf-8"))["observed"]
    # The same two people in every record of five large bodies: each of their identifiers is in about 1,500
    # records, more than persons.max_records_per_key (1,000), which DESIGN §5 does not count as a person but
    # reports as a shared key (issue 13; before it, they were two persons).
    assert (observed["persons_nonsensitive"], observed["persons_sensitive"]) == (0, 0)
    assert observed["shared_person_keys"] and all(k["records"] > 1000 for k in observed["shared_person_keys"])
    types = {ft for d in observed["destinations"] for ft in d["field_types"]}
    assert types == {"person_name", "resident_id_cn", "mobile_cn"}
    assert observed["coverage"]["by_visibility"]["proxy"] > 0


def _icap(*args: str, cfg: Path | None = None) -> subprocess.CompletedProcess[str]:
    extra = ["--config", str(cfg)] if cfg else []
    return subprocess.run([str(BIN / "egress-agent"), "icap", *extra, *args], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)


def _one_line_error(proc: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert proc.returncode == 2, proc
    assert "Traceback" not in proc.stderr + proc.stdout
    [line] = [ln for ln in proc.stderr.splitlines() if "egress-agent: error" in ln]
    assert fragment in line, line


def test_cli_bad_listen_and_bad_config_are_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "a.yaml"
    cfg.write_text(yaml.safe_dump({"subject_key_file": str(tmp_path / "k.key")}), encoding="utf-8")
    _one_line_error(_icap("--listen", "nowhere", cfg=cfg), "expected HOST:PORT")
    _one_line_error(_icap("--collector", "http://127.0.0.1:9", cfg=cfg), "--collector needs --token-file")
    assert not (tmp_path / "k.key").exists()       # options are checked before anything is made
    bad = tmp_path / "bad.yaml"
    bad.write_text("icap: {max_connections: 0}\n", encoding="utf-8")
    _one_line_error(_icap(cfg=bad), "max_connections")


def test_cli_port_in_use_is_one_line(tmp_path: Path) -> None:
    key = tmp_path / "k.key"
    key.write_bytes(b"icap-test-key-not-secret-0000000")
    cfg = tmp_path / "a.yaml"
    cfg.write_text(yaml.safe_dump({"subject_key_file": str(key)}), encoding="utf-8")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        _one_line_error(_icap("--listen", f"127.0.0.1:{port}", "--out", str(tmp_path / "s"), cfg=cfg),
                        f"cannot listen on 127.0.0.1:{port}")
