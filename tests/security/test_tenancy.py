"""Tenancy attacks against the real collector (issue 9 items 1, 4, 5, 12 and the audit log): access is
decided by the registry in collector.yaml and the token, never by a field of an uploaded body.

Each test names the attack it replays. The server is one process for the module; every test uses its own
filing ids, batch ids and flow ids so that the order of the tests does not matter.
"""

from __future__ import annotations

import copy
import json

import httpx
import pytest
import yaml

from tests.collector.builders import flow, pi
from tests.collector_server import CollectorServer, demo_filing
from tests.conftest import ROOT
from tests.security.conftest import FILING_ID, assert_error_shape, batch_bytes, upload


@pytest.fixture(scope="module")
def filed(collector: CollectorServer) -> CollectorServer:
    """hz-demo's filing stored by its regulator, and one batch of its PI exports."""
    r = collector.call("regulator", "PUT", f"/v1/filings/{FILING_ID}", json=demo_filing())
    assert r.status_code == 201, r.text
    flows = [flow(f"ten-f{i}", server_name="sync.crm-vendor.example", country="US") for i in range(3)]
    assert upload(collector, "agent", batch_bytes("flows", flows), "ten-flows").status_code == 201
    values = [pi(f"ten-f{i}", i, "mobile_cn", 1000 + i, identifier=True) for i in range(3)]
    stored = upload(collector, "agent", batch_bytes("pi_values", values), "ten-pi", "pi_values")
    assert stored.status_code == 201, stored.text
    return collector


# --- item 1: a regulator reads another area's enterprise ---------------------------------------------

def test_a_regulator_cannot_file_for_an_enterprise_of_another_area(filed: CollectorServer) -> None:
    # The attack: a Ningbo regulator files `ftz_area: ningbo` naming a Hangzhou enterprise, then checks it.
    forged = demo_filing(filing_id="ZJFTZ-NB-FORGED-1", ftz_area="ningbo")
    r = filed.call("regulator-ningbo", "PUT", "/v1/filings/ZJFTZ-NB-FORGED-1", json=forged)
    err = assert_error_shape(r, 422, "processor.id")
    assert "hangzhou" not in err["message"]          # a refusal does not map the registry either
    # …and says exactly what it says for an id nobody registered (no oracle for other areas' registries).
    ghost = demo_filing(filing_id="ZJFTZ-NB-FORGED-1", ftz_area="ningbo")
    ghost["processor"] = {**ghost["processor"], "id": "ghost-co"}
    other = filed.call("regulator-ningbo", "PUT", "/v1/filings/ZJFTZ-NB-FORGED-1", json=ghost)
    assert assert_error_shape(other, 422)["message"].replace("ghost-co", "hz-demo") == err["message"]
    run = filed.call("regulator-ningbo", "POST", "/v1/checks/run", json={"filing_id": "ZJFTZ-NB-FORGED-1"})
    assert_error_shape(run, 404, "filing_id")
    assert filed.call("regulator", "GET", "/v1/filings/ZJFTZ-NB-FORGED-1").status_code == 404


@pytest.mark.parametrize(("method", "path", "body", "status"), [
    # Reads answer as for a filing that does not exist: another tenant's filing numbers cannot be probed.
    ("GET", f"/v1/filings/{FILING_ID}", None, 404),
    ("POST", "/v1/checks/run", {"filing_id": FILING_ID}, 404),
    ("GET", f"/v1/reports?filing_id={FILING_ID}", None, 404),
    ("PUT", f"/v1/filings/{FILING_ID}", demo_filing(ftz_area="ningbo"), 403),
    ("DELETE", "/v1/batches/hz-demo/ten-flows", None, 403),
])
def test_another_areas_regulator_is_refused_everywhere(filed: CollectorServer, method: str, path: str,
                                                       body: dict | None, status: int) -> None:
    r = filed.call("regulator-ningbo", method, path, json=body)
    err = assert_error_shape(r, status)
    if status == 404:
        unknown = filed.call("regulator-ningbo", method, path.replace(FILING_ID, "NO-SUCH-FILING"),
                             json=body and {**body, "filing_id": "NO-SUCH-FILING"})
        same = assert_error_shape(unknown, 404)["message"].replace("NO-SUCH-FILING", FILING_ID)
        assert same == err["message"]


def test_another_areas_regulator_sees_no_report_of_the_enterprise(filed: CollectorServer) -> None:
    made = filed.call("regulator", "POST", "/v1/checks/run", json={"filing_id": FILING_ID})
    assert made.status_code == 201, made.text
    report_id = made.json()["report_id"]
    listed = filed.call("regulator-ningbo", "GET", "/v1/reports").json()["reports"]
    assert report_id not in {r["report_id"] for r in listed}
    assert_error_shape(filed.call("regulator-ningbo", "GET", f"/v1/reports/{report_id}"), 404)
    assert_error_shape(filed.call("enterprise-hz-other", "GET", f"/v1/reports/{report_id}.html"), 404)


def test_a_filing_for_an_unregistered_enterprise_is_422_naming_processor_id(filed: CollectorServer) -> None:
    body = demo_filing(filing_id="ZJFTZ-HZ-GHOST")
    body["processor"] = {**body["processor"], "id": "ghost-co"}
    r = filed.call("regulator", "PUT", "/v1/filings/ZJFTZ-HZ-GHOST", json=body)
    assert_error_shape(r, 422, "processor.id")


def test_an_enterprise_cannot_file_for_another_enterprise(filed: CollectorServer) -> None:
    body = demo_filing(filing_id="ZJFTZ-HZ-OTHER-BY-DEMO")
    body["processor"] = {**body["processor"], "id": "hz-other"}
    assert_error_shape(filed.call("enterprise", "PUT", "/v1/filings/ZJFTZ-HZ-OTHER-BY-DEMO", json=body), 403)


def test_an_enterprise_cannot_take_a_filing_number_first(filed: CollectorServer) -> None:
    # The attack: a Ningbo enterprise stores a Hangzhou-looking number for itself, so that Hangzhou's
    # regulator is refused when it files its own enterprise under it. Numbers are the regulators' to issue.
    body = demo_filing(filing_id="ZJFTZ-HZ-2026-0108", ftz_area="ningbo")
    body["processor"] = {**body["processor"], "id": "nb-other"}
    squat = filed.call("enterprise-other", "PUT", "/v1/filings/ZJFTZ-HZ-2026-0108", json=body)
    assert_error_shape(squat, 403)
    mine = filed.call("regulator", "PUT", "/v1/filings/ZJFTZ-HZ-2026-0108",
                      json=demo_filing(filing_id="ZJFTZ-HZ-2026-0108"))
    assert mine.status_code == 201, mine.text
    # The enterprise then adds versions to its own filing.
    again = filed.call("enterprise", "PUT", "/v1/filings/ZJFTZ-HZ-2026-0108",
                       json=demo_filing(filing_id="ZJFTZ-HZ-2026-0108", valid_until="2098-12-31"))
    assert again.status_code == 201 and again.json()["version"] == 2, again.text


def test_another_areas_negative_list_never_changes_this_areas_verdict(filed: CollectorServer) -> None:
    # The attack: a Ningbo regulator keeps a list that matches everything; Hangzhou's checks must not
    # apply it (it would turn a consistent scenario into a negative_list_match).
    text = (ROOT / "configs" / "negative_lists" / "zhejiang-example.yaml").read_text(encoding="utf-8")
    hostile = copy.deepcopy(yaml.safe_load(text))
    hostile["list_id"] = "nb-local-list"
    entry = hostile["sectors"][0]["entries"][0]
    entry["field_types"] = ["person_name", "mobile_cn"]
    entry.pop("threshold", None)
    hostile = json.loads(json.dumps(hostile, default=str))
    stored = filed.call("regulator-ningbo", "PUT", "/v1/negative-lists/nb-local-list", json=hostile)
    assert stored.status_code == 201, stored.text
    made = filed.call("regulator", "POST", "/v1/checks/run", json={"filing_id": FILING_ID})
    report = filed.call("regulator", "GET", f"/v1/reports/{made.json()['report_id']}").json()
    assert "nb-local-list" not in {ref["list_id"] for ref in report["negative_lists"]}
    assert not [f for f in report["findings"] if f["check"] == "negative_list_match"]
    # Hangzhou's regulator cannot rewrite Ningbo's list either.
    assert_error_shape(filed.call("regulator", "PUT", "/v1/negative-lists/nb-local-list", json=hostile), 403)


# --- item 4: an enterprise moves itself to another area ------------------------------------------------

def test_an_enterprise_cannot_move_its_filing_to_another_area(filed: CollectorServer) -> None:
    before = filed.call("regulator", "GET", f"/v1/filings/{FILING_ID}").json()["version"]
    moved = filed.call("enterprise", "PUT", f"/v1/filings/{FILING_ID}", json=demo_filing(ftz_area="ningbo"))
    assert_error_shape(moved, 422, "ftz_area")
    # Its own regulator keeps reading, checking and writing; nothing was stored.
    got = filed.call("regulator", "GET", f"/v1/filings/{FILING_ID}")
    assert got.status_code == 200 and got.json()["version"] == before
    assert filed.call("regulator", "POST", "/v1/checks/run", json={"filing_id": FILING_ID}).status_code == 201
    again = filed.call("regulator", "PUT", f"/v1/filings/{FILING_ID}", json=demo_filing())
    assert again.status_code in (200, 201), again.text


def test_a_filing_id_cannot_be_moved_to_another_enterprise(filed: CollectorServer) -> None:
    body = demo_filing()
    body["processor"] = {**body["processor"], "id": "hz-other"}
    moved = filed.call("regulator", "PUT", f"/v1/filings/{FILING_ID}", json=body)
    assert_error_shape(moved, 409, "processor.id")


# --- item 5: cross-tenant row shadowing -----------------------------------------------------------------

def test_rows_claiming_another_agent_are_refused(filed: CollectorServer) -> None:
    # The attack: an agent pre-registers another agent's flow ids by naming that agent in its rows.
    forged = batch_bytes("flows", [flow("shadow-f1")], agent_id="gw-hz-01", enterprise_id="hz-other")
    assert_error_shape(upload(filed, "agent-hz-other", forged, "shadow-1"), 403)
    same_enterprise = batch_bytes("flows", [flow("shadow-f2")], agent_id="gw-hz-01")
    assert_error_shape(upload(filed, "agent-2", same_enterprise, "shadow-2"), 403, "column agent_id")


@pytest.mark.parametrize("other", ["agent-2", "agent-hz-other", "agent-other"])
def test_another_agents_rows_never_shadow_an_agents_own(filed: CollectorServer, other: str) -> None:
    from tests.collector_server import TOKENS

    spec = TOKENS[other]
    flow_id = f"victim-{other}"
    pre = batch_bytes("flows", [flow(flow_id)], agent_id=spec["agent_id"],
                      enterprise_id=spec["enterprise_id"])
    assert upload(filed, other, pre, f"pre-{other}").json()["stored_rows"] == 1
    real = upload(filed, "agent", batch_bytes("flows", [flow(flow_id)]), f"real-{other}")
    assert real.status_code == 201 and real.json()["stored_rows"] == 1, real.text


# --- item 12: batch ids are scoped per enterprise -------------------------------------------------------

def test_a_batch_id_taken_by_another_tenant_is_still_free(filed: CollectorServer) -> None:
    taken = batch_bytes("flows", [flow("squat-f1")], agent_id="gw-nb-01", enterprise_id="nb-other")
    assert upload(filed, "agent-other", taken, "squatted-id").status_code == 201
    mine = upload(filed, "agent", batch_bytes("flows", [flow("squat-f2")]), "squatted-id")
    assert mine.status_code == 201 and mine.json()["status"] == "stored", mine.text
    again = upload(filed, "agent", batch_bytes("flows", [flow("squat-f2")]), "squatted-id")
    assert again.status_code == 200 and again.json()["status"] == "already_stored"


# --- removing a poisoned batch, and the audit log -------------------------------------------------------

def test_a_regulator_removes_a_batch_and_the_audit_log_records_it(filed: CollectorServer) -> None:
    body = batch_bytes("flows", [flow("poison-f1"), flow("poison-f2")])
    assert upload(filed, "agent", body, "poison-1").status_code == 201
    assert_error_shape(filed.call("enterprise", "DELETE", "/v1/batches/hz-demo/poison-1"), 403)
    assert_error_shape(filed.call("agent", "DELETE", "/v1/batches/hz-demo/poison-1"), 403)
    gone = filed.call("regulator", "DELETE", "/v1/batches/hz-demo/poison-1", params={"note": "poisoned"})
    assert gone.status_code == 200, gone.text
    assert gone.json() | {"agent_id": "gw-hz-01"} == gone.json()
    assert (gone.json()["stored_rows"], gone.json()["status"]) == (2, "removed")
    assert not list(filed.data_dir.rglob("poison-1.parquet"))
    assert_error_shape(filed.call("regulator", "DELETE", "/v1/batches/hz-demo/poison-1"), 404, "batch_id")
    # The rows may come again (their identities went with the batch).
    assert upload(filed, "agent", body, "poison-1").json()["stored_rows"] == 2
    rows = filed.call("regulator", "GET", "/v1/audit").json()["audit"]
    removal = next(r for r in rows if r["object"] == "batch" and r["object_id"] == "poison-1")
    assert {k: removal[k] for k in ("actor", "role", "ftz_area", "enterprise_id", "action", "note")} == {
        "actor": "regulator", "role": "regulator", "ftz_area": "hangzhou", "enterprise_id": "hz-demo",
        "action": "delete", "note": "poisoned"}
    assert set(removal) >= {"at", "from", "to"}
    assert any(r["object"] == "filing" and r["object_id"] == FILING_ID for r in rows)
    ningbo = filed.call("regulator-ningbo", "GET", "/v1/audit").json()["audit"]
    assert not [r for r in ningbo if r["enterprise_id"] == "hz-demo"]
    assert_error_shape(filed.call("enterprise", "GET", "/v1/audit"), 403)


def test_a_regulator_lists_only_the_enterprises_of_its_area(filed: CollectorServer) -> None:
    got = filed.call("regulator", "GET", "/v1/enterprises").json()["enterprises"]
    assert {e["enterprise_id"] for e in got} == {"hz-demo", "hz-other"}
    nb = filed.call("regulator-ningbo", "GET", "/v1/enterprises").json()["enterprises"]
    assert [e["enterprise_id"] for e in nb] == ["nb-other"]


# --- item 13 and HTML: what is public, and what pages may load ------------------------------------------

def test_html_pages_carry_a_content_security_policy(filed: CollectorServer) -> None:
    made = filed.call("regulator", "POST", "/v1/checks/run", json={"filing_id": FILING_ID}).json()
    for who, path in ((None, "/docs"), ("regulator", f"/v1/reports/{made['report_id']}.html")):
        r = filed.call(who, "GET", path)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        csp = r.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
        assert r.headers["x-content-type-options"] == "nosniff"


def test_the_public_routes_describe_no_data(filed: CollectorServer) -> None:
    # /docs and /openapi.json are public by decision (README "Security"): they list routes, never data.
    for path in ("/openapi.json", "/docs"):
        r = httpx.get(filed.url + path, timeout=10)
        assert r.status_code == 200
        for stored in ("hz-demo", "nb-other", FILING_ID, "ten-flows", "sync.crm-vendor", "gw-hz-01"):
            assert stored not in r.text, (path, stored)
