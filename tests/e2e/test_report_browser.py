"""The HTML report in a real browser (headless Chromium from Debian's packages), with no network.

A regulator opens report.html from a USB stick on a machine with no internet: it must render completely
from the file alone — no CDN, no script — and show the verdict and every finding.
"""

from __future__ import annotations

import html as html_lib
import json
import re
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


def _selfcheck(tmp: Path, capture: Path, exit_code: int) -> tuple[Path, dict]:
    cfg = tmp / "agent.yaml"
    cfg.write_text(f"agent_id: browser\nsubject_key_file: {tmp / 'k.key'}\n")
    out = tmp / "report"
    proc = subprocess.run([str(BIN / "egress-collector"), "selfcheck", str(capture),
                           "--filing", str(ROOT / "configs" / "filings" / "demo.yaml"), "--agent-config",
                           str(cfg), "--out", str(out), "--format", "json"],
                          capture_output=True, text=True, timeout=300, cwd=tmp)
    assert proc.returncode == exit_code, proc.stderr
    return out / "report.html", json.loads((out / "report.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    return _selfcheck(tmp_path_factory.mktemp("browser"), FIXTURES / "pcaps" / "demo.pcap", 1)


@pytest.fixture(scope="module")
def encrypted_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A real capture of TLS only (no key log): nothing the checks could read, a consistent verdict."""
    capture = FIXTURES / "pcaps" / "tls_split-client-hello.pcap"
    return _selfcheck(tmp_path_factory.mktemp("browser-tls"), capture, 0)


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


# Measures the charts as laid out. Injected into a copy of the page by the test only: the report itself
# carries no script (see the test above), and --dump-dom returns the DOM after this has run.
_PROBE = """<pre id="probe"></pre><script>
document.getElementById("probe").textContent = JSON.stringify(
  Array.from(document.querySelectorAll("svg.persons-chart")).map(svg => {
    const box = svg.getBoundingClientRect();
    return {width: box.width, height: box.height,
            series: Array.from(svg.querySelectorAll("polyline.series")).map(line => ({
              key: line.getAttribute("class"), length: line.getTotalLength(),
              width: line.getBBox().width}))};
  }));
</script>"""


def test_the_persons_over_time_charts_render_with_their_series(report, tmp_path: Path) -> None:
    html, doc = report
    scenarios = sorted({p["scenario_id"] for p in doc["observed"]["persons_over_time"]})
    assert scenarios, "the demo capture has persons in its scenarios"
    dom = _chromium(tmp_path, "--dump-dom", html.as_uri()).stdout
    assert "出境人数趋势" in dom and "Persons over time" in dom
    assert dom.count('class="persons-chart"') == len(scenarios)
    assert dom.count('class="series series-nonsensitive"') == len(scenarios)
    assert "备案规模 declared" in dom

    probed = tmp_path / "probed.html"
    page = html.read_text(encoding="utf-8")
    probed.write_text(page.replace("</body>", _PROBE + "</body>"), encoding="utf-8")
    out = _chromium(tmp_path, "--window-size=1280,1800", "--dump-dom", probed.as_uri())
    m = re.search(r'<pre id="probe">(.*?)</pre>', out.stdout, re.S)
    assert m and m.group(1), out.stderr[-500:]
    charts = json.loads(html_lib.unescape(m.group(1)))
    assert len(charts) == len(scenarios)
    for chart in charts:
        assert chart["width"] > 300 and chart["height"] > 100
        assert [s["key"].split()[-1] for s in chart["series"]] == ["series-nonsensitive", "series-sensitive"]
        assert all(s["length"] > 0 and s["width"] > 0 for s in chart["series"])


# Where the coverage block and the warning are laid out, against the first screen of a 1280 x 800 window.
_FOLD_PROBE = """<pre id="probe"></pre><script>
const box = sel => { const e = document.querySelector(sel); if (!e) return null;
                     const r = e.getBoundingClientRect(); return {top: r.top, bottom: r.bottom,
                     text: e.textContent}; };
document.getElementById("probe").textContent = JSON.stringify(
  {fold: window.innerHeight, coverage: box("#coverage"), warning: box("#coverage .warning")});
</script>"""


def _laid_out(html: Path, tmp: Path) -> dict:
    probed = tmp / "fold.html"
    probed.write_text(html.read_text(encoding="utf-8").replace("</body>", _FOLD_PROBE + "</body>"),
                      encoding="utf-8")
    out = _chromium(tmp, "--window-size=1280,800", "--dump-dom", probed.as_uri())
    m = re.search(r'<pre id="probe">(.*?)</pre>', out.stdout, re.S)
    assert m and m.group(1), out.stderr[-500:]
    return json.loads(html_lib.unescape(m.group(1)))


def test_coverage_is_on_the_first_screen_and_the_encrypted_capture_warns(encrypted_report,
                                                                         tmp_path: Path) -> None:
    html, doc = encrypted_report
    c = doc["observed"]["coverage"]
    assert c["by_visibility"]["encrypted"] == c["bytes_out"] > 0 and c["small_share"] is True
    laid = _laid_out(html, tmp_path)
    assert laid["coverage"] and laid["warning"], laid
    assert laid["coverage"]["top"] >= 0 and laid["coverage"]["bottom"] <= laid["fold"], laid
    assert laid["warning"]["bottom"] <= laid["fold"]
    assert "0 %" in laid["coverage"]["text"]
    assert "Warning: this verdict rests on only 0 %" in laid["warning"]["text"]


def test_a_mostly_plaintext_capture_shows_coverage_without_the_warning(report, tmp_path: Path) -> None:
    html, doc = report
    c = doc["observed"]["coverage"]
    assert c["small_share"] is False and c["inspected_share"] >= c["small_share_threshold"]
    laid = _laid_out(html, tmp_path)
    assert laid["coverage"] and laid["warning"] is None, laid
    assert laid["coverage"]["bottom"] <= laid["fold"], laid
    assert "The checks inspected" in laid["coverage"]["text"]
