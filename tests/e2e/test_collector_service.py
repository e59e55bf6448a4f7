"""The collector service end to end: the real `egress-collector serve` process over HTTP, the real agent
shipping the demo capture to it twice, a regulator's spot check, and the error paths (DESIGN §9).

One server for the module (started once: uvicorn plus DuckDB take a few seconds); the steps that change
its state run in order inside the `shipped` fixture, and the tests read what they left behind.
"""

from __future__ import annotations

import copy
import datetime as dt
import io
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest
import yaml

from tests.collector_server import CollectorServer, demo_filing, start_collector
from tests.conftest import BIN, FIXTURES, ROOT

DEMO = FIXTURES / "pcaps" / "demo.pcap"
TRUTH = json.loads((FIXTURES / "pcaps" / "demo.truth.json").read_text(encoding="utf-8"))
FILING_ID = "ZJFTZ-HZ-2026-0107"
CST = dt.timezone(dt.timedelta(hours=8))
MAX_UPLOAD = 2_000_000
# The check period is the demo capture's year, whatever year the suite runs in.
YEAR = dt.datetime.fromisoformat(TRUTH["start"]).astimezone(CST).year
PERIOD = {"from": f"{YEAR}-01-01", "to": f"{YEAR}-12-31"}

Server = CollectorServer


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("collector")
    # One scheduled run, some seconds after start (six-field cron, seconds first, Asia/Shanghai).
    at = dt.datetime.now(CST).replace(microsecond=0) + dt.timedelta(seconds=25)
    srv = start_collector(tmp, schedule={"spot_checks": f"{at.second} {at.minute} {at.hour} * * *"},
                          max_upload_bytes=MAX_UPLOAD)
    srv.facts["schedule_at"] = at
    try:
        yield srv
    finally:
        # A clean stop on SIGTERM: uvicorn finishes requests, the scheduler and DuckDB close, and the process
        # ends by the signal it was sent (uvicorn re-raises it after its graceful shutdown).
        srv.stop()


def run_agent(srv: Server, tmp: Path, out: str) -> subprocess.CompletedProcess[str]:
    token_file = tmp / "agent.token"
    token_file.write_text(srv.tokens["agent"] + "\n")
    cfg = tmp / "agent.yaml"
    # The same agent id and subject key for both runs: a replay, not a second agent.
    cfg.write_text(f"agent_id: gw-hz-01\nsubject_key_file: {tmp / 'k.key'}\ndetector_workers: 1\n")
    return subprocess.run([str(BIN / "egress-agent"), "run", "--pcap", str(DEMO), "--config", str(cfg),
                           "--out", str(tmp / out), "--collector", srv.url, "--token-file", str(token_file)],
                          capture_output=True, text=True, timeout=300, cwd=tmp)


def run_check(srv: Server) -> dict[str, Any]:
    r = srv.call("regulator", "POST", "/v1/checks/run", json={"filing_id": FILING_ID, **PERIOD})
    assert r.status_code == 201, r.text
    report = srv.call("regulator", "GET", f"/v1/reports/{r.json()['report_id']}")
    assert report.status_code == 200, report.text
    return report.json()


@pytest.fixture(scope="module")
def shipped(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Server:
    tmp = tmp_path_factory.mktemp("agent")
    f = server.facts
    f["put_first"] = server.call("regulator", "PUT", f"/v1/filings/{FILING_ID}",
                                 content=yaml.safe_dump(demo_filing(), allow_unicode=True).encode())
    f["put_again_as_json"] = server.call("enterprise", "PUT", f"/v1/filings/{FILING_ID}",
                                         json=demo_filing())
    f["agent_1"] = run_agent(server, tmp, "spool1")
    f["report_1"] = run_check(server)
    f["agent_2"] = run_agent(server, tmp, "spool2")
    f["report_2"] = run_check(server)
    f["spools_left"] = sorted(p.name for p in (tmp / "spool1").rglob("*.parquet")) + \
        sorted(p.name for p in (tmp / "spool2").rglob("*.parquet"))
    return server


# --- the whole path ---------------------------------------------------------------------------------

def test_a_regulator_uploads_a_filing_and_an_identical_upload_is_no_new_version(shipped: Server) -> None:
    first, again = shipped.facts["put_first"], shipped.facts["put_again_as_json"]
    assert first.status_code == 201 and first.json()["version"] == 1, first.text
    assert again.status_code == 200 and again.json()["version"] == 1, again.text


def test_the_agent_ships_its_spool_and_deletes_only_acknowledged_files(shipped: Server) -> None:
    a1, a2 = shipped.facts["agent_1"], shipped.facts["agent_2"]
    assert a1.returncode == 0, a1.stderr
    assert a2.returncode == 0, a2.stderr
    assert "0 pending, 0 rejected" in a1.stdout and "0 pending, 0 rejected" in a2.stdout
    assert shipped.facts["spools_left"] == []


def test_the_report_names_every_planted_finding_and_nothing_for_the_consistent_scenario(shipped: Server
                                                                                       ) -> None:
    report = shipped.facts["report_1"]
    got = {(f["check"], f["scenario_id"], f["subject"]) for f in report["findings"]}
    expected = {(f["check"], f["scenario_id"], f["subject"]) for f in TRUTH["expected_findings"]}
    assert expected <= got
    # The generator lists findings other checks may add for the same planted data (route_threshold).
    also = {(f["check"], f["scenario_id"]) for f in TRUTH.get("may_also_fire", [])}
    assert {(c, s) for c, s, _ in got - expected} <= also, got - expected
    assert not [f for f in report["findings"] if f["scenario_id"] == "order-fulfilment"]
    assert report["verdict"] == "inconsistent"
    assert report["filing_version"] == 1


def test_replaying_the_same_capture_changes_no_count(shipped: Server) -> None:
    r1, r2 = shipped.facts["report_1"], shipped.facts["report_2"]
    assert r1["observed"] == r2["observed"]
    assert [(f["check"], f["subject"], f["observed"]) for f in r1["findings"]] == \
        [(f["check"], f["subject"], f["observed"]) for f in r2["findings"]]
    crm = next(d for d in r1["observed"]["destinations"] if d["server_name"] == "sync.crm-vendor.example")
    t = TRUTH["destinations"]["sync.crm-vendor.example"]
    assert (crm["persons_nonsensitive"], crm["persons_sensitive"]) == (t["persons_nonsensitive"],
                                                                      t["persons_sensitive"])


def test_reports_are_listed_newest_first_and_served_as_html(shipped: Server) -> None:
    listed = shipped.call("enterprise", "GET", "/v1/reports", params={"filing_id": FILING_ID})
    assert listed.status_code == 200
    rows = listed.json()["reports"]
    assert len(rows) >= 2
    assert [r["generated_at"] for r in rows] == sorted((r["generated_at"] for r in rows), reverse=True)
    newest = rows[0]["report_id"]
    page = shipped.call("enterprise", "GET", f"/v1/reports/{newest}.html")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<svg" in page.text and FILING_ID in page.text
    negotiated = shipped.call("regulator", "GET", f"/v1/reports/{newest}", headers={"Accept": "text/html"})
    assert negotiated.headers["content-type"].startswith("text/html")


def test_the_scheduled_run_stores_a_report(shipped: Server) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        rows = shipped.call("regulator", "GET", "/v1/reports").json()["reports"]
        if any(r["trigger"] == "schedule" for r in rows):
            return
        time.sleep(1)
    tail = shipped.log.read_text()[-2000:]
    raise AssertionError(f"no scheduled report after {shipped.facts['schedule_at']}:\n{tail}")


# --- who may do what ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("who", "method", "path", "status"), [
    (None, "GET", f"/v1/filings/{FILING_ID}", 401),
    ("bogus", "GET", f"/v1/filings/{FILING_ID}", 401),
    # Another tenant's filing answers like one that does not exist (no probing of filing numbers).
    ("enterprise-other", "GET", f"/v1/filings/{FILING_ID}", 404),
    ("regulator-ningbo", "GET", f"/v1/filings/{FILING_ID}", 404),
    ("agent", "GET", f"/v1/filings/{FILING_ID}", 403),
    ("enterprise", "GET", f"/v1/filings/{FILING_ID}", 200),
    ("regulator", "GET", f"/v1/filings/{FILING_ID}", 200),
    ("enterprise-other", "GET", f"/v1/reports?filing_id={FILING_ID}", 404),
    ("enterprise", "POST", "/v1/checks/run", 403),
    ("regulator-ningbo", "POST", "/v1/checks/run", 404),
    (None, "GET", "/healthz", 200),
])
def test_tokens_reach_only_their_own_data(shipped: Server, who: str | None, method: str, path: str,
                                          status: int) -> None:
    tokens = {**shipped.tokens, "bogus": "not-a-token"}
    headers = {"Authorization": f"Bearer {tokens[who]}"} if who else {}
    kw = {"json": {"filing_id": FILING_ID}} if method == "POST" else {}
    r = httpx.request(method, shipped.url + path, headers=headers, timeout=60, **kw)
    assert r.status_code == status, r.text
    if status >= 400:
        err = r.json()["error"]
        assert err["status"] == status and err["message"]


def _flows_parquet(enterprise: str | None = "hz-demo", drop: str | None = None) -> bytes:
    from agent.records import Envelope, to_table
    from tests.collector.builders import flow

    table = to_table("flows", [flow("e2e-f1")], Envelope("gw-hz-01", enterprise, "b"))
    if drop:
        table = table.drop_columns([drop])
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


@pytest.mark.parametrize(("who", "headers", "body", "status", "field"), [
    ("agent", {"X-Record-Type": "flows", "X-Batch-Id": "e2e-bad-1"}, b"not parquet", 422, "body"),
    ("agent", {"X-Record-Type": "detections", "X-Batch-Id": "e2e-bad-2"}, "flows", 422, "column"),
    ("agent", {"X-Record-Type": "flows", "X-Batch-Id": "e2e-bad-3"}, "flows-no-bytes_out", 422,
     "column bytes_out"),
    ("agent", {"X-Record-Type": "spans", "X-Batch-Id": "e2e-bad-4"}, "flows", 422, "header X-Record-Type"),
    ("agent", {"X-Record-Type": "flows"}, "flows", 422, "header X-Batch-Id"),
    ("agent-other", {"X-Record-Type": "flows", "X-Batch-Id": "e2e-bad-5"}, "flows", 403,
     "column enterprise_id"),
    ("regulator", {"X-Record-Type": "flows", "X-Batch-Id": "e2e-bad-6"}, "flows", 403, None),
    ("agent", {"X-Record-Type": "flows", "X-Batch-Id": "e2e-bad-7"}, b"\0" * (MAX_UPLOAD + 1), 413, "body"),
])
def test_bad_batches_get_a_clear_4xx_and_store_nothing(shipped: Server, who: str, headers: dict[str, str],
                                                      body: bytes | str, status: int, field: str | None
                                                      ) -> None:
    if body == "flows":
        body = _flows_parquet()
    elif body == "flows-no-bytes_out":
        body = _flows_parquet(drop="bytes_out")
    assert isinstance(body, bytes)
    r = shipped.call(who, "POST", "/v1/batches", content=body, headers=headers)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["status"] == status
    if field is not None:
        assert (err["field"] or "").startswith(field), err
    if "X-Batch-Id" in headers:
        # Nothing stored half-way: the batch id is still free for a correct upload.
        assert not list(shipped.data_dir.rglob(f"{headers['X-Batch-Id']}.parquet"))


def test_a_retried_batch_is_stored_once(shipped: Server) -> None:
    body = _flows_parquet()
    headers = {"X-Record-Type": "flows", "X-Batch-Id": "e2e-retry-1"}
    first = shipped.call("agent", "POST", "/v1/batches", content=body, headers=headers)
    again = shipped.call("agent", "POST", "/v1/batches", content=body, headers=headers)
    assert (first.status_code, again.status_code) == (201, 200), (first.text, again.text)
    assert first.json()["stored_rows"] == 1 and again.json()["status"] == "already_stored"
    assert len(list(shipped.data_dir.rglob("e2e-retry-1.parquet"))) == 1


def test_a_filing_that_fails_validation_names_the_field_and_keeps_the_stored_version(shipped: Server
                                                                                    ) -> None:
    bad = copy.deepcopy(demo_filing())
    bad["scenarios"][0]["data_catalog"][0]["field_type"] = "shoe_size"
    r = shipped.call("regulator", "PUT", f"/v1/filings/{FILING_ID}", json=bad)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == "scenarios[0].data_catalog[0].field_type"
    kept = shipped.call("regulator", "GET", f"/v1/filings/{FILING_ID}").json()
    assert kept["version"] == 1
    # The registry, not the body, says where hz-demo is: a filing naming another area is refused.
    other_area = {**demo_filing(), "ftz_area": "ningbo"}
    moved = shipped.call("regulator", "PUT", f"/v1/filings/{FILING_ID}", json=other_area)
    assert moved.status_code == 422 and moved.json()["error"]["field"] == "ftz_area", moved.text


def test_negative_lists_are_versioned_and_an_unknown_field_type_is_refused(shipped: Server) -> None:
    text = (ROOT / "configs" / "negative_lists" / "zhejiang-example.yaml").read_text(encoding="utf-8")
    example = json.loads(json.dumps(yaml.safe_load(text), default=str))
    list_id = example["list_id"]
    first = shipped.call("regulator", "PUT", f"/v1/negative-lists/{list_id}", json=example)
    assert first.status_code == 201, first.text
    changed = copy.deepcopy(example)
    changed["title"] = str(changed.get("title", "")) + " (rev)"
    second = shipped.call("regulator", "PUT", f"/v1/negative-lists/{list_id}", json=changed)
    assert (second.status_code, second.json()["version"]) == (201, first.json()["version"] + 1)
    broken = copy.deepcopy(example)
    broken["sectors"][0]["entries"][0]["field_types"] = ["shoe_size"]
    bad = shipped.call("regulator", "PUT", f"/v1/negative-lists/{list_id}", json=broken)
    assert bad.status_code == 422, bad.text
    assert "field_types" in bad.json()["error"]["field"]
    assert shipped.call("enterprise", "PUT", f"/v1/negative-lists/{list_id}", json=example).status_code == 403
    report = run_check(shipped)
    assert {"list_id": list_id, "version": str(second.json()["version"])}.items() <= \
        next(iter(report["negative_lists"])).items()


def test_a_check_for_an_unknown_filing_is_404_naming_the_filing(shipped: Server) -> None:
    r = shipped.call("regulator", "POST", "/v1/checks/run", json={"filing_id": "NO-SUCH"})
    assert r.status_code == 404
    assert r.json()["error"]["field"] == "filing_id"


def test_docs_page_needs_no_cdn(shipped: Server) -> None:
    page = httpx.get(shipped.url + "/docs", timeout=10)
    assert page.status_code == 200 and "/v1/batches" in page.text
    assert "cdn" not in page.text.lower() and "<script" not in page.text.lower()



# --- what /openapi.json documents is what the service answers ----------------------------------------

def _conforms(api: dict[str, Any], schema: dict[str, Any], value: Any, where: str) -> None:
    """`value` has the shape `schema` documents: no undocumented field, every required one, each value of
    its documented type (a small JSON Schema reading: what pydantic writes for these models)."""
    if "$ref" in schema:
        name = schema["$ref"].removeprefix("#/components/schemas/")
        return _conforms(api, api["components"]["schemas"][name], value, f"{where}<{name}>")
    if "anyOf" in schema:
        misses = []
        for option in schema["anyOf"]:
            try:
                return _conforms(api, option, value, where)
            except AssertionError as e:
                misses.append(str(e))
        raise AssertionError(f"{where}: {value!r} is none of {misses}")
    kind = schema.get("type")
    if "const" in schema or "enum" in schema:
        assert value in schema.get("enum", [schema.get("const")]), (where, value)
    if kind == "object":
        assert isinstance(value, dict), (where, value)
        props = schema.get("properties")
        if props is not None:
            assert set(value) <= set(props), f"{where}: undocumented {set(value) - set(props)}"
            assert set(schema.get("required", ())) <= set(value), f"{where}: missing {schema['required']}"
            for key, item in value.items():
                _conforms(api, props[key], item, f"{where}.{key}")
    elif kind == "array":
        assert isinstance(value, list), (where, value)
        for i, item in enumerate(value):
            _conforms(api, schema.get("items", {}), item, f"{where}[{i}]")
    elif kind is not None:
        types = {"string": str, "integer": int, "number": int | float, "boolean": bool, "null": type(None)}
        assert isinstance(value, types[kind]) and (kind == "boolean" or not isinstance(value, bool)), \
            (where, kind, value)
    return None


def test_openapi_documents_every_answer_as_it_is_served(shipped: Server) -> None:
    api = httpx.get(shipped.url + "/openapi.json", timeout=10).json()

    def check(method: str, path: str, response: httpx.Response, route: str | None = None) -> None:
        status = str(response.status_code)
        documented = api["paths"][route or path][method.lower()]["responses"]
        entry = documented.get(status) or documented[status[0] + "XX"]
        _conforms(api, entry["content"]["application/json"]["schema"], response.json(), f"{method} {path}")

    report_id = shipped.call("regulator", "GET", "/v1/reports").json()["reports"][0]["report_id"]
    for who, path, route in [
        (None, "/healthz", None),
        ("regulator", f"/v1/filings/{FILING_ID}", "/v1/filings/{filing_id}"),
        ("enterprise", "/v1/reports", None),
        ("regulator", f"/v1/reports/{report_id}", "/v1/reports/{report_id}"),
        ("regulator", "/v1/enterprises", None),
        ("regulator", "/v1/audit", None),
        ("agent", "/v1/reports", None),                                  # 403: the one error shape
        ("regulator", "/v1/filings/NO-SUCH", "/v1/filings/{filing_id}"),  # 404
    ]:
        r = shipped.call(who, "GET", path)
        assert r.status_code in (200, 403, 404), r.text
        check("GET", path, r, route)
    check("PUT", "/v1/filings/{filing_id}", shipped.facts["put_first"])
    check("PUT", "/v1/filings/{filing_id}", shipped.facts["put_again_as_json"])
    batch = shipped.call("agent", "POST", "/v1/batches", content=_flows_parquet(),
                         headers={"X-Record-Type": "flows", "X-Batch-Id": "e2e-openapi-1"})
    check("POST", "/v1/batches", batch)
    run = shipped.call("regulator", "POST", "/v1/checks/run", json={"filing_id": FILING_ID, **PERIOD})
    check("POST", "/v1/checks/run", run)
    removed = shipped.call("regulator", "DELETE", "/v1/batches/hz-demo/e2e-openapi-1")
    check("DELETE", "/v1/batches/{enterprise_id}/{batch_id}", removed)
    # The names are the contract (DESIGN §9, §9.1; agents and the console read them): none renamed.
    for name, fields in CONTRACT.items():
        assert set(api["components"]["schemas"][name]["properties"]) == fields, name


CONTRACT = {
    "ErrorDetail": {"status", "code", "message", "field"},
    "BatchStored": {"batch_id", "record_type", "rows", "stored_rows", "duplicate_rows", "status"},
    "DocumentVersion": {"kind", "id", "version", "sha256", "stored_at", "created"},
    "FilingVersion": {"kind", "id", "version", "sha256", "stored_at", "created", "filing"},
    "NegativeListVersion": {"kind", "id", "version", "sha256", "stored_at", "created", "negative_list"},
    "CheckRunDone": {"report_id", "verdict", "findings"},
    "ReportRow": {"report_id", "filing_id", "filing_version", "enterprise_id", "ftz_area", "generated_at",
                  "period_from", "period_to", "verdict", "findings", "complete", "trigger"},
    "EnterpriseOut": {"enterprise_id", "name", "ftz_area"},
    "RemovedBatch": {"enterprise_id", "batch_id", "record_type", "agent_id", "rows", "stored_rows", "status"},
    "AuditRow": {"seq", "at", "actor", "role", "ftz_area", "enterprise_id", "object", "object_id", "action",
                 "from", "to", "note"},
}


# Every route answers in one order: 401, then a malformed path or query parameter (422), then the role
# (403), then whether the thing exists for this token (404).
@pytest.mark.parametrize(("who", "method", "path", "params", "status", "field"), [
    (None, "GET", "/v1/audit", {"limit": 0}, 401, None),
    ("enterprise", "GET", "/v1/audit", {"limit": 0}, 422, "query.limit"),
    ("enterprise", "GET", "/v1/audit", None, 403, None),
    ("agent", "GET", f"/v1/filings/{FILING_ID}", {"version": 0}, 422, "query.version"),
    ("agent", "GET", "/v1/filings/NO-SUCH", {"version": 1}, 403, None),
    ("regulator", "GET", f"/v1/filings/{FILING_ID}", {"version": 99}, 404, "filing_id"),
    ("enterprise", "DELETE", "/v1/batches/hz-demo/no-such", {"note": "n" * 501}, 422, "query.note"),
    ("enterprise", "DELETE", "/v1/batches/hz-demo/no-such", None, 403, None),
    ("regulator-ningbo", "DELETE", "/v1/batches/hz-demo/no-such", None, 403, None),
    ("regulator", "DELETE", "/v1/batches/hz-demo/no-such", None, 404, "batch_id"),
    ("agent", "GET", "/v1/reports/no-such", None, 403, None),
    ("enterprise", "GET", "/v1/reports/no-such.html", None, 404, "report_id"),
])
def test_answers_come_in_one_order(server: Server, who: str | None, method: str, path: str,
                                   params: dict[str, Any] | None, status: int, field: str | None) -> None:
    r = server.call(who, method, path, params=params)
    assert r.status_code == status, r.text
    assert r.json()["error"]["field"] == field, r.text
