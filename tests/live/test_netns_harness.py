"""Tests of the live-capture harness itself (tests/live/netns.py, exporter.py, http_sink.py, plan.py).

They need no agent: the topology comes up and goes away, the client reaches the sink on every server
address, the exporter's truth agrees with what the sink counted and with what the detectors find in the same
bodies, the geo-IP places the addresses where plan.py says, the filing is valid, a raw AF_PACKET socket
in the client namespace sees every request (the capture the agent will do, minus the agent), and a capture
taken there, run through today's `selfcheck PCAP`, reproduces the truth and the expected findings.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from agent.config import AgentConfig, load_agent_config
from agent.destinations import Destinations
from collector.models import load_filing
from tests.conftest import BIN
from tests.live import netns as nt
from tests.live import plan
from tests.live.netns import Topology, assert_report_matches_truth

root = pytest.mark.root
EXPECTED_REQUESTS = len(plan.messages())


def _names(prefix: str = "") -> list[str]:
    return [n for n in nt.namespaces() if n.startswith(prefix)]


def _links(ns: str) -> str:
    return subprocess.run(["ip", "-n", ns, "-o", "addr", "show"], capture_output=True, text=True,
                          check=True).stdout


# ---------------------------------------------------------------------------------------------- topology

@root
def test_topology_comes_up_and_goes_away(tmp_path: Path) -> None:
    nt.require_netns()
    with nt.topology(tmp_path, sink=False) as t:
        assert {t.client_ns, t.server_ns} <= set(nt.namespaces())
        client, server = _links(t.client_ns), _links(t.server_ns)
        assert f"{t.client_if}    inet {t.client_ip}/24" in client
        # No IPv6 on the veths (addrgenmode none): the link carries only the tests' IPv4 and ARP.
        assert not [ln for ln in (client + server).splitlines() if "inet6" in ln and ln.split()[1] != "lo"]
        for addr in (t.gateway_ip, *t.overseas.values(), t.domestic_ip):
            assert f"inet {addr}/" in server
        assert (nt.OWNERS / t.id).exists()
        names = (t.client_ns, t.server_ns)
    assert not set(names) & set(nt.namespaces())
    assert not (nt.OWNERS / t.id).exists()
    # The veth pair went with the namespaces; nothing was ever made in the host namespace.
    host_links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    assert t.client_if not in host_links and t.server_if not in host_links


@root
def test_teardown_runs_when_the_test_fails(tmp_path: Path) -> None:
    nt.require_netns()
    with pytest.raises(RuntimeError, match="boom"), nt.topology(tmp_path) as t:
        sink = t.procs[0]
        raise RuntimeError("boom")
    assert t.client_ns not in nt.namespaces() and t.server_ns not in nt.namespaces()
    assert sink.poll() is not None


@root
def test_leftovers_of_a_dead_run_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    nt.require_netns()
    stale, live = nt.CLIENT_PREFIX + "dead00", nt.SERVER_PREFIX + "a11ve0"
    nt._ip("netns", "add", stale)            # no owner file: a crashed run's namespace
    nt._claim("a11ve0")                       # owned by this (living) process: another run's namespace
    nt._ip("netns", "add", live)
    try:
        with nt.topology(tmp_path, sink=False):
            present = set(nt.namespaces())
            assert stale not in present and live in present
    finally:
        nt._ip("netns", "del", stale, check=False)
        nt._ip("netns", "del", live, check=False)
        nt._release("a11ve0")


def test_require_netns_skips_with_a_reason_when_not_root(monkeypatch: pytest.MonkeyPatch) -> None:
    nt.netns_unavailable.cache_clear()
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    try:
        with pytest.raises(pytest.skip.Exception, match="needs root"):
            nt.require_netns()
    finally:
        nt.netns_unavailable.cache_clear()


# ---------------------------------------------------------------------------------------------- traffic

REACH = """
import http.client, sys
for ip in sys.argv[1:]:
    c = http.client.HTTPConnection(ip, 80, timeout=3)
    c.request("POST", "/probe", body=b"{}", headers={"Host": "probe.example", "Connection": "close"})
    r = c.getresponse(); r.read(); c.close()
    assert r.status == 200, (ip, r.status)
print("ok")
"""


@root
def test_client_reaches_the_sink_on_every_server_address(netns: Topology) -> None:
    addrs = [*netns.overseas.values(), netns.domestic_ip]
    r = netns.run(netns.client_ns, [nt.PYTHON, "-c", REACH, *addrs])
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
    seen = netns.sink_requests()
    assert [s["local_ip"] for s in seen] == addrs
    assert {s["host"] for s in seen} == {"probe.example"}


@root
@pytest.mark.parametrize("mode", ["keep-alive", "close"])
def test_exporter_truth_matches_what_the_sink_counted(netns: Topology, mode: str) -> None:
    truth_path = netns.workdir / "truth.json"
    r = netns.export(truth_path, "--connection", mode, "--pace-ms", "2")
    assert r.returncode == 0, r.stderr
    truth = json.loads(truth_path.read_text(encoding="utf-8"))
    seen = netns.sink_requests()
    assert netns.sink_counts() == Counter({n: d["requests"] for n, d in truth["destinations"].items()})
    assert sum(d["requests"] for d in truth["destinations"].values()) == EXPECTED_REQUESTS
    ports: dict[str, set[int]] = defaultdict(set)
    for s in seen:
        d = truth["destinations"][s["host"]]
        assert s["local_ip"] == d["dst_ip"] and s["method"] == "POST"
        ports[s["host"]].add(s["client_port"])
    for name, d in truth["destinations"].items():
        assert sum(s["content_length"] for s in seen if s["host"] == name) == d["body_bytes"]
        assert len(ports[name]) == d["connections"] == (1 if mode == "keep-alive" else d["requests"])
    assert truth["connection"] == mode


def test_truth_counts_persons_and_values_from_the_plan() -> None:
    msgs = plan.messages()
    truth = plan.truth(msgs, {}, {})
    partner, crm = (truth["destinations"][n] for n in ("api.partner-logistics.example",
                                                        "sync.crm-vendor.example"))
    ads, domestic = truth["destinations"]["collect.ad-metrics.example"], truth["destinations"][
        "api.domestic-crm.example"]
    # Linked records: mobiles sent twice count once, as values and as persons.
    assert partner["field_types"]["mobile_cn"] == {"distinct_values": 12, "occurrences": 15, "persons": 12,
                                                   "sensitive": False}
    assert (partner["persons_nonsensitive"], partner["persons_sensitive"]) == (12, 0)
    assert (crm["persons_nonsensitive"], crm["persons_sensitive"]) == (8, 8)
    assert (ads["persons_nonsensitive"], ads["persons_sensitive"]) == (6, 6)
    assert not domestic["cross_border"] and domestic["scenario_id"] is None
    # One order-fulfilment person also went to the ad-metrics host: counted once across borders.
    assert truth["cross_border"] == {"requests": 8, "persons": 25, "persons_nonsensitive": 25,
                                     "persons_sensitive": 14}
    assert truth["scenarios"]["crm-sync"]["field_types"] == ["mobile_cn", "person_name", "resident_id_cn"]
    assert plan.messages() == msgs                                        # deterministic


def test_truth_holds_no_raw_value(tmp_path: Path) -> None:
    msgs = plan.messages()
    text = json.dumps(plan.truth(msgs, {}, {"seed": plan.SEED}), ensure_ascii=False)
    raw = {value for m in msgs for _, _, value in m.planted}
    assert raw and not [v for v in raw if v in text]


def test_planted_values_are_what_the_detectors_find() -> None:
    """The truth is reachable: the detectors find exactly the planted field types in every body, and as
    many distinct values per destination as the truth says (so a live test's misses are the capture's)."""
    from detectors.engine import Engine

    engine = Engine.from_configs(plan.ROOT / "configs", b"live-harness-subject-key-0123456")
    msgs = plan.messages()
    truth = plan.truth(msgs, {}, {})
    keys: dict[tuple[str, str], set[int]] = defaultdict(set)
    for m in msgs:
        found = engine.inspect(m.body, plan.CONTENT_TYPE)
        planted = Counter(ft for _, ft, _ in m.planted)
        assert Counter(h.field_type for h in found.hits) == planted, m.server_name
        assert not found.important and not found.anomalies
        for h in found.hits:
            keys[(m.server_name, h.field_type)].add(h.value_key)
    for name, d in truth["destinations"].items():
        for ft, counts in d["field_types"].items():
            assert len(keys[(name, ft)]) == counts["distinct_values"], (name, ft)


# ---------------------------------------------------------------------------------------------- geo, files

def test_server_addresses_are_where_the_agents_geo_ip_places_them() -> None:
    geo = Destinations([])
    for d in plan.DESTINATIONS:
        assert geo.country(d.ip) == d.country, d
        assert geo.cross_border(geo.country(d.ip)) == (d.country != "CN")
    assert {"SG", "US", "DE"} <= {d.country for d in plan.DESTINATIONS}
    assert geo.country(plan.DOMESTIC_CN) == "CN"
    # The client side is private: no country, and internal under the agent's default internal_networks.
    assert geo.country(plan.CLIENT_IP) is None and geo.country(plan.GATEWAY_IP) is None
    assert any(ipaddress.ip_address(plan.CLIENT_IP) in ipaddress.ip_network(n)
               for n in AgentConfig().internal_networks)


def test_filing_is_valid_and_plants_what_the_plan_says(tmp_path: Path) -> None:
    t = Topology("000000", tmp_path, "c", "s", "ci", "si")
    filing = load_filing(t.write_filing())
    assert filing.filing_id == plan.FILING_ID and filing.processor.id == plan.ENTERPRISE_ID
    declared = {dom: r.recipient_id for r in filing.recipients for dom in r.declared_endpoints.domains}
    sent = plan.truth(plan.messages(), {}, {})
    for d in plan.DESTINATIONS:
        assert (d.server_name in declared) == (d.scenario_id is not None), d.server_name
    catalog = {s.scenario_id: {i.field_type for i in s.data_catalog} for s in filing.scenarios}
    assert set(sent["scenarios"]["order-fulfilment"]["field_types"]) <= catalog["order-fulfilment"]
    assert set(sent["scenarios"]["crm-sync"]["field_types"]) - catalog["crm-sync"] == {"resident_id_cn"}
    assert filing.valid_from.month == 1 and filing.valid_until.year == 2099


def test_agent_config_is_valid(tmp_path: Path) -> None:
    t = Topology("000000", tmp_path, "c", "s", "ci", "si")
    cfg = load_agent_config(t.write_agent_config())
    assert cfg.detector_workers == 1 and cfg.subject_key_file.startswith(str(tmp_path))


# ---------------------------------------------------------------------------------------------- capture

SNIFF = r"""
import json, socket, struct, sys, time
iface, expect, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))   # ETH_P_ALL
s.bind((iface, 0))
s.settimeout(0.1)
print("ready", flush=True)
frames, posts, end = 0, {}, time.monotonic() + timeout
while time.monotonic() < end and sum(posts.values()) < expect:
    try:
        frame = s.recv(262144)
    except TimeoutError:
        continue
    frames += 1
    if len(frame) < 54 or frame[12:14] != b"\x08\x00" or frame[23] != 6:   # IPv4, TCP
        continue
    ip = frame[14:]
    tcp = ip[(ip[0] & 15) * 4:]
    if struct.unpack("!H", tcp[2:4])[0] == 80 and tcp[(tcp[12] >> 4) * 4:].startswith(b"POST "):
        dst = socket.inet_ntoa(ip[16:20])
        posts[dst] = posts.get(dst, 0) + 1
print(json.dumps({"frames": frames, "posts": posts}), flush=True)
"""


@root
def test_a_raw_socket_in_the_client_namespace_sees_every_request(netns: Topology) -> None:
    sniffer = netns.run_in(netns.client_ns, [nt.PYTHON, "-c", SNIFF, netns.client_if, str(EXPECTED_REQUESTS),
                                             "15"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert sniffer.stdout is not None and sniffer.stdout.readline().strip() == "ready"
    truth_path = netns.workdir / "truth.json"
    r = netns.export(truth_path)
    assert r.returncode == 0, r.stderr
    out, err = sniffer.communicate(timeout=20)
    seen = json.loads(out)
    truth = json.loads(truth_path.read_text(encoding="utf-8"))
    want: Counter[str] = Counter()
    for d in truth["destinations"].values():
        want[d["dst_ip"]] += d["requests"]
    assert Counter(seen["posts"]) == want, err


PCAP = r"""
import signal, socket, sys, time
import dpkt
iface, out = sys.argv[1], sys.argv[2]
stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))   # ETH_P_ALL
s.bind((iface, 0))
s.settimeout(0.1)
with open(out, "wb") as fh:
    w = dpkt.pcap.Writer(fh, snaplen=262144)
    print("ready", flush=True)
    while not stop:
        try:
            w.writepkt(s.recv(262144), time.time())
        except (TimeoutError, InterruptedError):
            pass
"""


@root
def test_a_capture_taken_in_the_namespace_gives_the_truth_through_selfcheck(netns: Topology) -> None:
    """The truth and expected findings hold for real kernel traffic (veth offloads and all) through the
    pipeline that exists today (`selfcheck PCAP`): a live test that then disagrees has a capture problem."""
    pcap, report = netns.workdir / "capture.pcap", netns.workdir / "report"
    try:
        cap = netns.run_in(netns.client_ns, [nt.PYTHON, "-c", PCAP, netns.client_if, str(pcap)],
                           stdout=subprocess.PIPE, text=True)
        assert cap.stdout is not None and cap.stdout.readline().strip() == "ready"
        r = netns.export(netns.workdir / "truth.json")
        assert r.returncode == 0, r.stderr
        time.sleep(0.2)   # the last FIN/ACK exchange
        cap.terminate()
        assert cap.wait(timeout=10) == 0
        r = subprocess.run([str(BIN / "egress-collector"), "selfcheck", str(pcap), "--filing",
                            str(netns.write_filing()), "--out", str(report), "--format", "json"],
                           capture_output=True, text=True, timeout=120, cwd=netns.workdir)
    finally:
        pcap.unlink(missing_ok=True)   # the capture holds the (synthetic) raw values; keep nothing of it
    assert r.returncode == 1, r.stderr[-2000:]
    truth = json.loads((netns.workdir / "truth.json").read_text(encoding="utf-8"))
    got = json.loads((report / "report.json").read_text(encoding="utf-8"))
    assert_report_matches_truth(got, truth)
