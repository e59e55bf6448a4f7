"""Golden captures (Zeek btest / suricata-verify style): each capture in fixtures/pcaps has its agent output
in fixtures/expected/<name>.json. `pytest --update-golden` rewrites them from the current code; review the
diff, never hand-edit. Volatile fields (batch ids) are left out; flow ids are deterministic for a fixed
agent_id, and value keys are summarised as counts (they depend on the deployment key).
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from agent.config import load_agent_config
from agent.pipeline import run_capture_stats
from agent.spool import spool_files
from tests.conftest import FIXTURES

CAPTURES = sorted(p for p in (FIXTURES / "pcaps").iterdir()
                  if p.name.endswith((".pcap", ".pcapng", ".pcap.gz")))
EXPECTED = FIXTURES / "expected"
ENVELOPE = {"schema_version", "agent_id", "enterprise_id", "batch_id"}


def _rows(records: Path, record_type: str) -> list[dict]:
    rows: list[dict] = []
    for f in spool_files(records, record_type):
        rows.extend(pq.read_table(f).to_pylist())
    for r in rows:
        for k in ENVELOPE:
            r.pop(k, None)
        for k, v in r.items():
            if isinstance(v, datetime):
                r[k] = v.isoformat()
    return rows


def summarize(capture: Path, out: Path, key_file: Path) -> dict:
    config = load_agent_config(None, agent_id="golden", subject_key_file=str(key_file))
    stats = run_capture_stats([capture], config, out)
    flows = sorted(_rows(out, "flows"), key=lambda r: (r["ts_start"], r["flow_id"]))
    detections = sorted(_rows(out, "detections"), key=lambda r: (r["flow_id"], r["field_type"]))
    pi = _rows(out, "pi_values")
    per_type: dict[str, dict[str, int]] = {}
    for t in sorted({r["field_type"] for r in pi}):
        of_type = [r for r in pi if r["field_type"] == t]
        per_type[t] = {"values": len(of_type), "distinct": len({r["value_key"] for r in of_type}),
                       "records": len({(r["flow_id"], r["record_key"]) for r in of_type})}
    anomalies = Counter(f"{r['layer']}/{r['name']}" for r in _rows(out, "anomalies"))
    return {"packets": stats.packets, "flows": flows, "detections": detections,
            "pi_values": per_type, "anomalies": dict(sorted(anomalies.items()))}


@pytest.mark.parametrize("capture", CAPTURES, ids=[p.name for p in CAPTURES])
def test_agent_output_matches_the_golden_file(capture: Path, tmp_path: Path, update_golden: bool) -> None:
    key = tmp_path / "golden.key"
    key.write_bytes(b"golden-test-key-not-a-secret-000")
    got = summarize(capture, tmp_path / "out", key)
    # One golden file per base name: quirks.pcap, quirks.pcapng and quirks.pcap.gz hold the same packets
    # and must give the same records, so they share fixtures/expected/quirks.json.
    golden = EXPECTED / f"{capture.name.split('.')[0]}.json"
    text = json.dumps(got, ensure_ascii=False, indent=1, sort_keys=True) + "\n"
    if update_golden:
        golden.write_text(text, encoding="utf-8")
    assert golden.is_file(), f"{golden} is missing: run pytest --update-golden and review the diff"
    assert json.loads(golden.read_text(encoding="utf-8")) == json.loads(text)
