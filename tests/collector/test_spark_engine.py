"""The checks on Apache Spark give DuckDB's answer (issue 13 §4, DESIGN §9).

The fixture captures go through the real agent (as tests/e2e/test_golden.py runs them); the same records
are inspected by both engines and the whole report must be equal: every finding (check, scenario, subject,
severity, expected, observed, evidence), every check status, and every observed count (flows, destinations,
persons, distinct values per field type, coverage, persons over time). One Spark session serves the module
(a session takes ~10 s to start); the tests skip, naming java or pyspark, where either is missing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.config import load_agent_config
from agent.pipeline import run_capture_stats
from collector.checks.runner import discover
from collector.ingest import parse_batch
from collector.inspection import Inspection, run_inspection
from collector.models import Filing
from collector.negative_lists import parse_negative_list
from collector.spark_session import spark_available
from collector.spark_sql import SparkConnection
from collector.warehouse import Warehouse
from tests.conftest import BIN, FIXTURES, ROOT

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


@pytest.fixture
def demo_data_dir(tmp_path: Path, demo_filing: Filing) -> Path:
    """A collector data dir holding the demo filing, the example negative list (the filing's area) and the
    demo capture's batches as the agent would ship them."""
    key = tmp_path / "k.key"
    key.write_bytes(b"golden-test-key-not-a-secret-000")
    spool = tmp_path / "spool"
    run_capture_stats([PCAPS / "demo.pcap"], load_agent_config(
        None, agent_id="gw-hz-01", enterprise_id=demo_filing.processor.id, subject_key_file=str(key)), spool)
    data = tmp_path / "data"
    wh = Warehouse(data)
    try:
        doc = yaml.safe_load((ROOT / "configs" / "filings" / "demo.yaml").read_text())
        doc = json.loads(json.dumps(doc, default=str))
        wh.put_document("filing", doc["filing_id"], doc, demo_filing.processor.id, doc["ftz_area"], "test")
        nl = yaml.safe_load((ROOT / "configs" / "negative_lists" / "zhejiang-example.yaml").read_text())
        nl = json.loads(json.dumps(nl, default=str))
        wh.put_document("negative_list", nl["list_id"], nl, None, doc["ftz_area"], "test")
        for record_type in ("flows", "detections", "pi_values", "anomalies"):
            for i, f in enumerate(sorted((spool / record_type).glob("*.parquet"))):
                wh.store_batch(parse_batch(f.read_bytes(), f"{record_type}-{i}", record_type,
                                           demo_filing.processor.id, "gw-hz-01"), "test")
    finally:
        wh.close()
    (tmp_path / "collector.yaml").write_text(yaml.safe_dump({"data_dir": str(data)}))
    return data


def _check(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "egress-collector"), "check", "--filing-id", "ZJFTZ-HZ-2026-0107",
                           "--from", "2026-01-01", "--to", "2026-12-31", "--config",
                           str(data.parent / "collector.yaml"), *args],
                          capture_output=True, text=True, timeout=600)


def test_the_check_command_on_spark_prints_the_same_verdict_and_stores_the_same_report(
        demo_data_dir: Path) -> None:
    if problem := spark_available():   # the command starts its own JVM: no session in this process
        pytest.skip(problem)
    duck = _check(demo_data_dir)
    on_spark = _check(demo_data_dir, "--engine", "spark", "--spark-master", "local[2]")
    assert duck.returncode == 1, duck.stdout + duck.stderr
    assert on_spark.returncode == 1, on_spark.stdout + on_spark.stderr
    assert "Traceback" not in on_spark.stderr and "could not run" not in on_spark.stderr

    def table(out: str) -> str:
        return "\n".join(ln for ln in out.splitlines() if not ln.startswith("report "))

    assert table(on_spark.stdout) == table(duck.stdout)
    wh = Warehouse(demo_data_dir)
    try:
        rows = wh.list_reports(["ZJFTZ-HZ-2026-0107"])
        assert len(rows) == 2 and {r["trigger"] for r in rows} == {"cli"}
        bodies = []
        for r in rows:
            got = wh.get_report(r["report_id"])
            assert got is not None
            bodies.append(json.loads(got[1]))
    finally:
        wh.close()
    assert bodies[0]["verdict"] == bodies[1]["verdict"] == "inconsistent"
    assert bodies[0]["findings"] == bodies[1]["findings"] and bodies[0]["observed"] == bodies[1]["observed"]


def test_the_check_command_refuses_an_unknown_engine_in_one_line(demo_data_dir: Path) -> None:
    proc = _check(demo_data_dir, "--engine", "postgres")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "--engine" in proc.stderr
