"""The example systemd unit (configs/egress-agent.service): systemd accepts it, and it runs the agent with
options the agent has, stopped by SIGTERM to the agent alone."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import BIN, ROOT

UNIT = ROOT / "configs" / "egress-agent.service"


def directives() -> dict[str, str]:
    text = UNIT.read_text(encoding="utf-8").replace("\\\n", " ")
    out = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith(("#", "[")):
            key, value = line.split("=", 1)
            out[key.strip()] = value.strip()
    return out


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    shutil.copy(UNIT, tmp_path / "egress-agent@.service")
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", str(tmp_path / "egress-agent@eth1.service")],
                       capture_output=True, text=True, timeout=60)
    # The only complaint allowed is that the project is not installed under /opt on this machine.
    problems = [ln for ln in (r.stdout + r.stderr).splitlines()
                if ln.strip() and "/opt/egresswatch/.venv/bin/egress-agent is not executable" not in ln]
    assert problems == []


def test_the_unit_runs_the_agent_live_with_options_it_has_and_stops_it_cleanly() -> None:
    d = directives()
    cmd = d["ExecStart"].split()
    assert cmd[0].endswith("/egress-agent") and cmd[1:4] == ["run", "--iface", "%i"]
    helptext = subprocess.run([str(BIN / "egress-agent"), "run", "--help"], capture_output=True, text=True,
                              timeout=60, env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"}).stdout
    for option in re.findall(r"--[a-z-]+", d["ExecStart"]):
        assert option in helptext, option
    # SIGTERM reaches the agent only (KillMode=mixed); it flushes and ships before TimeoutStopSec.
    assert (d["KillMode"], d["KillSignal"]) == ("mixed", "SIGTERM")
    assert int(d["TimeoutStopSec"]) >= 30
    assert d["AmbientCapabilities"] == "CAP_NET_RAW"
