"""The agent as the ICAP service of a real Squid (issue 12, items 1 and 2): Debian's squid-openssl in a
network namespace between a user's client and servers abroad, bumping HTTPS with a CA made at test time,
handing every request to the real `egress-agent icap` (tests/live/squid_lab.py; what is sent:
tests/live/squid_traffic.py).

* every request reaches its server answered 200, and the agent's records give exactly the persons and field
  types sent, each request one flow seen by the proxy with its server's name and the address Squid used;
* fail-open: the agent killed, and the agent stopped (SIGSTOP), cost the users nothing but the configured
  timeouts; restarted or continued, the agent sees requests again once Squid revives the service;
* one agent capturing the proxy's outward interface and serving ICAP counts nothing twice.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from tests.conftest import BIN
from tests.live import plan
from tests.live.netns import assert_report_matches_truth, require_netns
from tests.live.squid_lab import FRAGMENT, SquidLab, squid_lab, squid_unavailable
from tests.live.squid_traffic import Request, requests, truth

pytestmark = [pytest.mark.root, pytest.mark.slow]


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[SquidLab]:
    require_netns()
    reason = squid_unavailable()
    if reason:
        pytest.skip(reason)
    with squid_lab(tmp_path / "lab") as built:
        yield built


def send(lab: SquidLab, reqs: Sequence[Request]) -> list[float]:
    """Each request through Squid; asserts every answer is 200 and returns curl's total times."""
    body_dir = lab.t.workdir / "bodies"
    body_dir.mkdir(exist_ok=True)
    times = []
    for n, req in enumerate(reqs):
        r = lab.curl(req.url, *req.curl_args(body_dir, n))
        code, _, took = r.stdout.partition(" ")
        assert r.returncode == 0 and code == "200", f"{req.method} {req.url}: {r.stdout} {r.stderr.strip()}"
        times.append(float(took))
    return times


def stop(proc: subprocess.Popen[Any], log: Path) -> None:
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 0, log.read_text()[-3000:]
    assert "Traceback" not in log.read_text()


def selfcheck(lab: SquidLab, spool: Path) -> dict[str, Any]:
    out = lab.t.workdir / f"report-{spool.name}"
    r = subprocess.run([str(BIN / "egress-collector"), "selfcheck", "--records", str(spool), "--filing",
                        str(lab.t.write_filing()), "--out", str(out), "--format", "json"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stderr[-2000:]           # findings: the plan's filing leaves some out
    return json.loads((out / "report.json").read_text(encoding="utf-8"))


def rows(spool: Path, record_type: str) -> list[dict[str, Any]]:
    return [row for f in sorted(spool.glob(f"{record_type}/*.parquet")) for row in pq.read_table(f).to_pylist()]


def content_lines(lab: SquidLab) -> list[Any]:
    """Squid's access-log lines of the requests themselves (not the CONNECTs that carried the HTTPS)."""
    return [line for line in lab.access_lines() if line.method != "CONNECT"]


# --- the main path ---------------------------------------------------------------------------------------

def test_squid_hands_every_request_to_the_agent_and_its_records_give_the_truth(lab: SquidLab) -> None:
    spool, log = lab.t.workdir / "spool", lab.t.workdir / "icap.log"
    agent = lab.start_icap_agent(lab.agent_config("icap"), spool, log)
    lab.start_squid()
    reqs = requests()
    send(lab, reqs)
    stop(agent, log)

    # Squid: every request answered 200 to the client, each after the agent's ICAP answer (its ISTag).
    lines = content_lines(lab)
    assert [(x.method, x.status, x.server_ip) for x in lines] == [(r.method, 200, r.dst_ip) for r in reqs]
    assert all(x.inspected for x in lines), [x for x in lines if not x.inspected]
    assert all(x.status == 200 and not x.inspected for x in lab.access_lines() if x.method == "CONNECT")
    # The servers got every body unchanged (a monitor never alters a message).
    served = [json.loads(x) for x in (lab.t.workdir / "server.jsonl").read_text().splitlines()]
    assert [(s["method"], s["host"], s["body_len"]) for s in served] == [
        (r.method, r.message.server_name, len(r.message.body)) for r in reqs]

    # One flow per request, seen by the proxy: its name, and the address Squid connected to (RESPMOD).
    flows = rows(spool, "flows")
    assert Counter((f["visibility"], f["server_name"], f["dst_ip"], f["dst_ip_source"], f["encrypted"],
                    f["src_ip"]) for f in flows) == Counter(
        ("proxy", r.message.server_name, r.dst_ip, "proxy", r.scheme == "https", lab.user_ip) for r in reqs)
    assert not [a for a in rows(spool, "anomalies") if a["layer"] == "icap"]

    assert_report_matches_truth(selfcheck(lab, spool), truth(reqs))


def test_the_readme_shows_the_tested_squid_configuration() -> None:
    readme = (FRAGMENT.parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Connect egresswatch to your proxy", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```squid\n(.*?)```", section, re.S)
    assert blocks == [FRAGMENT.read_text(encoding="utf-8")]


# --- fail-open -------------------------------------------------------------------------------------------

def wait_until(what: str, ok: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not ok():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)
