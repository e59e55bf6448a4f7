"""One flow cannot fill the run's anomaly cap (issue 9, finding 3): a connection that sends a hundred
thousand bad header lines gets `limits.max_anomalies_per_flow` anomalies and one note of how many more
were suppressed; the anomaly of the flow after it is still recorded."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from agent.anomalies import AnomalySink
from agent.config import AgentConfig, Limits, load_agent_config
from agent.pipeline import run_capture_stats
from tests.conftest import FIXTURES

sys.path.insert(0, str(FIXTURES / "pcaps"))
craft = importlib.import_module("craft")

CLIENT = craft.Host("10.20.0.5", "02:00:00:00:00:05")
SERVER = craft.Host("203.116.1.10", "02:00:00:00:00:01")
BAD_LINES_PER_REQUEST = 20_000     # "x\r\n" each: 60 kB, just under the header section cap
REQUESTS = 6                       # 120,000 malformed field lines: more than the run's whole cap


def _noisy_flow() -> bytes:
    head = b"GET / HTTP/1.1\r\nHost: api.partner-logistics.example\r\n"
    one = head + b"x\r\n" * BAD_LINES_PER_REQUEST + b"\r\n"
    return one * REQUESTS


def _capture(path: Path) -> None:
    cap = craft.Capture(now_us=1_767_225_600 * 1_000_000)
    ids = craft.IpIds()
    noisy = craft.TcpConn(cap, ids, CLIENT, SERVER, 42000, 80, isn_c=1000, isn_s=9000)
    noisy.handshake()
    noisy.send(_noisy_flow())
    noisy.close()
    quiet = craft.TcpConn(cap, ids, CLIENT, SERVER, 42001, 80, isn_c=5000, isn_s=6000)
    quiet.handshake()
    quiet.send(b"POST /v1/orders HTTP/1.1\r\nHost: api.partner-logistics.example\r\n"
               b"Content-Length: 1,2\r\n\r\n")
    quiet.close()
    craft.write_bytes(path, craft.pcap_bytes(cap.frames))


def _rows(out: Path, record_type: str) -> list[dict[str, Any]]:
    return [r for f in sorted((out / record_type).glob("*.parquet")) for r in pq.read_table(f).to_pylist()]


def test_a_noisy_flow_is_capped_and_the_next_flows_anomaly_is_still_recorded(tmp_path: Path) -> None:
    pcap = tmp_path / "noisy.pcap"
    _capture(pcap)
    config = load_agent_config(None, agent_id="cap", subject_key_file=str(tmp_path / "k.key"),
                               detector_workers=0)
    cap = config.limits.max_anomalies_per_flow
    run_capture_stats([pcap], config, tmp_path / "out")
    flows = {f["src_port"]: f["flow_id"] for f in _rows(tmp_path / "out", "flows")}
    anomalies = _rows(tmp_path / "out", "anomalies")
    noisy = [a for a in anomalies if a["flow_id"] == flows[42000]]
    quiet = [a for a in anomalies if a["flow_id"] == flows[42001]]
    assert [a["name"] for a in quiet] == ["bad_content_length"]
    notes = [a for a in noisy if a["name"] == "anomalies_suppressed"]
    assert len(notes) == 1 and len(noisy) == cap + 1, (len(noisy), cap)
    # The note counts what was left out, by name: every bad line was seen, `cap` of them recorded.
    suppressed = REQUESTS * BAD_LINES_PER_REQUEST - sum(a["name"] == "malformed_field_line" for a in noisy)
    assert f"{suppressed} more" in notes[0]["detail"] and "malformed_field_line" in notes[0]["detail"], notes


def test_the_per_flow_cap_has_a_documented_default_and_is_configurable() -> None:
    assert 1 <= Limits().max_anomalies_per_flow <= 100
    assert AgentConfig(limits={"max_anomalies_per_flow": 3}).limits.max_anomalies_per_flow == 3
    agent_yaml = (FIXTURES.parent / "configs" / "agent.yaml").read_text(encoding="utf-8")
    assert f"max_anomalies_per_flow: {Limits().max_anomalies_per_flow}" in agent_yaml


@pytest.mark.parametrize("cap", [1, 5])
def test_the_sink_records_cap_anomalies_per_flow_then_one_note_at_the_flows_end(cap: int) -> None:
    sink = AnomalySink(max_per_flow=cap)
    for i in range(50):
        sink.add("http", "malformed_field_line", f"line of {i} bytes", flow_id="a")
        sink.add("http", "obs_fold", "continuation of field host", flow_id="a")
    sink.add("http", "bad_content_length", "1 field(s)", flow_id="b")
    sink.add("ip", "bad_version", "IP version 7")                      # no flow: the run's cap only
    assert sum(r.flow_id == "a" for r in sink.records) == cap
    sink.flow_ended("a")
    sink.flow_ended("b")
    notes = [r for r in sink.records if r.name == "anomalies_suppressed"]
    assert [(n.flow_id, n.layer) for n in notes] == [("a", "flow")]
    assert f"{100 - cap} more" in notes[0].detail
    assert {r.name for r in sink.records if r.flow_id == "b"} == {"bad_content_length"}
    assert sink.counts["malformed_field_line"] == 50     # counters still count everything
    sink.add("http", "obs_fold", "again", flow_id="a")   # a flow id reused later starts afresh
    assert sink.records[-1].detail == "again"
