"""The real console script `egress-collector`: exit codes 0/1/2, one-line errors, never a traceback."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path

import pytest
import yaml

from .builders import (
    EXAMPLE_FILING,
    REPO,
    UNDECLARED_HOST,
    detection,
    example_data,
    flow,
    pi,
    write_records,
)

CLI = REPO / ".venv" / "bin" / "egress-collector"


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CLI), *map(str, args)], capture_output=True, text=True, timeout=120,
                          cwd=REPO)


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert proc.returncode == 2, proc
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture
def bad_filing(tmp_path: Path) -> Path:
    data = copy.deepcopy(example_data())
    data["scenarios"][1]["recipients"] = ["R9"]
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


@pytest.fixture
def inconsistent_records(tmp_path: Path) -> Path:
    return write_records(
        tmp_path / "records",
        [flow("b1"), flow("u1", server_name=UNDECLARED_HOST, country="US")],
        [detection("b1", "mobile_cn"), detection("u1", "email")],
        [pi("b1", 1, "mobile_cn", 1, identifier=True), pi("u1", 1, "email", 2, identifier=True)],
    )


def test_validate_good_filing() -> None:
    proc = run("validate", EXAMPLE_FILING)
    assert proc.returncode == 0, proc.stderr
    assert "ok" in proc.stdout and proc.stderr == ""


def test_validate_knows_every_shipped_config() -> None:
    configs = EXAMPLE_FILING.parents[1]
    files = [configs / "collector.yaml", configs / "agent.yaml", configs / "policy.yaml",
             configs / "field_types.yaml", *sorted((configs / "negative_lists").glob("*.yaml")),
             *sorted((configs / "filings").glob("*.yaml"))]
    proc = run("validate", *files)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count(": ok (") == len(files)
    assert "collector config" in proc.stdout and "negative list" in proc.stdout


def test_validate_a_bad_collector_token_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "collector.yaml"
    path.write_text("tokens: [{name: a, sha256: plaintext-token, role: agent, enterprise_id: e}]\n")
    assert_one_line_error(run("validate", path), str(path), "tokens[0].sha256")


def test_validate_bad_filing_is_one_line_with_file_and_path(bad_filing: Path) -> None:
    proc = run("validate", EXAMPLE_FILING, bad_filing)
    assert_one_line_error(proc, str(bad_filing), "scenarios[1].recipients[0]",
                          "'R9' is not a declared recipient")


@pytest.mark.parametrize(("content", "fragment"), [
    ("not: [valid", "line 1"),
    ("schema: ftz.something/v9\n", "unknown document kind"),
])
def test_validate_unreadable_or_unknown_documents(tmp_path: Path, content: str, fragment: str) -> None:
    path = tmp_path / "thing.yaml"
    path.write_text(content, encoding="utf-8")
    assert_one_line_error(run("validate", path), str(path), fragment)


def test_selfcheck_records_with_findings_exits_1_and_writes_reports(
    tmp_path: Path, inconsistent_records: Path,
) -> None:
    out = tmp_path / "out"
    proc = run("selfcheck", "--records", inconsistent_records, "--filing", EXAMPLE_FILING, "--out", out)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "undeclared_recipient" in proc.stdout and UNDECLARED_HOST in proc.stdout
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["verdict"] == "inconsistent"
    assert [f["subject"] for f in report["findings"]] == [UNDECLARED_HOST]
    assert (out / "report.html").is_file()
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "report.json"]


def test_selfcheck_consistent_exits_0_and_prints_json(tmp_path: Path) -> None:
    records = write_records(tmp_path / "records", [flow("b1")], [detection("b1", "mobile_cn")],
                            [pi("b1", 1, "mobile_cn", 1, identifier=True)])
    proc = run("selfcheck", "--records", records, "--filing", EXAMPLE_FILING, "--format", "json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["verdict"] == "consistent"


def test_selfcheck_missing_records_dir_exits_2(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    proc = run("selfcheck", "--records", missing, "--filing", EXAMPLE_FILING)
    assert_one_line_error(proc, str(missing))


def test_selfcheck_empty_records_dir_exits_2(tmp_path: Path) -> None:
    assert_one_line_error(run("selfcheck", "--records", tmp_path, "--filing", EXAMPLE_FILING),
                          str(tmp_path), "no records")


def test_selfcheck_corrupt_parquet_exits_2(tmp_path: Path) -> None:
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "b1.parquet").write_bytes(b"not parquet at all")
    assert_one_line_error(run("selfcheck", "--records", tmp_path, "--filing", EXAMPLE_FILING),
                          str(tmp_path / "flows"))


def test_selfcheck_bad_filing_exits_2(tmp_path: Path, inconsistent_records: Path, bad_filing: Path) -> None:
    proc = run("selfcheck", "--records", inconsistent_records, "--filing", bad_filing,
               "--out", tmp_path / "o")
    assert_one_line_error(proc, str(bad_filing), "scenarios[1].recipients[0]")
    assert not (tmp_path / "o").exists()


def test_selfcheck_needs_exactly_one_input(tmp_path: Path, inconsistent_records: Path) -> None:
    proc = run("selfcheck", tmp_path / "x.pcap", "--records", inconsistent_records,
               "--filing", EXAMPLE_FILING)
    assert_one_line_error(proc, "either capture files or --records")


def test_selfcheck_with_a_missing_key_log_is_one_line_naming_it(tmp_path: Path) -> None:
    capture = REPO / "fixtures" / "pcaps" / "tls_split-client-hello.pcap"
    proc = run("selfcheck", capture, "--filing", EXAMPLE_FILING, "--keylog", tmp_path / "gone.log")
    assert_one_line_error(proc, "gone.log", "cannot read key log")


def test_selfcheck_key_logs_go_with_captures_not_records(tmp_path: Path) -> None:
    keys = tmp_path / "keys.log"
    keys.write_text("")
    proc = run("selfcheck", "--records", tmp_path, "--filing", EXAMPLE_FILING, "--keylog", keys)
    assert_one_line_error(proc, "--keylog")


def test_a_bug_in_the_capture_run_is_reported_as_one_not_as_bad_input(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A ValueError from inside the pipeline used to become "bad input, exit 2" naming the capture.
    from typer.testing import CliRunner

    import agent.pipeline
    from collector.cli import app
    from collector.cli_common import EXIT_INTERNAL

    def broken(*_a: object, **_k: object) -> None:
        raise ValueError("a bug deep in the pipeline")

    monkeypatch.setattr(agent.pipeline, "run_capture", broken)
    capture = tmp_path / "a.pcap"
    capture.write_bytes(b"")
    result = CliRunner().invoke(app, ["selfcheck", str(capture), "--filing", str(EXAMPLE_FILING)])
    assert result.exit_code == EXIT_INTERNAL == 3, result.output
    assert "internal error (a bug" in result.output and "ValueError" in result.output


def test_validate_reports_a_loader_bug_as_a_bug(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    import collector.cli

    def broken(_path: object) -> None:
        raise KeyError("schema")

    monkeypatch.setattr(collector.cli, "load_filing", broken)
    result = CliRunner().invoke(collector.cli.app, ["validate", str(EXAMPLE_FILING)])
    assert result.exit_code == 3 and "internal error (a bug" in result.output, result.output
