"""The checks on Apache Spark give DuckDB's answer (issue 13 §4, DESIGN §9).

The fixture captures go through the real agent (as tests/e2e/test_golden.py runs them); the same records
are inspected by both engines and the whole report must be equal: every finding (check, scenario, subject,
severity, expected, observed, evidence), every check status, and every observed count (flows, destinations,
persons, distinct values per field type, coverage, persons over time). One Spark session serves the module
(a session takes ~10 s to start); the tests skip, naming java or pyspark, where either is missing.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.config import load_agent_config
from agent.pipeline import run_capture_stats
from collector.checks.runner import discover
from collector.inspection import Inspection, run_inspection
from collector.models import Filing
from collector.negative_lists import parse_negative_list
from collector.spark_session import spark_available
from collector.spark_sql import SparkConnection
from tests.conftest import FIXTURES, ROOT

PCAPS = FIXTURES / "pcaps"
# Every capture the golden tests run, once per base name (quirks.pcap/.pcapng/.pcap.gz hold one capture).
_ALL = sorted(p for p in PCAPS.iterdir() if p.name.endswith((".pcap", ".pcapng", ".pcap.gz")))
OTHERS = [p for p in {p.name.split(".")[0]: p for p in _ALL}.values() if p.name != "demo.pcap"]


@pytest.fixture(scope="module")
def spark() -> Any:
    problem = spark_available()
    if problem:
        pytest.skip(problem)
    from collector.spark_session import spark_session

    return spark_session()


@pytest.fixture(scope="module")
def demo_filing() -> Filing:
    return Filing.model_validate(yaml.safe_load((ROOT / "configs" / "filings" / "demo.yaml").read_text()))


@pytest.fixture(scope="module")
def demo_lists() -> list:
    path = ROOT / "configs" / "negative_lists" / "zhejiang-example.yaml"
    return [parse_negative_list(yaml.safe_load(path.read_text()), path.name)]


def _agent(captures: list[Path], out: Path, tmp: Path) -> Path:
    """The records the real agent writes for `captures`, each with its own agent id, in one spool."""
    key = tmp / "golden.key"
    key.write_bytes(b"golden-test-key-not-a-secret-000")
    for i, capture in enumerate(captures):
        one = tmp / f"run-{i}"
        run_capture_stats([capture], load_agent_config(None, agent_id=f"golden-{i}",
                                                        subject_key_file=str(key)), one)
        for f in one.glob("*/*.parquet"):
            dest = out / f.parent.name / f"{i}-{f.name}"
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(f, dest)
    return out


def _both(records: Path, filing: Filing, lists: list) -> tuple[Inspection, Inspection]:
    kwargs: dict[str, Any] = {"negative_lists": lists, "report_id": "r", "filing_version": 1}
    duck = run_inspection(records, filing, engine="duckdb", **kwargs)
    spark = run_inspection(records, filing, engine="spark", now=duck.report.generated_at if duck.report
                           else None, period=duck.period, **kwargs)
    return duck, spark


def _same(duck: Inspection, spark: Inspection) -> None:
    assert duck.report is not None and spark.report is not None
    assert [c.status for c in duck.results] == [c.status for c in spark.results]
    assert all(c.status != "error" for c in spark.results), [c.error for c in spark.results if c.error]
    assert spark.persons == duck.persons
    d, s = duck.report.model_dump(mode="json"), spark.report.model_dump(mode="json")
    d.pop("generated_at"), s.pop("generated_at")
    assert s["findings"] == d["findings"]
    assert s["observed"] == d["observed"]
    assert s == d


def test_demo_with_its_filing_and_lists_gives_the_same_report_on_spark(
        spark: Any, demo_filing: Filing, demo_lists: list, tmp_path: Path, monkeypatch) -> None:
    """Also: nothing falls back to DuckDB. The linking, every check, the shared views and the report's
    queries are statements the adapter handed to Spark."""
    seen: list[str] = []
    original = SparkConnection.close

    def close(self: SparkConnection) -> None:
        seen.extend(self.statements_run)
        original(self)

    monkeypatch.setattr(SparkConnection, "close", close)
    records = _agent([PCAPS / "demo.pcap"], tmp_path / "records", tmp_path)
    duck, on_spark = _both(records, demo_filing, demo_lists)
    assert duck.report and duck.report.findings and duck.persons > 0   # something to compare
    _same(duck, on_spark)
    text = "\n".join(seen)
    for check in discover():
        assert f"check: {check.stem}" in text, check.stem
    for marker in ("TABLE record_persons", "VIEW period_flows", "VIEW hit_evidence", "VIEW scenario_persons",
                   "MODE(", "FROM_UTC_TIMESTAMP", "TABLE flow_recipients"):
        assert marker in text, marker


def test_every_other_fixture_capture_gives_the_same_report_on_spark(
        spark: Any, demo_filing: Filing, demo_lists: list, tmp_path: Path) -> None:
    # One spool holding every other capture the golden tests use (a session per capture would take minutes):
    # a difference in any of them changes a finding or a count of the one report.
    records = _agent(OTHERS, tmp_path / "records", tmp_path)
    duck, on_spark = _both(records, demo_filing, demo_lists)
    assert duck.report and duck.report.observed.destinations
    _same(duck, on_spark)
