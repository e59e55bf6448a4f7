"""The HTML report in a real browser (headless Chromium from Debian's packages), with no network.

A regulator opens report.html from a USB stick on a machine with no internet: it must render completely
from the file alone — no CDN, no script — and show the verdict and every finding.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import BIN, FIXTURES, ROOT

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs chromium (Debian package chromium)")

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--host-resolver-rules=MAP * ~NOTFOUND"]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    tmp = tmp_path_factory.mktemp("browser")
    cfg = tmp / "agent.yaml"
    cfg.write_text(f"agent_id: browser\nsubject_key_file: {tmp / 'k.key'}\n")
    out = tmp / "report"
    proc = subprocess.run([str(BIN / "egress-collector"), "selfcheck", str(FIXTURES / "pcaps" / "demo.pcap"),
                           "--filing", str(ROOT / "configs" / "filings" / "demo.yaml"), "--agent-config",
                           str(cfg), "--out", str(out), "--format", "json"],
                          capture_output=True, text=True, timeout=300, cwd=tmp)
    assert proc.returncode == 1, proc.stderr
    return out / "report.html", json.loads((out / "report.json").read_text(encoding="utf-8"))


def _chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CHROMIUM), *FLAGS, f"--user-data-dir={tmp / 'profile'}", *args],
                          capture_output=True, text=True, timeout=120)


def test_the_report_renders_offline_with_the_verdict_and_every_finding(report, tmp_path: Path) -> None:
    html, doc = report
    proc = _chromium(tmp_path, "--dump-dom", html.as_uri())
    dom = proc.stdout
    assert "<table" in dom, proc.stderr[-500:]
    assert "inconsistent" in dom and "不一致" in dom
    for finding in doc["findings"]:
        assert finding["check"] in dom and finding["subject"] in dom
    for dest in doc["observed"]["destinations"]:
        assert dest["server_name"] in dom


def test_the_report_screenshot_is_a_real_page(report, tmp_path: Path) -> None:
    html, _ = report
    shot = tmp_path / "report.png"
    _chromium(tmp_path, "--window-size=1280,1800", f"--screenshot={shot}", html.as_uri())
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 50_000   # a blank or error page compresses to a few KB
