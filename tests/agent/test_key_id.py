"""`pi_values.key_id` (records schema 5, DESIGN §3): every pi_values row names the deployment key that hashed
its value — the first 8 hex digits of SHA-256 of the key file's bytes — so that the collector joins persons
only within one key. Agents sharing a key write the same id; another key writes another; the key itself, and
any longer digest of it, is nowhere in what the agent writes or says. Through the real `egress-agent run`."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from typer.testing import CliRunner

from agent.cli import app
from agent.spool import spool_files
from tests.conftest import BIN, FIXTURES

DEMO = FIXTURES / "pcaps" / "demo.pcap"
HAR = FIXTURES / "har" / "mitmproxy.har"
KEY_A = b"key-id-test-deployment-key-A-000"
KEY_B = b"key-id-test-deployment-key-B-000"


def _pi_values(out: Path) -> list[dict[str, Any]]:
    return [r for f in spool_files(out, "pi_values") for r in pq.read_table(f).to_pylist()]


def _config(folder: Path, key: bytes, workers: int) -> Path:
    folder.mkdir()
    (folder / "deployment.key").write_bytes(key)
    cfg = folder / "agent.yaml"
    cfg.write_text(f"agent_id: {folder.name}\nsubject_key_file: {folder / 'deployment.key'}\n"
                   f"detector_workers: {workers}\n")
    return cfg


def _run_in_process(folder: Path, key: bytes, *inputs: str) -> tuple[Path, str]:
    out = folder / "spool"
    result = CliRunner().invoke(app, ["run", *inputs, "--config", str(_config(folder, key, 0)),
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out, result.output


def _key_material(key: bytes) -> list[bytes]:
    digest = hashlib.sha256(key).hexdigest()
    return [key, key.hex().encode(), digest.encode(), digest[:16].encode()]


def _assert_nowhere(key: bytes, folder: Path, said: str) -> None:
    for path in (p for p in folder.rglob("*") if p.is_file() and p.name != "deployment.key"):
        data = path.read_bytes()
        for secret in _key_material(key):
            assert secret not in data, f"{path.name} holds key material"
    for secret in _key_material(key):
        assert secret.decode() not in said


def test_pi_values_name_the_key_by_its_sha256_prefix_alike_for_agents_sharing_it(tmp_path: Path) -> None:
    want_a, want_b = (hashlib.sha256(k).hexdigest()[:8] for k in (KEY_A, KEY_B))
    # Agent 1: the installed command, detector workers (the default path of a deployment).
    one = tmp_path / "agent1"
    r = subprocess.run([str(BIN / "egress-agent"), "run", "--pcap", str(DEMO), "--config",
                        str(_config(one, KEY_A, 2)), "--out", str(one / "spool")],
                       capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    # Agent 2 shares agent 1's key (its own copy of the file); agent 3 has another key. Both inline.
    two, said_two = _run_in_process(tmp_path / "agent2", KEY_A, "--pcap", str(DEMO))
    three, said_three = _run_in_process(tmp_path / "agent3", KEY_B, "--pcap", str(DEMO))
    rows = {n: _pi_values(out) for n, out in ((1, one / "spool"), (2, two), (3, three))}
    assert all(rows.values())
    assert {p["key_id"] for p in rows[1]} == {p["key_id"] for p in rows[2]} == {want_a}
    assert {p["key_id"] for p in rows[3]} == {want_b} != {want_a}
    # The same key hashes the same values alike; the id is only its name.
    assert {p["value_key"] for p in rows[1]} == {p["value_key"] for p in rows[2]}
    assert not {p["value_key"] for p in rows[1]} & {p["value_key"] for p in rows[3]}
    _assert_nowhere(KEY_A, one, r.stdout + r.stderr)
    _assert_nowhere(KEY_A, tmp_path / "agent2", said_two)
    _assert_nowhere(KEY_B, tmp_path / "agent3", said_three)


def test_pi_values_from_a_har_file_name_the_key_too(tmp_path: Path) -> None:
    out, said = _run_in_process(tmp_path / "har", KEY_B, "--har", str(HAR))
    rows = _pi_values(out)
    assert rows and {p["key_id"] for p in rows} == {hashlib.sha256(KEY_B).hexdigest()[:8]}
    _assert_nowhere(KEY_B, tmp_path / "har", said)
