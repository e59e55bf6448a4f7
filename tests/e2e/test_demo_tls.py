"""The bundled TLS demo (fixtures/make_demo_tls.py): a real capture with its NSS key log.

What the files hold is checked with tshark (the oracle) whoever generated them; then what `egress-collector
selfcheck --keylog` makes of them against configs/filings/demo.yaml, and of the capture without its key log.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BIN, FIXTURES, ROOT

PCAPNG = FIXTURES / "pcaps" / "demo_tls.pcapng"
KEYS = FIXTURES / "pcaps" / "demo_tls.keys"
TRUTH = json.loads((FIXTURES / "pcaps" / "demo_tls.keyed-truth.json").read_text(encoding="utf-8"))
FILING = ROOT / "configs" / "filings" / "demo.yaml"
needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None,
                                  reason="needs tshark (Debian package tshark)")


def _tshark(*args: str) -> list[list[str]]:
    r = subprocess.run(["tshark", "-n", "-r", str(PCAPNG), *args, "-T", "fields", "-E", "separator=|",
                        "-E", "occurrence=f"], capture_output=True, text=True, timeout=60, check=True)
    return [line.split("|") for line in r.stdout.splitlines()]


def _requests(keylog: Path | None) -> list[tuple[str, str]]:
    """(method, Host / :authority) of every request the client sent, as tshark decodes it."""
    opts = ["-o", f"tls.keylog_file:{keylog}"] if keylog else []
    rows = _tshark(*opts, "-Y", "ip.src==10.77.0.2 && (http.request || http2.type==1)", "-e",
                   "http.request.method", "-e", "http.host", "-e", "http2.headers.method", "-e",
                   "http2.headers.authority")
    return sorted((m1 or m2, h1 or h2) for m1, h1, m2, h2 in rows)


def test_the_demo_files_are_small_and_the_truth_holds_no_raw_value() -> None:
    assert PCAPNG.stat().st_size < 100_000 and KEYS.stat().st_size < 10_000
    text = json.dumps(TRUTH, ensure_ascii=False)
    assert not re.search(r"(?<![0-9])1[3-9][0-9]{9}(?![0-9])", text)
    assert not re.search(r"(?<![0-9A-Za-z])[0-9]{17}[0-9Xx](?![0-9A-Za-z])", text)
    assert not re.search(r"[\u3400-\u9fff]", text)
    labels = {line.split()[0] for line in KEYS.read_text().splitlines()}
    assert labels == {"CLIENT_HANDSHAKE_TRAFFIC_SECRET", "SERVER_HANDSHAKE_TRAFFIC_SECRET",
                      "CLIENT_TRAFFIC_SECRET_0", "SERVER_TRAFFIC_SECRET_0", "EXPORTER_SECRET"}


@needs_tshark
def test_the_key_log_opens_the_https_export_in_tshark() -> None:
    crm, partner = "sync.crm-vendor.example", "api.partner-logistics.example"
    assert _requests(KEYS) == [("POST", partner), ("POST", crm), ("POST", crm)]
    assert _requests(None) == [("POST", partner)]          # without keys only the plain flow
    randoms = {r[0].replace(":", "") for r in _tshark("-Y", "tls.handshake.type==1", "-e",
                                                      "tls.handshake.random")}
    assert randoms == {line.split()[1] for line in KEYS.read_text().splitlines()}
    sni = {r[0] for r in _tshark("-Y", "tls.handshake.type==1", "-e", "tls.handshake.extensions_server_name")}
    assert sni == {crm}


def _selfcheck(tmp_path: Path, *extra: str) -> dict[str, Any]:
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(f"agent_id: demo-tls\nsubject_key_file: {tmp_path / 'k.key'}\n")
    out = tmp_path / "report"
    r = subprocess.run([str(BIN / "egress-collector"), "selfcheck", str(PCAPNG), *extra, "--filing",
                        str(FILING), "--agent-config", str(cfg), "--out", str(out), "--format", "json"],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode in (0, 1), r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    return json.loads((out / "report.json").read_text(encoding="utf-8"))


def test_selfcheck_with_the_key_log_finds_the_https_export(tmp_path: Path) -> None:
    report = _selfcheck(tmp_path, "--keylog", str(KEYS))
    assert {(f["check"], f["scenario_id"], f["subject"]) for f in report["findings"]} == {
        (f["check"], f["scenario_id"], f["subject"]) for f in TRUTH["expected_findings"]}
    dests = {d["server_name"]: d for d in report["observed"]["destinations"]}
    for name, want in TRUTH["destinations"].items():
        got = dests[name]
        assert (got["persons_nonsensitive"], got["persons_sensitive"]) == (
            want["persons_nonsensitive"], want["persons_sensitive"]), name
        assert {ft: v["distinct_values"] for ft, v in got["field_types"].items()} == {
            ft: v["distinct_values"] for ft, v in want["field_types"].items()}, name
    assert report["observed"]["coverage"]["by_visibility"]["decrypted"] > 0
    assert report["observed"]["coverage"]["by_visibility"]["encrypted"] == 0


def test_selfcheck_without_the_key_log_sees_the_export_but_not_inside(tmp_path: Path) -> None:
    report = _selfcheck(tmp_path)
    assert not report["findings"]
    coverage = report["observed"]["coverage"]
    closed = [(d["destination"], [r["reason"] for r in d["reasons"]])
              for d in coverage["uninspected_destinations"]]
    assert closed == [("sync.crm-vendor.example", ["no_secrets"])]
    assert report["observed"]["coverage"]["by_visibility"]["encrypted"] > 0
