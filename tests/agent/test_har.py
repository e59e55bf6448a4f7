"""HAR import (agent/har.py, agent/har_import.py): real tools' exports through the real command lines.

The fixtures (fixtures/har/, made by make.py) were exported by headless Chromium, Firefox ESR's own exporter
and mitmproxy's hardump from a local page that posts PI; `selfcheck FILE.har` must find exactly the persons
and field types the page sent. One test runs headless Chromium now, over its DevTools protocol.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.anomalies import AnomalySink
from agent.config import load_agent_config
from agent.handover import HandoverSink
from agent.har import HarError, HarLimits, is_har, read_har
from agent.inspector import InlineInspector
from agent.pipeline import build_engine
from agent.spool import Spool, spool_files
from tests.conftest import BIN, FIXTURES, ROOT

HAR = FIXTURES / "har"
TRUTH = json.loads((HAR / "truth.json").read_text())
FILING = ROOT / "configs" / "filings" / "demo.yaml"
TOOLS = ("chromium", "firefox", "mitmproxy")
ID = "110105198503121234"               # a resident ID of the fixtures' page: must never be echoed
needs_chromium = pytest.mark.skipif(shutil.which("chromium") is None,
                                    reason="needs chromium (Debian package chromium)")


def _rows(out: Path, record_type: str) -> list[dict[str, Any]]:
    return [r for f in spool_files(out, record_type) for r in pq.read_table(f).to_pylist()]


def _config(tmp: Path, extra: str = "") -> Path:
    cfg = tmp / "agent.yaml"
    cfg.write_text(f"agent_id: har\nsubject_key_file: {tmp / 'k.key'}\ndetector_workers: 0\n{extra}")
    return cfg


def _selfcheck(tmp: Path, *inputs: Path, extra: str = "") -> tuple[subprocess.CompletedProcess[str], Path]:
    out = tmp / "report"
    r = subprocess.run([str(BIN / "egress-collector"), "selfcheck", *map(str, inputs), "--filing",
                        str(FILING),
                        "--agent-config", str(_config(tmp, extra)), "--out", str(out), "--format", "json"],
                       capture_output=True, text=True, timeout=300, cwd=tmp)
    assert "Traceback" not in r.stderr
    return r, out


def _agent(tmp: Path, *hars: Path, extra: str = "") -> subprocess.CompletedProcess[str]:
    args = [a for h in hars for a in ("--har", str(h))]
    return subprocess.run([str(BIN / "egress-agent"), "run", *args, "--config", str(_config(tmp, extra)),
                           "--out", str(tmp / "spool")], capture_output=True, text=True, timeout=300, cwd=tmp)


def _assert_truth(report: dict[str, Any], truth: dict[str, Any] = TRUTH) -> None:
    dests = {d["server_name"]: d for d in report["observed"]["destinations"]}
    for name, want in truth["destinations"].items():
        got = dests[name]
        assert (got["persons_nonsensitive"], got["persons_sensitive"]) == (
            want["persons_nonsensitive"], want["persons_sensitive"]), name
        assert {ft: v["distinct_values"] for ft, v in got["field_types"].items()} == {
            ft: v["distinct_values"] for ft, v in want["field_types"].items()}, name


# -- the tools' exports -------------------------------------------------------------------------------


@pytest.mark.parametrize("tool", TOOLS)
def test_each_tools_export_gives_the_persons_and_field_types_sent(tool: str, tmp_path: Path) -> None:
    path = HAR / f"{tool}.har"
    assert path.stat().st_size < 100_000
    r, out = _selfcheck(tmp_path, path)
    assert r.returncode in (0, 1), r.stderr[-2000:]
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    _assert_truth(report)
    assert report["observed"]["coverage"]["by_visibility"]["har"] > 0
    flows = _rows(out / "records", "flows")
    assert {(f["src_ip"], f["visibility"], f["dst_ip"], f["dst_ip_source"]) for f in flows} == {
        ("0.0.0.0", "har", "127.0.0.1", "browser")}
    assert all(f["inspected"] and f["server_name"] == "pi-export.example" for f in flows)
    # Each tool cut one body (README): the anomaly says so, with lengths only.
    cut = [a for a in _rows(out / "records", "anomalies")
           if (a["layer"], a["name"]) == ("har", "body_truncated")]
    assert len(cut) == 1 and re.fullmatch(r"message \d+: \d+ bytes of \d+ handed over", cut[0]["detail"])


def test_chromium_entries_are_grouped_by_connection_firefox_ones_are_not(tmp_path: Path) -> None:
    def flows(tool: str) -> tuple[int, int]:
        entries = json.loads((HAR / f"{tool}.har").read_text(encoding="utf-8"))["log"]["entries"]
        got = read_har(HAR / f"{tool}.har", lambda *a: pytest.fail(f"anomaly {a}"))
        assert sum(len(f.messages) for f in got) == len(entries)
        return len(got), len({e.get("connection") for e in entries})

    assert flows("chromium") == (flows("chromium")[1], flows("chromium")[1])   # one flow per connection id
    n, _ = flows("chromium")
    assert n < len(json.loads((HAR / "chromium.har").read_text(encoding="utf-8"))["log"]["entries"])
    n, ports = flows("firefox")             # Firefox's `connection` is the server port, not an id
    entries = json.loads((HAR / "firefox.har").read_text(encoding="utf-8"))["log"]["entries"]
    assert ports == 1 and n == len(entries)


def test_captures_and_har_files_mix_in_one_selfcheck(tmp_path: Path) -> None:
    r, out = _selfcheck(tmp_path, FIXTURES / "pcaps" / "demo.pcap", HAR / "mitmproxy.har")
    assert r.returncode in (0, 1), r.stderr[-2000:]
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    _assert_truth(report)
    demo = json.loads((FIXTURES / "pcaps" / "demo.truth.json").read_text(encoding="utf-8"))
    names = {d["server_name"] for d in report["observed"]["destinations"]}
    abroad = {n for n, d in demo["destinations"].items() if d["cross_border"]}
    assert abroad and abroad <= names
    visibility = report["observed"]["coverage"]["by_visibility"]
    assert visibility["har"] > 0 and visibility["plaintext"] > 0


@needs_chromium
def test_headless_chromium_now_over_cdp_gives_the_truth(tmp_path: Path) -> None:
    from fixtures.har import cdp, pages

    with pages.page_server() as port:
        har = cdp.record(f"http://{pages.HOST}:{port}/", host_rules=f"MAP {pages.HOST} 127.0.0.1")
    path = tmp_path / "now.har"
    path.write_text(json.dumps(har, ensure_ascii=False), encoding="utf-8")
    r, out = _selfcheck(tmp_path, path)
    assert r.returncode in (0, 1), r.stderr[-2000:]
    _assert_truth(json.loads((out / "report.json").read_text(encoding="utf-8")), pages.truth())
    flows = _rows(out / "records", "flows")
    assert all(f["dst_ip_source"] == "browser" and f["src_ip"] == "0.0.0.0" for f in flows)
    assert not [a for a in _rows(out / "records", "anomalies") if a["name"] == "body_truncated"]


# -- what the reader makes of each field --------------------------------------------------------------


def _har(*entries: dict[str, Any], creator: str = "WebInspector") -> dict[str, Any]:
    return {"log": {"version": "1.2", "creator": {"name": creator, "version": "1"}, "entries": list(entries)}}


def _entry(url: str = "https://api.example.com/v1/upload?a=1", *, post: dict[str, Any] | None = None,
           **kw: Any) -> dict[str, Any]:
    request: dict[str, Any] = {"method": "POST", "url": url, "httpVersion": "http/1.1", "headers": [],
                               "headersSize": -1, "bodySize": kw.pop("bodySize", -1)}
    if post is not None:
        request["postData"] = post
    request["headers"] = kw.pop("headers", [])
    request["httpVersion"] = kw.pop("httpVersion", "http/1.1")
    return {"startedDateTime": "2026-03-01T10:00:00.000+08:00", "time": 250.0, "request": request,
            "response": {"status": 200}, **kw}


def _read(tmp: Path, har: dict[str, Any], **limits: int) -> tuple[list[Any], list[tuple[str, str]]]:
    path = tmp / "x.har"
    path.write_text(json.dumps(har, ensure_ascii=False), encoding="utf-8")
    seen: list[tuple[str, str]] = []
    flows = read_har(path, lambda name, detail, ts: seen.append((name, detail)), HarLimits(**limits))
    return flows, seen


def test_fields_become_a_flow_as_the_sink_wants_it(tmp_path: Path) -> None:
    body = json.dumps({"idNo": ID}).encode()
    [flow], seen = _read(tmp_path, _har(_entry(post={"mimeType": "application/json", "text": body.decode()},
                                               serverIPAddress="[2001:db8::1]", httpVersion="h2",
                                               connection="77", bodySize=len(body))))
    assert not seen
    assert (flow.visibility, flow.src_ip, flow.dst_ip, flow.server_name, flow.dst_port) == (
        "har", "0.0.0.0", "2001:db8::1", "api.example.com", 443)
    assert (flow.app, flow.alpn, flow.encrypted) == ("http2", "h2", True)
    assert flow.ts_start == 1772330400.0 and flow.ts_end == pytest.approx(1772330400.25)
    [message] = flow.messages
    assert (message.target, message.body, message.content_type, message.truncated) == (
        "/v1/upload?a=1", body, "application/json", False)
    assert flow.key.endswith(":77") and len(flow.key.split(":")[0]) == 16


def test_versions_ports_and_addresses(tmp_path: Path) -> None:
    flows, _ = _read(tmp_path, _har(_entry("http://a.example:8080/", httpVersion="h3",
                                           serverIPAddress="bogus"),
                                    _entry("http://b.example/", httpVersion="HTTP/2.0"),
                                    _entry("https://c.example/", serverIPAddress="10.0.0.1")))
    assert [(f.app, f.dst_port, f.dst_ip, f.encrypted) for f in flows] == [
        ("http3", 8080, None, False), ("http2", 80, None, False), ("http", 443, "10.0.0.1", True)]


def test_base64_bodies_and_params_are_decoded_or_rebuilt(tmp_path: Path) -> None:
    raw = "姓名=张三&身份证=" + ID
    flows, seen = _read(tmp_path, _har(
        _entry(post={"mimeType": "text/plain", "text": base64.b64encode(raw.encode()).decode(),
                     "encoding": "base64"}),
        _entry(post={"mimeType": "application/x-www-form-urlencoded",
                     "params": [{"name": "name", "value": "张三"}, {"name": "id", "value": ID}]}),
        _entry(post={"mimeType": "multipart/form-data",
                     "params": [{"name": "id", "value": ID},
                                {"name": "f", "value": "x", "fileName": "a.txt",
                                 "contentType": "text/plain"}]}),
        _entry(post={"mimeType": "text/plain", "text": "!!!", "encoding": "base64"})))
    assert [m.body for f in flows[:2] for m in f.messages] == [
        raw.encode(), b"name=%E5%BC%A0%E4%B8%89&id=" + ID.encode()]
    multipart = flows[2].messages[0]
    boundary = multipart.content_type.split("boundary=")[1]
    assert multipart.body.startswith(f"--{boundary}\r\nContent-Disposition: form-data; name=\"id\"".encode())
    assert b'filename="a.txt"\r\nContent-Type: text/plain\r\n\r\nx\r\n' in multipart.body
    assert seen == [("entry_invalid", "log.entries[3].request.postData.text: not base64")]


def test_what_a_page_sent_over_a_websocket_is_inspected_too(tmp_path: Path) -> None:
    frames = [{"type": "send", "opcode": 1, "data": json.dumps({"idNo": ID})},
              {"type": "receive", "opcode": 1, "data": "ignored: it came in"},
              {"type": "send", "opcode": 2, "data": base64.b64encode(b"\x00\x01").decode()}]
    [flow], _ = _read(tmp_path, _har(_entry("wss://ws.example/socket?t=1", _webSocketMessages=frames)))
    assert [(m.target, m.body) for m in flow.messages] == [
        ("/socket?t=1", b""), ("", json.dumps({"idNo": ID}).encode()), ("", b"\x00\x01")]
    assert flow.encrypted and flow.dst_port == 443


def test_latin1_decoded_text_gets_its_bytes_back(tmp_path: Path) -> None:
    name = "陈静".encode()
    flows, _ = _read(tmp_path, _har(_entry(post={"mimeType": "multipart/form-data; boundary=b",
                                                 "text": name.decode("latin-1")}),
                                    _entry(post={"mimeType": "text/plain", "text": "café"})))
    assert [f.messages[0].body for f in flows] == [name, "café".encode()]


@pytest.mark.parametrize(("entry", "size"), [
    (_entry(bodySize=500), 500),                                                         # no postData
    (_entry(post={"mimeType": "application/json", "text": None},
            headers=[{"name": "Content-Length", "value": "30041"}]), 30041),          # mitmproxy streamed
    (_entry(post={"mimeType": "application/json", "text": "{}"}, bodySize=900), 900),  # shorter
])
def test_bodies_the_tool_cut_are_marked(entry: dict[str, Any], size: int, tmp_path: Path) -> None:
    [flow], _ = _read(tmp_path, _har(entry))
    [message] = flow.messages
    assert (message.truncated, message.size) == (True, size)


def test_firefox_comment_marks_a_discarded_body_and_its_port_groups_nothing(tmp_path: Path) -> None:
    post = {"mimeType": "text/plain", "text": "abc", "comment": "Request bodies are not included."}
    flows, _ = _read(tmp_path, _har(_entry(post=post, connection="443"), _entry(connection="443"),
                                    creator="Firefox"))
    assert len(flows) == 2 and flows[0].messages[0].truncated and not flows[1].messages[0].truncated


def test_entries_that_never_left_the_browser_are_skipped(tmp_path: Path) -> None:
    flows, seen = _read(tmp_path, _har(_entry("data:text/plain,hi"), _entry(_fromCache="disk"),
                                       _entry("https://x.example/")))
    assert [f.server_name for f in flows] == ["x.example"] and not seen


def test_entries_of_one_connection_are_one_flow(tmp_path: Path) -> None:
    flows, _ = _read(tmp_path, _har(_entry(connection="5", serverIPAddress="8.8.8.8"),
                                    _entry("https://api.example.com/b", connection="5",
                                           serverIPAddress="8.8.8.8"),
                                    _entry(connection="6", serverIPAddress="8.8.8.8"), _entry(), _entry()))
    assert [len(f.messages) for f in flows] == [2, 1, 1, 1]
    assert len({f.key for f in flows}) == 4


def test_a_flow_without_an_address_is_resolved_by_the_sink(tmp_path: Path) -> None:
    key = tmp_path / "k.key"
    key.write_bytes(b"har-test-key-not-a-secret-000000")
    config = load_agent_config(None, agent_id="a1", subject_key_file=str(key))
    anomalies = AnomalySink()
    spool = Spool(tmp_path / "out", "a1", "E1")
    sink = HandoverSink(config, spool, InlineInspector(build_engine(config), spool, anomalies), anomalies,
                        resolve={"api.example.com": "8.8.8.8"}.get)
    flows, _ = _read(tmp_path, _har(_entry(), _entry(serverIPAddress="8.8.4.4")))
    for flow in flows:
        sink.add(flow, wait_for="x")        # a HAR flow with its address is not held
    sink.finish()
    rows = _rows(tmp_path / "out", "flows")
    assert sorted((r["dst_ip"], r["dst_ip_source"]) for r in rows) == [("8.8.4.4", "browser"),
                                                                      ("8.8.8.8", "resolved")]


# -- hostile files ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("content", "message"), [
    (b"not json at all", r"x\.har: \(document\): not JSON \(Expecting value at line 1, column 1\)"),
    (b'{"log": {"entries": 5}}', r"x\.har: log\.entries: not a list"),
    (b'{"log": []}', r"x\.har: log: not an object"),
    (b'{"nolog": 1}', r"x\.har: log: missing"),
    (b"[" * 100_000 + b"]" * 100_000, r"x\.har: \(document\): nested deeper than the JSON reader allows"),
    (b"\xff\xfe\x00garbage", r"x\.har: \(document\): not JSON.*"),
])
def test_a_file_that_is_no_har_is_one_line_and_exit_2(content: bytes, message: str, tmp_path: Path) -> None:
    path = tmp_path / "x.har"
    path.write_bytes(content)
    r = _agent(tmp_path, path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    [line] = r.stderr.strip().splitlines()
    assert re.fullmatch(rf"egress-agent: error: {tmp_path}/{message}", line), line
    r, _ = _selfcheck(tmp_path, path)
    assert r.returncode == 2
    [line] = r.stderr.strip().splitlines()
    assert re.search(message, line), line


def test_a_file_over_the_cap_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    path = tmp_path / "big.har"
    path.write_text(json.dumps(_har(*[_entry()] * 50)))
    r = _agent(tmp_path, path, extra="har: {max_bytes: 1000}\n")
    assert r.returncode == 2
    assert re.fullmatch(rf"egress-agent: error: {path}: \d+ bytes, more than har.max_bytes \(1000\)",
                        r.stderr.strip())
    r = _agent(tmp_path, path, extra="har: {max_entries: 10}\n")
    assert r.returncode == 2 and "log.entries: 50 entries, more than har.max_entries (10)" in r.stderr


def test_one_bad_entry_is_an_anomaly_and_the_rest_is_inspected(tmp_path: Path) -> None:
    good = _entry(post={"mimeType": "application/json",
                        "text": json.dumps({"customers": [{"姓名": "张三", "身份证号": ID}]},
                                           ensure_ascii=False)},
                  serverIPAddress="8.8.8.8")
    bad = _entry(f"https://x.example:99999/?id={ID}")
    path = tmp_path / "mixed.har"
    path.write_text(json.dumps(_har(bad, good, {"request": {"url": ID}}), ensure_ascii=False))
    r = _agent(tmp_path, path)
    assert r.returncode == 0, r.stderr
    spool = tmp_path / "spool"
    invalid = [a for a in _rows(spool, "anomalies") if a["name"] == "entry_invalid"]
    assert [(a["layer"], a["detail"]) for a in invalid] == [
        ("har", "mixed.har: log.entries[0].request.url: not a URL"),
        ("har", "mixed.har: log.entries[2].request.url: not an http(s) URL")]
    assert {d["field_type"] for d in _rows(spool, "detections")} >= {"resident_id_cn"}
    [flow] = _rows(spool, "flows")
    assert flow["inspected"] and flow["visibility"] == "har"
    assert ID not in r.stdout + r.stderr + json.dumps(invalid, ensure_ascii=False)


def test_har_is_told_by_its_name_or_its_first_byte(tmp_path: Path) -> None:
    named, braced, pcap = tmp_path / "a.HAR", tmp_path / "export.json", FIXTURES / "pcaps" / "demo.pcap"
    named.write_text("whatever")
    braced.write_text('  \n{"log": {}}')
    assert is_har(named) and is_har(braced) and not is_har(pcap)


def test_run_takes_one_kind_of_input(tmp_path: Path) -> None:
    r = subprocess.run([str(BIN / "egress-agent"), "run", "--har", str(HAR / "mitmproxy.har"), "--pcap",
                        str(FIXTURES / "pcaps" / "demo.pcap"), "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr.strip() == "egress-agent: error: give either --pcap FILE…, --har FILE… or --iface IFACE"


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                 max_size=4), max_leaves=20)
_field = st.sampled_from(["request", "url", "method", "postData", "text", "params", "encoding", "mimeType",
                          "headers", "name", "value", "startedDateTime", "time", "bodySize", "connection",
                          "serverIPAddress", "httpVersion", "fileName", "_fromCache", "response", "comment"])
_harish = st.recursive(_json, lambda inner: st.dictionaries(_field, inner, max_size=6), max_leaves=30)


_plausible = st.fixed_dictionaries(
    {"startedDateTime": st.sampled_from(["2026-03-01T10:00:00Z", "0001-01-01T00:00:00+14:00", "x"]) | _json,
     "request": st.fixed_dictionaries(
         {"url": st.sampled_from(["https://a.example/p?q=1", "http://[::1]:80/", "ws://b/", "https://:0/"]),
          "method": st.sampled_from(["POST", "GET"])},
         optional={"postData": _harish | st.fixed_dictionaries({}, optional={
             "text": st.text(max_size=30) | _json, "encoding": st.sampled_from(["base64", "x"]),
             "params": st.lists(_harish, max_size=3), "mimeType": st.sampled_from(["multipart/x", "a/b"]),
             "comment": st.text(max_size=5)}),
             "headers": st.lists(_harish, max_size=3), "bodySize": _json, "httpVersion": _json})},
    optional={"connection": _json, "serverIPAddress": _json, "time": _json, "response": _json,
              "_webSocketMessages": st.lists(_harish | st.fixed_dictionaries(
                  {"type": st.just("send"), "opcode": st.sampled_from([1, 2]), "data": st.text(max_size=8)}),
                  max_size=3)})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entries=st.lists(_harish | _plausible, max_size=5),
       creator=st.sampled_from(["Firefox", "WebInspector"]))
def test_random_har_shaped_json_never_raises_anything_but_har_error(entries: list[Any], creator: str,
                                                                    tmp_path: Path) -> None:
    with contextlib.suppress(HarError):
        _read(tmp_path, _har(*entries, creator=creator))
