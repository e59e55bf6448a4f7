"""The coverage decision table (agent/coverage.py): a flow's visibility and why it was not inspected, from
the facts the pipeline and the session know; and the columns as the real agent writes them for real
captures (plaintext HTTP inspected, TLS encrypted with no secrets)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from agent.config import load_agent_config
from agent.coverage import (
    UNINSPECTED_REASONS,
    VISIBILITIES,
    CoverageFacts,
    alpn_of,
    facts_of,
    uninspected_reason,
    visibility,
)
from agent.pipeline import run_capture
from agent.protocols.handler import Summary
from agent.records import SCHEMA_VERSION
from tests.conftest import FIXTURES

# A cross-border, sampled, parsed HTTP flow with a body: inspected.
HTTP = CoverageFacts(egress=True, sampled=True, app="http", payload_bytes=900, missed_bytes=0,
                     encrypted=False, decrypted=False, decrypt_reason=None, budget_exceeded=False,
                     inspected=True)
TLS = replace(HTTP, app="tls", encrypted=True, inspected=False)


@pytest.mark.parametrize(("facts", "seen", "reason"), [
    (HTTP, "plaintext", None),
    # A flow that is no export (domestic, or not from an internal source) is not eligible: no reason.
    (replace(HTTP, inspected=False, egress=False), "plaintext", None),
    (replace(TLS, egress=False), "encrypted", None),
    # The sampler's choice comes first, whatever the bytes were.
    (replace(HTTP, inspected=False, sampled=False), "plaintext", "not_sampled"),
    (replace(TLS, sampled=False), "encrypted", "not_sampled"),
    # No application bytes: nothing to see, nothing to inspect, no reason.
    (replace(HTTP, inspected=False, app="unknown", payload_bytes=0), "none", None),
    (replace(TLS, payload_bytes=0), "none", None),
    # TLS/QUIC not opened: the decryptor's reason, no_secrets when it gave none (or one outside the list).
    (TLS, "encrypted", "no_secrets"),
    (replace(TLS, app="quic"), "encrypted", "no_secrets"),
    (replace(TLS, decrypt_reason="unsupported_cipher"), "encrypted", "unsupported_cipher"),
    (replace(TLS, decrypt_reason="decrypt_failed"), "encrypted", "decrypt_failed"),
    (replace(TLS, decrypt_reason="capture_gap"), "encrypted", "capture_gap"),
    (replace(TLS, decrypt_reason="something else"), "encrypted", "no_secrets"),
    # Opened with logged secrets.
    (replace(TLS, decrypted=True, inspected=True), "decrypted", None),
    (replace(TLS, decrypted=True), "decrypted", None),            # requests without body or query
    (replace(TLS, decrypted=True, missed_bytes=10), "decrypted", "capture_gap"),
    # Parsed in the clear but not inspected: the capture, the budgets; no body / query is no content.
    (replace(HTTP, inspected=False, missed_bytes=1460), "plaintext", "capture_gap"),
    (replace(HTTP, inspected=False, budget_exceeded=True), "plaintext", "budget_exceeded"),
    (replace(HTTP, inspected=False), "plaintext", None),
    (replace(HTTP, inspected=False, app="dns"), "plaintext", None),
    (replace(HTTP, inspected=False, app="http2"), "plaintext", None),            # h2c
    (replace(HTTP, inspected=False, app="grpc"), "plaintext", None),
    # A protocol the agent does not parse; its start lost to a gap says so instead.
    (replace(HTTP, inspected=False, app="unknown"), "none", "unknown_protocol"),
    (replace(HTTP, inspected=False, app="socks5"), "none", "unknown_protocol"),
    (replace(HTTP, inspected=False, app="unknown", missed_bytes=5), "none", "capture_gap"),
    # A handler that knows better names the visibility; an unknown hint is ignored.
    (replace(HTTP, hint="proxy"), "proxy", None),
    (replace(HTTP, hint="har", inspected=False), "har", None),
    (replace(HTTP, hint="sideways"), "plaintext", None),
    # Inspected wins over every other fact (budgets cut a body, the detectors still saw its start).
    (replace(HTTP, budget_exceeded=True, missed_bytes=3), "plaintext", None),
])
def test_the_decision_table(facts: CoverageFacts, seen: str, reason: str | None) -> None:
    assert visibility(facts) == seen
    assert uninspected_reason(facts) == reason
    assert seen in VISIBILITIES and (reason is None or reason in UNINSPECTED_REASONS)


def test_facts_come_from_the_handlers_summary() -> None:
    bare = facts_of(Summary(app="tls", encrypted=True), egress=True, sampled=True, payload_bytes=10,
                    missed_bytes=0)
    assert (bare.decrypted, bare.decrypt_reason, bare.budget_exceeded, bare.hint) == \
        (False, None, False, None)
    assert uninspected_reason(bare) == "no_secrets"
    opened = facts_of(Summary(app="http2", encrypted=True, decrypted=True, alpn="h2", truncated=True),
                      egress=True, sampled=True, payload_bytes=10, missed_bytes=0)
    assert (visibility(opened), uninspected_reason(opened)) == ("decrypted", "budget_exceeded")
    nothing = facts_of(Summary(), egress=True, sampled=True, payload_bytes=10, missed_bytes=0)
    assert (visibility(nothing), uninspected_reason(nothing)) == ("none", "unknown_protocol")


@pytest.mark.parametrize("alpn", ["http/1.1", "h2", "h3", "h3-29"])
def test_alpn_tokens_are_kept(alpn: str) -> None:
    assert alpn_of(Summary(alpn=alpn)) == alpn


@pytest.mark.parametrize("alpn", ["", "x" * 33, "h2 ", "张三"])
def test_an_alpn_that_is_no_token_is_left_out(alpn: str) -> None:
    assert alpn_of(Summary(alpn=alpn)) is None


def _flows(tmp_path: Path, pcap: Path, **config: object) -> list[dict]:
    cfg = load_agent_config(None, agent_id="cov", subject_key_file=str(tmp_path / "k.key"), **config)
    out = run_capture([pcap], cfg, tmp_path / "out")
    return [row for f in sorted((out / "flows").glob("*.parquet")) for row in pq.read_table(f).to_pylist()]


def test_the_agent_writes_coverage_for_a_plaintext_capture(tmp_path: Path) -> None:
    rows = _flows(tmp_path, FIXTURES / "pcaps" / "demo.pcap")
    assert {r["schema_version"] for r in rows} == {SCHEMA_VERSION}
    for r in rows:
        assert r["uninspected_reason"] is None or not r["inspected"]
        assert r["visibility"] in VISIBILITIES and r["alpn"] is None
        if r["inspected"]:
            assert r["visibility"] == "plaintext"
        if not r["cross_border"]:
            assert r["uninspected_reason"] is None      # no export: not eligible
    assert any(r["inspected"] for r in rows)


def test_the_agent_marks_tls_without_secrets_encrypted(tmp_path: Path) -> None:
    rows = _flows(tmp_path, FIXTURES / "pcaps" / "tls_split-client-hello.pcap")
    tls = [r for r in rows if r["app"] == "tls"]
    assert tls
    for r in tls:
        assert r["visibility"] == "encrypted"
        assert r["uninspected_reason"] in ("no_secrets", None)


def test_flows_the_sampler_passed_over_say_so(tmp_path: Path) -> None:
    rows = _flows(tmp_path, FIXTURES / "pcaps" / "demo.pcap", sampling={"flow_rate": 0.01})
    eligible = [r for r in rows if r["cross_border"] and r["app"] == "http"]
    assert eligible
    # At 1 % the demo's few cross-border flows are (deterministically) all passed over.
    assert {r["uninspected_reason"] for r in eligible} == {"not_sampled"}
    assert not any(r["inspected"] for r in rows)
