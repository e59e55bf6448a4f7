"""`pip install egresswatch` outside a checkout (issue 10 §1): a wheel built from this tree, installed into
a fresh venv, runs the demo self-check from another directory. Before, the catalogs were looked up beside
the packages (`site-packages/configs/field_types.yaml: field type catalog not found`).

Nothing is downloaded: the wheel is built without build isolation (setuptools from the dev extra), and
the fresh venv reaches the already-installed dependencies through a .pth line, never the checkout (the
test runs from a temporary directory, and the check asserts where the catalogs came from)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, ROOT

pytestmark = pytest.mark.slow


def _run(*args: str | Path, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    # a PYTHONPATH pointing at a checkout would let the fresh venv import the checkout, not the wheel
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=env)


def test_a_wheel_installed_into_a_fresh_venv_runs_the_demo_self_check(tmp_path: Path) -> None:
    # Built from a copy of what the wheel is made of: setuptools writes build/ into the source tree.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "agent", "collector", "detectors", "configs"):
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy2
        copy(ROOT / name, source / name, **({"ignore": shutil.ignore_patterns("__pycache__")}
                                            if (ROOT / name).is_dir() else {}))
    wheels = tmp_path / "wheels"
    built = _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                 "-w", wheels, source, cwd=tmp_path)
    assert built.returncode == 0, built.stderr[-3000:]
    assert "Warning" not in built.stderr, built.stderr[-3000:]       # a clean build, no deprecations
    (wheel,) = wheels.glob("egresswatch-*.whl")

    venv = tmp_path / "venv"
    assert _run(sys.executable, "-m", "venv", venv, cwd=tmp_path).returncode == 0
    py = venv / "bin" / "python"
    installed = _run(py, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel, cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr[-3000:]
    site = Path(_run(py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                     cwd=tmp_path).stdout.strip())
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")     # dependencies only

    where = _run(py, "-c", "import collector, detectors.configs as c; print(collector.__file__); "
                 "print(c.configs_dir())", cwd=tmp_path)
    module, configs = where.stdout.split()
    assert module.startswith(str(site)) and configs.startswith(str(site)), where.stdout

    out = tmp_path / "report"
    check = _run(venv / "bin" / "egress-collector", "selfcheck", FIXTURES / "pcaps" / "demo.pcap", "--filing",
                 ROOT / "configs" / "filings" / "demo.yaml", "--out", out, "--format", "json", cwd=tmp_path)
    assert check.returncode == 1, check.stdout[-2000:] + check.stderr[-3000:]    # 1: findings, as planted
    truth = json.loads((FIXTURES / "pcaps" / "demo.truth.json").read_text(encoding="utf-8"))
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    got = {(f["check"], f["scenario_id"], f["subject"]) for f in report["findings"]}
    assert {(f["check"], f["scenario_id"], f["subject"]) for f in truth["expected_findings"]} <= got
