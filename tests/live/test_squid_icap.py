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
    files = sorted(spool.glob(f"{record_type}/*.parquet"))
    return [row for f in files for row in pq.read_table(f).to_pylist()]


def content_lines(lab: SquidLab) -> list[Any]:
    """Squid's access-log lines of the requests themselves (not the CONNECTs that carried the HTTPS)."""
    return [line for line in lab.access_lines() if line.method != "CONNECT"]


# --- the main path ---------------------------------------------------------------------------------------

@pytest.mark.root
@pytest.mark.slow
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
    assert all(x.inspected and x.named for x in lines), [x for x in lines if not (x.inspected and x.named)]
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


def fragment_seconds(directive: str) -> float:
    """A timeout of the tested fragment, in seconds (`icap_io_timeout 3 seconds`)."""
    m = re.search(rf"^{directive} (\d+)(?: seconds?)?$", FRAGMENT.read_text(encoding="utf-8"), re.M)
    assert m, directive
    return float(m.group(1))


def stall_bound() -> float:
    """The longest a request may take while the agent is silent, from the fragment: for each of its two
    ICAP transactions (REQMOD, RESPMOD) Squid tries the pooled connection and then a new one, each given up
    after the connect or the I/O timeout; Squid checks timeouts once a second (+1 s each)."""
    per_try = fragment_seconds("icap_connect_timeout") + fragment_seconds("icap_io_timeout") + 1
    return 2 * 2 * per_try


PROBE = Request(plan.Message("api.partner-logistics.example", "/v2/ping", b"", (), 0),
                "https", query="probe=1")


def wait_inspected(lab: SquidLab, what: str) -> None:
    """Until Squid hands requests and answers to the agent again (REQMOD and RESPMOD are two services,
    suspended and revived each on its own): a PI-free probe every half second, up to the revival delay
    (Squid fetches a suspended service's OPTIONS only then) and some."""
    timeout = fragment_seconds("icap_service_revival_delay") + stall_bound() + 15

    def probe() -> bool:
        send(lab, [PROBE])
        last = content_lines(lab)[-1]
        return last.inspected and last.named
    wait_until(what, probe, timeout)


@pytest.mark.root
@pytest.mark.slow
def test_squid_fails_open_when_the_agent_dies_or_stalls_and_resumes_with_it(lab: SquidLab) -> None:
    msgs = plan.messages()
    first, killed = [Request(msgs[2], "https")], [Request(msgs[7], "http"), Request(msgs[5], "https")]
    after_restart = [Request(msgs[3], "https", chunked=True), Request(msgs[0], "http")]
    after_continue = [Request(msgs[6], "https", expect=True), Request(msgs[1], "http", chunked=True)]
    spool1, log1 = lab.t.workdir / "spool1", lab.t.workdir / "icap1.log"
    config = lab.agent_config("icap")
    agent = lab.start_icap_agent(config, spool1, log1)
    lab.start_squid()
    send(lab, first)
    assert [x.inspected for x in content_lines(lab)] == [True]
    bound = stall_bound()

    # (a) killed: Squid bypasses the dead service; every request answered, none waits past the bound.
    agent.send_signal(signal.SIGKILL)
    agent.wait(timeout=10)
    seen = len(content_lines(lab))
    times = send(lab, killed)
    assert max(times) < bound, (times, bound)
    assert [x.inspected for x in content_lines(lab)[seen:]] == [False] * len(killed)
    # Restarted: requests are handed over again once Squid revives the service.
    spool2, log2 = lab.t.workdir / "spool2", lab.t.workdir / "icap2.log"
    agent = lab.start_icap_agent(config, spool2, log2)
    wait_inspected(lab, "the restarted agent to be used again")
    seen = len(content_lines(lab))
    send(lab, after_restart)
    assert all(x.inspected for x in content_lines(lab)[seen:])

    # (b) stopped: alive, accepting connections, silent. Squid's timeouts give up on it.
    agent.send_signal(signal.SIGSTOP)
    seen = len(content_lines(lab))
    try:
        times = send(lab, after_restart)       # the same bodies again: whatever the agent reads later of
    finally:                                   # these adds no person
        agent.send_signal(signal.SIGCONT)
    assert max(times) < bound, (times, bound)
    assert [x.inspected for x in content_lines(lab)[seen:]] == [False] * len(after_restart)
    wait_inspected(lab, "the continued agent to be used again")
    seen = len(content_lines(lab))
    send(lab, after_continue)
    assert all(x.inspected for x in content_lines(lab)[seen:])
    stop(agent, log2)

    assert all(x.status == 200 for x in lab.access_lines())
    # Every request handed over is a flow named by the proxy. The stalled requests' REQMODs, read once the
    # agent continued, may be flows too (they did go out), unnamed when Squid had given up their RESPMODs.
    flows = rows(spool2, "flows")
    assert {f["visibility"] for f in flows} == {"proxy"}
    named = Counter((f["server_name"], f["dst_ip"]) for f in flows if f["dst_ip_source"] == "proxy")
    want = Counter((r.message.server_name, r.dst_ip) for r in after_restart + after_continue)
    assert named & want == want, (named, want)
    assert {f["server_name"] for f in flows if f["dst_ip_source"] != "proxy"} <= {
        r.message.server_name for r in after_restart}
    assert_report_matches_truth(selfcheck(lab, spool2), truth(after_restart + after_continue))


# --- the wire and ICAP together ----------------------------------------------------------------------------

@pytest.mark.root
@pytest.mark.slow
def test_one_agent_on_the_proxys_wire_and_its_icap_counts_nothing_twice(lab: SquidLab) -> None:
    """`icap.proxy_networks` names the proxy's outward address: its connections on the wire carry the
    bytes (not inspected there: they are TLS Squid made, or plaintext ICAP already handed over), the ICAP
    flows carry the content and no bytes. Both processes share the agent id and the spool."""
    spool = lab.t.workdir / "spool"
    wire_log, icap_log = lab.t.workdir / "wire.log", lab.t.workdir / "icap.log"
    config = lab.agent_config("both", icap={"proxy_networks": [f"{lab.outward_ip}/32"]})
    wire = lab.start_wire_agent(config, spool, wire_log, wait=False)     # both start at once
    icap = lab.start_icap_agent(config, spool, icap_log, wait=False)
    lab.wait_wire_agent(wire, wire_log)
    lab.wait_icap_agent(icap, icap_log)
    lab.start_squid()
    reqs = [Request(m, "https" if n % 2 else "http", chunked=n % 3 == 0)
            for n, m in enumerate(plan.messages())]
    send(lab, reqs)
    stop(icap, icap_log)
    stop(wire, wire_log)
    assert all(x.inspected and x.named for x in content_lines(lab))

    report = selfcheck(lab, spool)
    assert_report_matches_truth(report, truth(reqs))        # persons and field types once, from ICAP
    flows = rows(spool, "flows")
    handed = [f for f in flows if f["src_ip"] == lab.user_ip]
    wire_rows = [f for f in flows if f["src_ip"] == lab.outward_ip]
    assert len(handed) + len(wire_rows) == len(flows)
    assert len(handed) == len(reqs)
    assert all(f["bytes_out"] == f["bytes_in"] == 0 and f["dst_ip_source"] == "proxy" for f in handed)
    abroad = [f for f in wire_rows if f["cross_border"]]
    assert {(f["visibility"], f["inspected"], f["dst_ip_source"]) for f in abroad} == {
        ("proxy", True, "wire")}
    assert {f["dst_ip"] for f in wire_rows} == {r.dst_ip for r in reqs}
    # Cross-border bytes are the wire's: all of them, and they carried at least the bodies sent abroad.
    wire_abroad = sum(f["bytes_out"] for f in abroad)
    assert report["observed"]["coverage"]["cross_border_bytes_out"] == wire_abroad
    assert wire_abroad >= sum(len(r.message.body) for r in reqs if plan.BY_NAME[r.message.server_name].country
                              != "CN")
