"""Every real public capture in ../shared/pcaps/real goes through `egress-agent run` without a crash.

The captures are others' traffic (Zeek, Suricata, Arkime, nDPI test traces): odd link types, fuzzed
records, truncation. A capture may yield anomalies, never a traceback; and since these flows carry no planted
personal information, nothing in a TLS or binary payload may be reported as PI.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from agent.cli import app
from tests.conftest import REAL_PCAPS

CAPTURES = sorted(p for p in REAL_PCAPS.glob("*") if p.suffix in {".pcap", ".pcapng"}) \
    if REAL_PCAPS.is_dir() else []

pytestmark = pytest.mark.skipif(not CAPTURES, reason=f"{REAL_PCAPS} is absent")


@pytest.fixture(scope="module")
def agent_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("cfg")
    cfg = d / "agent.yaml"
    cfg.write_text(f"agent_id: robustness\nsubject_key_file: {d / 'test.key'}\n")
    return cfg


@pytest.mark.parametrize("capture", CAPTURES, ids=[p.name for p in CAPTURES])
def test_real_capture_runs_through_the_agent_without_a_crash(capture: Path, agent_config: Path,
                                                              tmp_path: Path) -> None:
    out = tmp_path / "spool"
    result = CliRunner().invoke(app, ["run", "--pcap", str(capture), "--config", str(agent_config),
                                      "--out", str(out)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert " packets, " in result.output   # the run's one-line summary
    flows = list((out / "flows").glob("*.parquet"))
    if flows and (out / "detections").is_dir():
        # PI "found" in encrypted payloads would be a false positive by construction.
        encrypted_hits = duckdb.sql(
            f"SELECT count(*) FROM read_parquet('{out}/detections/*.parquet') d "
            f"JOIN read_parquet('{out}/flows/*.parquet') f USING (flow_id) WHERE f.encrypted").fetchall()
        assert encrypted_hits == [(0,)]
