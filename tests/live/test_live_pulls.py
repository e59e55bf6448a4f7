"""Pulls count, live (issue 10 §2, rules.md): an overseas client — curl, from an address the agent's geo-IP
places in Singapore — pulls personal information (names, mobiles, resident IDs with valid check digits)
from an internal API server, a real HTTP server process; `egress-agent run --iface` captures it at the
internal side. The flows are `initiator = external`, the API's responses are inspected, and the self-check
judges the peer as the recipient: covered by a declared recipient's `ip_cidrs` no undeclared_recipient
finding, not covered a finding naming the peer.

    client ns (internal)                          server ns (overseas)
    10.77.0.2  pi_api.py :8080, egress-agent  <-  curl --interface 203.116.1.77
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml

from tests.conftest import BIN
from tests.live import plan
from tests.live.netns import Topology
from tests.live.test_live_agent import start_agent, stop, wait_for

pytestmark = pytest.mark.root

HERE = Path(__file__).resolve().parent
API = HERE / "pi_api.py"
API_PORT = 8080
PAGE_SIZE = 10
PEER = plan.OVERSEAS_SG            # the overseas client's address (SG by the agent's geo-IP)
PEER_CIDR = "203.116.1.0/24"
PULLED = {"person_name", "mobile_cn", "resident_id_cn"}


def start_api(t: Topology) -> None:
    """pi_api.py on the internal address; returns once it listens."""
    ready, log = t.workdir / "api.ready", t.workdir / "api.log"
    with open(log, "w") as fh:
        proc = t.run_in(t.client_ns, [sys.executable, str(API), "--port", str(API_PORT), "--page-size",
                                      str(PAGE_SIZE), "--ready", str(ready)], stdout=fh,
                        stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while not ready.exists():
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
        time.sleep(0.05)


def pull(t: Topology, *pages: int, gzip: bool = False) -> None:
    """One curl run from the overseas address: the pages over one keep-alive connection."""
    urls = [f"http://{t.client_ip}:{API_PORT}/api/v1/employees?page={p}" for p in pages]
    argv = ["curl", "--interface", PEER, "-sS", "--fail", "--max-time", "20",
            *(["--compressed"] if gzip else []), *[a for u in urls for a in ("-o", "/dev/null", u)]]
    r = t.run(t.server_ns, argv, timeout=30)
    assert r.returncode == 0, r.stderr


def peer_flows(spool: Path) -> list[dict[str, Any]]:
    """The flow rows spooled so far whose external peer is the overseas client."""
    if not list(spool.glob("flows/*.parquet")):
        return []
    rel = duckdb.sql(f"SELECT * FROM read_parquet('{spool}/flows/*.parquet') WHERE dst_ip = '{PEER}'")
    return [dict(zip(rel.columns, r, strict=True)) for r in rel.fetchall()]


def filing(declared: bool) -> dict[str, Any]:
    """The live filing; `declared` adds the overseas HR analytics vendor, whose clients come from
    PEER_CIDR, with a pull scenario cataloguing what the API serves."""
    data = copy.deepcopy(plan.filing())
    if declared:
        data["recipients"].append({
            "recipient_id": "R3", "name": "HR Analytics Pte. Ltd.", "country_region": "SG",
            "declared_endpoints": {"domains": [], "ip_cidrs": [PEER_CIDR]}})
        data["scenarios"].append({
            "scenario_id": "hr-analytics", "name": "境外人力分析服务商查询员工信息",
            "route": "standard_contract",
            "negative_list_match": {"entry_ids": [], "subcategory": None, "reason": "不含负面清单所列数据"},
            "recipients": ["R3"],
            "data_catalog": [{"item_id": f"H{i}", "name_cn": name, "field_type": ft} for i, (name, ft) in
                             enumerate((("员工姓名", "person_name"), ("手机号", "mobile_cn"),
                                        ("身份证号", "resident_id_cn")), 1)],
            "scale": {"window": "calendar_year", "persons_nonsensitive": 1000, "persons_sensitive": 1000},
            "transfer": {"method": "https_api_pull", "direction": "pull", "frequency": "daily"}})
    return data


def selfcheck(t: Topology, spool: Path, declared: bool) -> dict[str, Any]:
    name = "declared" if declared else "undeclared"
    path = t.workdir / f"filing-{name}.yaml"
    path.write_text(yaml.safe_dump(filing(declared), allow_unicode=True, sort_keys=False), encoding="utf-8")
    out = t.workdir / f"report-{name}"
    r = subprocess.run([str(BIN / "egress-collector"), "selfcheck", "--records", str(spool), "--filing",
                        str(path), "--out", str(out), "--format", "json"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode in (0, 1), r.stderr[-2000:]
    return json.loads((out / "report.json").read_text(encoding="utf-8"))


def test_an_overseas_client_pulling_pi_from_an_internal_api_is_judged_by_its_declared_cidrs(
        netns_bare: Topology) -> None:
    t = netns_bare
    start_api(t)
    spool, log = t.workdir / "spool", t.workdir / "agent.log"
    agent = start_agent(t, spool, log)
    pull(t, 0, 1)                       # two responses on one connection
    pull(t, 2, gzip=True)               # a gzip-coded response
    # Both connections ended (FIN): the agent writes them with its next flush; then it may stop.
    wait_for("both pulls in the spool", lambda: len(peer_flows(spool)) == 2, agent, log)
    assert stop(agent) == 0, log.read_text()[-3000:]
    assert "Traceback" not in log.read_text()

    rows = peer_flows(spool)
    assert len(rows) == 2, rows
    for row in rows:
        assert (row["src_ip"], row["src_port"], row["initiator"]) == (t.client_ip, API_PORT, "external")
        assert (row["app"], row["inspected"], row["cross_border"], row["dst_country"]) == ("http", True, True,
                                                                                             "SG")
        assert row["server_name"] is None           # the Host was the internal address: no name to give
    assert sum(r["requests"] for r in rows) == 3
    found = duckdb.sql(f"SELECT DISTINCT field_type FROM read_parquet('{spool}/detections/*.parquet')")
    assert {r[0] for r in found.fetchall()} >= PULLED

    declared = selfcheck(t, spool, declared=True)
    assert [f for f in declared["findings"] if f["check"] == "undeclared_recipient"] == []
    observed = declared["observed"]
    assert (observed["persons_nonsensitive"], observed["persons_sensitive"]) == (3 * PAGE_SIZE, 3 * PAGE_SIZE)
    (dest,) = [d for d in observed["destinations"] if PEER in d["ip"]]
    assert dest["scenario_id"] == "hr-analytics" and dest["country"] == "SG"

    undeclared = selfcheck(t, spool, declared=False)
    (finding,) = [f for f in undeclared["findings"] if f["check"] == "undeclared_recipient"]
    assert finding["subject"] == PEER and finding["evidence"]["dst_ips"] == [PEER]
    assert finding["severity"] == "critical"          # resident IDs are sensitive PI
    assert set(finding["evidence"]["field_types"]) >= PULLED
    # The report never holds a pulled value: the API's persons are seeded, so look for the first one's.
    first = plan.People(plan.SEED + 1).person()
    text = json.dumps(undeclared, ensure_ascii=False) + json.dumps(declared, ensure_ascii=False)
    assert first.mobile not in text and first.resident_id not in text and first.name not in text
