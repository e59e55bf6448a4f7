"""`egress-collector token` and `egress-collector check` through the real console script."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from collector.auth import token_digest
from collector.config import load_collector_config
from collector.ingest import parse_batch
from collector.warehouse import Warehouse
from tests.conftest import BIN

from .builders import UNDECLARED_HOST, detection, example_data, flow, pi, write_records


def run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "egress-collector"), *map(str, args)], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


def one_line_error(proc: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for f in fragments:
        assert f in lines[0]


def test_token_prints_a_token_and_a_config_line_holding_only_its_hash(tmp_path: Path) -> None:
    proc = run("token", "gw-hz-01", "--role", "agent", "--enterprise-id", "hz-demo", "--agent-id", "gw-hz-01")
    assert proc.returncode == 0, proc.stderr
    token = next(ln.split(":", 1)[1].strip() for ln in proc.stdout.splitlines() if ln.startswith("token:"))
    entry_line = next(ln for ln in proc.stdout.splitlines() if ln.strip().startswith("- {"))
    cfg = tmp_path / "collector.yaml"
    registry = "enterprises: [{enterprise_id: hz-demo, ftz_area: hangzhou}]\n"
    cfg.write_text(registry + "tokens:\n" + entry_line + "\n")
    (entry,) = load_collector_config(cfg).tokens
    assert entry.sha256 == token_digest(token) and entry.enterprise_id == "hz-demo"
    assert entry.agent_id == "gw-hz-01"
    assert token not in entry_line


@pytest.mark.parametrize(("args", "needle"), [
    (["--role", "agent"], "needs enterprise_id"),
    (["--role", "agent", "--enterprise-id", "e"], "needs agent_id"),
    (["--role", "regulator"], "needs ftz_area"),
    (["--role", "root", "--enterprise-id", "e"], "role"),
])
def test_token_refuses_a_token_without_its_scope(args: list[str], needle: str) -> None:
    one_line_error(run("token", "x", *args), needle)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A collector data dir holding the example filing and one undeclared export with PI."""
    spool = write_records(tmp_path / "spool", [flow("a", server_name=UNDECLARED_HOST)],
                          [detection("a", "mobile_cn")], [pi("a", 1, "mobile_cn", 11, identifier=True)])
    data = tmp_path / "data"
    wh = Warehouse(data)
    try:
        data_doc = json.loads(json.dumps(example_data(), default=str))
        wh.put_document("filing", data_doc["filing_id"], data_doc, data_doc["processor"]["id"],
                        data_doc["ftz_area"], "test")
        for record_type in ("flows", "detections", "pi_values"):
            body = (spool / record_type / "b1.parquet").read_bytes()
            wh.store_batch(parse_batch(body, f"b-{record_type}", record_type, "nb-shipping-demo",
                                        "test-agent"), "test")
    finally:
        wh.close()
    (tmp_path / "collector.yaml").write_text(yaml.safe_dump({"data_dir": str(data)}))
    return data


def test_check_runs_every_check_stores_the_report_and_exits_1_on_findings(data_dir: Path) -> None:
    filing_id = example_data()["filing_id"]
    proc = run("check", "--filing-id", filing_id, "--from", "2026-01-01", "--to", "2026-12-31", "--config",
               data_dir.parent / "collector.yaml")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "undeclared_recipient" in proc.stdout and UNDECLARED_HOST in proc.stdout
    wh = Warehouse(data_dir)
    try:
        (row,) = wh.list_reports([filing_id])
        assert row["trigger"] == "cli" and row["verdict"] == "inconsistent"
    finally:
        wh.close()


@pytest.mark.parametrize(("args", "needle"), [
    (["--filing-id", "NO-SUCH"], "no filing 'NO-SUCH'"),
    (["--filing-id", "X", "--from", "2026-13-01"], "--from"),
])
def test_check_errors_are_one_line(data_dir: Path, args: list[str], needle: str) -> None:
    one_line_error(run("check", *args, "--config", data_dir.parent / "collector.yaml"), needle)


def test_check_while_the_data_dir_is_held_by_a_running_collector_says_so(data_dir: Path) -> None:
    # DuckDB lets one process write the file; a second process is refused with a readable line.
    wh = Warehouse(data_dir)
    try:
        proc = run("check", "--filing-id", "X", "--config", data_dir.parent / "collector.yaml")
    finally:
        wh.close()
    one_line_error(proc, "POST /v1/checks/run")


def test_serve_refuses_a_token_line_from_before_tenancy_with_the_fix_named(tmp_path: Path) -> None:
    # A collector.yaml of 0.1.0: an agent token without agent_id (and no registry). The service does not
    # start half-configured; one line says what to add.
    cfg = tmp_path / "collector.yaml"
    cfg.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data"), "tokens": [
        {"name": "gw-hz-01", "sha256": "a" * 64, "role": "agent", "enterprise_id": "hz-demo"}]}))
    one_line_error(run("serve", "--config", cfg), str(cfg), "tokens[0]", "needs agent_id: add `agent_id:")
