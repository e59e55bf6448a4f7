"""Content handed over by a proxy or a browser becomes the records a capture writes (agent/handover.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from agent.anomalies import AnomalySink
from agent.config import AgentConfig, load_agent_config
from agent.handover import UNKNOWN_ADDRESS, HandedFlow, HandedMessage, HandoverSink
from agent.inspector import InlineInspector
from agent.pipeline import build_engine, run_capture_stats
from agent.spool import Spool, spool_files
from tests.conftest import FIXTURES

ABROAD = "8.8.8.8"          # geo-IP: US
MAINLAND = "114.114.114.114"
PEOPLE = [{"name": "张三", "idNo": "11010519491231002X", "mobile": "13812345678"},
          {"name": "李四", "idNo": "440301199003071230", "mobile": "13912345670"}]
BODY = json.dumps({"customers": PEOPLE}, ensure_ascii=False).encode()


def _rows(out: Path, record_type: str) -> list[dict]:
    return [r for f in spool_files(out, record_type) for r in pq.read_table(f).to_pylist()]


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    key = tmp_path_factory.mktemp("key") / "k.key"
    key.write_bytes(b"handover-test-key-not-secret-000")
    return build_engine(load_agent_config(None, subject_key_file=str(key)))


def _sink(tmp_path: Path, engine, config: AgentConfig | None = None, **kw) -> HandoverSink:  # type: ignore[no-untyped-def]
    config = config or load_agent_config(None, agent_id="a1")
    anomalies = AnomalySink()
    spool = Spool(tmp_path, config.agent_id, "E1")
    return HandoverSink(config, spool, InlineInspector(engine, spool, anomalies), anomalies, **kw)


def _flow(key: str = "t1", **kw) -> HandedFlow:
    fields = dict(key=key, visibility="proxy", ts_start=1_760_000_000.0, ts_end=1_760_000_000.5,
                  server_name="api.example.com", dst_port=443, src_ip="10.1.2.3", src_port=51000,
                  messages=(HandedMessage("/upload?x=1", BODY, "application/json"),),
                  bytes_out=len(BODY) + 120, encrypted=True)
    fields.update(kw)
    return HandedFlow(**fields)  # type: ignore[arg-type]


def test_a_proxied_export_is_inspected_and_written_as_a_proxy_flow(tmp_path: Path, engine) -> None:  # type: ignore[no-untyped-def]
    sink = _sink(tmp_path, engine)
    flow_id = sink.add(_flow(dst_ip=ABROAD))
    stats = sink.finish()
    [row] = _rows(tmp_path, "flows")
    assert row["flow_id"] == flow_id and row["visibility"] == "proxy" and row["inspected"]
    assert (row["src_ip"], row["dst_ip"], row["dst_ip_source"]) == ("10.1.2.3", ABROAD, "proxy")
    assert row["dst_country"] == "US" and row["cross_border"] and row["uninspected_reason"] is None
    assert row["bytes_out"] == len(BODY) + 120 and row["requests"] == 1
    assert row["server_name"] == "api.example.com"
    types = {d["field_type"] for d in _rows(tmp_path, "detections")}
    assert {"resident_id_cn", "mobile_cn", "person_name"} <= types, types
    values = _rows(tmp_path, "pi_values")
    assert stats.pi_values == len(values)
    assert len({v["value_key"] for v in values if v["field_type"] == "resident_id_cn"}) == 2
    assert all(v["flow_id"] == flow_id for v in values)


def test_a_held_flow_takes_the_address_the_proxy_names_later(tmp_path: Path, engine) -> None:  # type: ignore[no-untyped-def]
    sink = _sink(tmp_path, engine, resolve=lambda name: pytest.fail("resolved although named"))
    sink.add(_flow(), wait_for="x1", now=100.0)
    assert sink.waiting == 1 and not _rows(tmp_path, "detections")
    assert sink.address("x1", ABROAD) and not sink.address("x1", ABROAD)
    sink.finish()
    [row] = _rows(tmp_path, "flows")
    assert (row["dst_ip"], row["dst_ip_source"], row["inspected"]) == (ABROAD, "proxy", True)


def test_a_flow_nobody_names_is_resolved_after_the_wait_or_marked_unknown(tmp_path: Path, engine) -> None:  # type: ignore[no-untyped-def]
    names = {"api.example.com": ABROAD}
    asked: list[str] = []

    def resolve(name: str) -> str | None:
        asked.append(name)
        return names.get(name)

    sink = _sink(tmp_path, engine, resolve=resolve, address_wait_s=5.0)
    sink.add(_flow("a"), wait_for="a", now=100.0)
    sink.add(_flow("b", server_name="nowhere.invalid"), wait_for="b", now=103.0)
    sink.add(_flow("c"), wait_for="c", now=104.0)
    sink.tick(104.9)
    assert sink.waiting == 3 and not _rows(tmp_path, "flows")
    sink.tick(105.0)
    assert sink.waiting == 2
    sink.finish()
    rows = {r["server_name"] or r["dst_ip"]: r for r in _rows(tmp_path, "flows")}
    assert asked == ["api.example.com", "nowhere.invalid"]        # cached per name
    assert rows["api.example.com"]["dst_ip_source"] == "resolved"
    unknown = rows["nowhere.invalid"]
    assert (unknown["dst_ip"], unknown["dst_ip_source"]) == (UNKNOWN_ADDRESS, "unknown")
    # Unknown counts as cross-border (DESIGN §3): still inspected.
    assert unknown["dst_country"] is None and unknown["cross_border"] and unknown["inspected"]


def test_a_domestic_destination_is_not_inspected(tmp_path: Path, engine) -> None:  # type: ignore[no-untyped-def]
    sink = _sink(tmp_path, engine)
    sink.add(_flow(dst_ip=MAINLAND))
    sink.finish()
    [row] = _rows(tmp_path, "flows")
    assert row["dst_country"] == "CN" and not row["cross_border"] and not row["inspected"]
    assert row["uninspected_reason"] is None and not _rows(tmp_path, "pi_values")


def test_har_entries_have_no_client_address_and_are_exports(tmp_path: Path, engine) -> None:  # type: ignore[no-untyped-def]
    sink = _sink(tmp_path, engine)
    sink.add(_flow(visibility="har", src_ip=UNKNOWN_ADDRESS, src_port=0, dst_ip=ABROAD))
    sink.finish()
    [row] = _rows(tmp_path, "flows")
    assert (row["src_ip"], row["visibility"], row["dst_ip_source"]) == ("0.0.0.0", "har", "browser")
    assert row["inspected"] and _rows(tmp_path, "pi_values")


def test_a_cut_body_is_an_anomaly_and_still_inspected(tmp_path: Path, engine) -> None:  # type: ignore[no-untyped-def]
    sink = _sink(tmp_path, engine)
    cut = HandedMessage("/", BODY, "application/json", truncated=True, size=10 * len(BODY))
    sink.add(_flow(visibility="har", dst_ip=ABROAD, messages=(cut,)))
    sink.finish()
    [anomaly] = _rows(tmp_path, "anomalies")
    assert (anomaly["layer"], anomaly["name"]) == ("har", "body_truncated")
    assert str(10 * len(BODY)) in anomaly["detail"]
    assert _rows(tmp_path, "flows")[0]["inspected"]


def test_without_bytes_when_the_wire_counts_them(tmp_path: Path, engine) -> None:  # type: ignore[no-untyped-def]
    sink = _sink(tmp_path, engine, count_bytes=False)
    sink.add(_flow(dst_ip=ABROAD))
    sink.finish()
    [row] = _rows(tmp_path, "flows")
    assert (row["bytes_out"], row["bytes_in"], row["inspected"]) == (0, 0, True)


def test_a_pull_names_the_client_abroad_as_its_recipient(tmp_path: Path, engine) -> None:  # type: ignore[no-untyped-def]
    sink = _sink(tmp_path, engine)
    sink.add(_flow(initiator="external", src_ip=ABROAD, src_port=40000, dst_port=8080,
                   server_name="files.corp.example", messages=(HandedMessage("", BODY, "application/json"),)),
             wait_for=None)
    sink.finish()
    [row] = _rows(tmp_path, "flows")
    # The internal server's address was not given: src unknown; the recipient is the client.
    assert (row["src_ip"], row["dst_ip"]) == ("0.0.0.0", ABROAD)
    assert (row["src_port"], row["dst_port"]) == (8080, 40000)
    assert row["initiator"] == "external" and row["inspected"] and row["dst_ip_source"] == "proxy"


def test_waiting_is_bounded_by_bytes(tmp_path: Path, engine, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr("agent.handover.MAX_WAITING_BYTES", 3 * len(BODY))
    sink = _sink(tmp_path, engine, resolve=lambda name: ABROAD)
    for n in range(5):
        sink.add(_flow(f"k{n}"), wait_for=f"k{n}", now=1.0)
    assert sink.waiting == 3
    sink.finish()
    sources = sorted(r["dst_ip_source"] for r in _rows(tmp_path, "flows"))
    assert sources == ["resolved"] * 5


def test_the_wire_side_of_an_icap_proxy_counts_bytes_and_leaves_content_to_icap(tmp_path: Path) -> None:
    key = tmp_path / "k.key"
    key.write_bytes(b"handover-test-key-not-secret-000")
    demo = FIXTURES / "pcaps" / "demo.pcap"
    plain = load_agent_config(None, agent_id="w", subject_key_file=str(key), detector_workers=0)
    run_capture_stats([demo], plain, tmp_path / "plain")
    before = {r["flow_id"]: r for r in _rows(tmp_path / "plain", "flows")}
    exports = {k for k, r in before.items() if r["inspected"]}
    assert exports and _rows(tmp_path / "plain", "pi_values")
    sources = sorted({before[k]["src_ip"] for k in exports})
    proxied = plain.model_copy(update={"icap": plain.icap.model_copy(
        update={"proxy_networks": [f"{ip}/32" for ip in sources]})})
    run_capture_stats([demo], proxied, tmp_path / "proxied")
    after = {r["flow_id"]: r for r in _rows(tmp_path / "proxied", "flows")}
    assert not _rows(tmp_path / "proxied", "pi_values")
    for k in exports:
        assert after[k]["visibility"] == "proxy" and after[k]["inspected"]
        assert after[k]["bytes_out"] == before[k]["bytes_out"] and after[k]["uninspected_reason"] is None


def test_a_flow_added_without_an_address_or_a_wait_is_resolved_at_once(tmp_path: Path, engine) -> None:  # type: ignore[no-untyped-def]
    # An ICAP request without X-Transaction-ID: nobody will name its server later (interfaces: "resolve at
    # once"), so the name is resolved now rather than left unknown.
    sink = _sink(tmp_path, engine, resolve={"api.example.com": ABROAD}.get)
    sink.add(_flow())
    sink.add(_flow("n", server_name="nowhere.invalid"))
    sink.finish()
    rows = {r["server_name"]: (r["dst_ip"], r["dst_ip_source"]) for r in _rows(tmp_path, "flows")}
    assert rows == {"api.example.com": (ABROAD, "resolved"), "nowhere.invalid": ("0.0.0.0", "unknown")}
