"""`egress-agent run` through the real console script: bad input is one line and exit 2, nothing
half-written."""

from __future__ import annotations

import gzip
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import BIN, REAL_PCAPS


def run_agent(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "egress-agent"), "run", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(f"agent_id: cli-test\nsubject_key_file: {tmp_path / 'k.key'}\n")
    return cfg


def _one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    for n in needles:
        assert n in lines[0]


@pytest.mark.parametrize(("name", "content"), [
    ("notes.txt", b"this is not a capture\n" * 10),
    ("random.pcap", bytes(range(256)) * 4),
    ("short.pcap", b"\xd4\xc3"),
    ("zero.pcap", b""),
    ("bad.pcap.gz", gzip.compress(b"not a pcap inside gzip" * 5)),
])
def test_a_file_that_is_not_a_capture_is_one_line_naming_it_and_exit_2(
        tmp_path: Path, config: Path, name: str, content: bytes) -> None:
    bad = tmp_path / name
    bad.write_bytes(content)
    out = tmp_path / "out"
    proc = run_agent("--pcap", bad, "--config", config, "--out", out, cwd=tmp_path)
    _one_line_error(proc, name)
    assert not out.exists() or not any(out.rglob("*.parquet"))


def test_a_missing_file_is_one_line_and_exit_2(tmp_path: Path, config: Path) -> None:
    proc = run_agent("--pcap", tmp_path / "nope.pcap", "--config", config, cwd=tmp_path)
    _one_line_error(proc, "nope.pcap")


def test_a_bad_config_is_one_line_naming_the_key(tmp_path: Path) -> None:
    cfg = tmp_path / "agent.yaml"
    cfg.write_text("sampling: {flow_rate: 7}\n")
    good = next(REAL_PCAPS.glob("fmt_pcap-big-endian.pcap"), None)
    if good is None:
        pytest.skip("shared captures absent")
    proc = run_agent("--pcap", good, "--config", cfg, cwd=tmp_path)
    _one_line_error(proc, "agent.yaml", "sampling.flow_rate")


def test_when_a_later_capture_is_bad_nothing_from_the_run_is_left_in_out(tmp_path: Path,
                                                                         config: Path) -> None:
    good = next(REAL_PCAPS.glob("tls12_chrome-34-google.pcap"), None)
    if good is None:
        pytest.skip("shared captures absent")
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"garbage" * 100)
    out = tmp_path / "out"
    proc = run_agent("--pcap", good, "--pcap", bad, "--config", config, "--out", out, cwd=tmp_path)
    _one_line_error(proc, "bad.pcap")
    assert not out.exists() or not any(out.rglob("*"))


def test_a_truncated_capture_keeps_the_records_before_the_cut_and_adds_an_anomaly(
        tmp_path: Path, config: Path) -> None:
    src = next(REAL_PCAPS.glob("tls12_chrome-34-google.pcap"), None)
    if src is None:
        pytest.skip("shared captures absent")
    data = src.read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[: len(data) * 2 // 3])
    out = tmp_path / "out"
    proc = run_agent("--pcap", cut, "--config", config, "--out", out, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    flows = pq.read_table(next((out / "flows").glob("*.parquet"))).to_pylist()
    assert any(f["server_name"] == "google.de" for f in flows)
    names = [r["name"] for f in (out / "anomalies").glob("*.parquet") for r in pq.read_table(f).to_pylist()]
    assert "truncated_capture" in names


def test_an_empty_capture_gives_no_records_and_exit_0(tmp_path: Path, config: Path) -> None:
    empty = next(REAL_PCAPS.glob("fmt_pcap-empty.pcap"), None)
    if empty is None:
        pytest.skip("shared captures absent")
    out = tmp_path / "out"
    proc = run_agent("--pcap", empty, "--config", config, "--out", out, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "0 packets" in proc.stdout


def test_a_missing_key_log_is_one_line_naming_it_and_exit_2(tmp_path: Path, config: Path) -> None:
    capture = REAL_PCAPS / "tls13_openjdk-linux-sll2.pcap"
    if not capture.is_file():
        pytest.skip("shared real captures not available")
    out = tmp_path / "out"
    proc = run_agent("--pcap", capture, "--config", config, "--out", out, "--keylog", tmp_path / "gone.log",
                     cwd=tmp_path)
    _one_line_error(proc, "gone.log", "cannot read key log")
    assert not out.exists() or not any(out.rglob("*.parquet"))


def test_a_key_log_named_in_the_config_is_checked_too(tmp_path: Path) -> None:
    capture = REAL_PCAPS / "tls13_openjdk-linux-sll2.pcap"
    if not capture.is_file():
        pytest.skip("shared real captures not available")
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(f"agent_id: cli-test\nsubject_key_file: {tmp_path / 'k.key'}\n"
                   f"tls: {{keylog_files: [{tmp_path / 'absent.keys'}]}}\n")
    proc = run_agent("--pcap", capture, "--config", cfg, "--out", tmp_path / "out", cwd=tmp_path)
    _one_line_error(proc, "absent.keys")


def test_a_readable_key_log_is_accepted(tmp_path: Path, config: Path) -> None:
    capture = REAL_PCAPS / "tls13_openjdk-linux-sll2.pcap"
    if not capture.is_file():
        pytest.skip("shared real captures not available")
    keys = tmp_path / "keys.log"
    keys.write_text("# no secret for this capture\n")
    proc = run_agent("--pcap", capture, "--config", config, "--out", tmp_path / "out", "--keylog", keys,
                     "--keylog", keys, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
