"""Agent config: DESIGN §8 defaults, one-line errors naming file and key."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from agent.config import ConfigError, load_agent_config, load_subject_key, with_keylogs


def test_defaults_are_the_documented_ones() -> None:
    cfg = load_agent_config(None)
    assert cfg.internal_networks == ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"]
    assert cfg.sampling.flow_rate == 1.0 and cfg.sampling.max_payload_bytes_per_flow == 1_048_576
    assert cfg.limits.max_flows == 400_000 and cfg.limits.idle_timeout_s == 120
    assert cfg.limits.max_decompressed_bytes == 16_777_216 and cfg.limits.max_anomalies_per_flow == 20
    assert cfg.tls.keylog_files == [] and cfg.tls.key_wait_s == 10 and cfg.tls.key_wait_bytes == 1_048_576


def test_the_bundled_agent_config_is_valid() -> None:
    cfg = load_agent_config(Path(__file__).parents[2] / "configs" / "agent.yaml")
    assert "10.0.0.0/8" in cfg.internal_networks
    # configs/agent.yaml spells out the limits: they are the defaults, not other values.
    assert cfg.limits == load_agent_config(None).limits
    assert cfg.tls == load_agent_config(None).tls
    assert cfg.icap == load_agent_config(None).icap


@pytest.mark.parametrize(("text", "where"), [
    ("sampling: {flow_rate: 2}", "sampling.flow_rate"),
    ("internal_networks: [10.0.0.0/33]", "internal_networks"),
    ("limits: {max_flows: many}", "limits.max_flows"),
    ("colector: {}", "colector"),
    ("[1, 2]", "(top level)"),
    ("tls: {key_wait_bytes: -1}", "tls.key_wait_bytes"),
    ("tls: {keylog_file: [a.log]}", "tls.keylog_file"),
    ("tls: {keylog_files: a.log}", "tls.keylog_files"),
    ("a: [", "line"),
])
def test_a_bad_config_names_the_file_and_the_key(tmp_path: Path, text: str, where: str) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_agent_config(path)
    message = str(e.value)
    assert message.startswith(f"{path}: ") and where in message and "\n" not in message


def test_overrides_win_over_the_file(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text("enterprise_id: a\n")
    assert load_agent_config(path, enterprise_id="b").enterprise_id == "b"


def test_the_subject_key_is_created_private_and_then_reused(tmp_path: Path) -> None:
    path = tmp_path / "k" / "egresswatch.key"
    key = load_subject_key(path)
    assert len(key) == 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_subject_key(path) == key


def test_command_line_key_logs_come_after_the_configs_own(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text("tls: {keylog_files: [/var/keys/a.log], key_wait_s: 3}\n")
    cfg = with_keylogs(load_agent_config(path), [Path("b.log"), Path("c.log")])
    assert cfg.tls.keylog_files == ["/var/keys/a.log", "b.log", "c.log"] and cfg.tls.key_wait_s == 3
    assert with_keylogs(cfg, None) is cfg
