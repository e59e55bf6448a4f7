"""Flow sampling end to end: the demo capture through the real agent at `sampling.flow_rate: 0.5`, then the
self-check. Sampled flows carry sample_weight 2; the report keeps exact lower bounds for the checks and
shows estimates with an interval beside them; and the same flows are chosen on every run."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import BIN, FIXTURES, ROOT

DEMO = FIXTURES / "pcaps" / "demo.pcap"
TRUTH = json.loads((FIXTURES / "pcaps" / "demo.truth.json").read_text(encoding="utf-8"))


def sampled_run(tmp: Path, name: str) -> tuple[Path, dict]:
    cfg = tmp / "agent.yaml"
    cfg.write_text(f"agent_id: e2e\nsubject_key_file: {tmp / 'k.key'}\nsampling: {{flow_rate: 0.5}}\n")
    spool, out = tmp / f"spool-{name}", tmp / f"report-{name}"
    r = subprocess.run([str(BIN / "egress-agent"), "run", "--pcap", str(DEMO), "--config", str(cfg), "--out",
                        str(spool)], capture_output=True, text=True, timeout=300, cwd=tmp)
    assert r.returncode == 0, r.stderr
    filing = ROOT / "configs" / "filings" / "demo.yaml"
    r = subprocess.run([str(BIN / "egress-collector"), "selfcheck", "--records", str(spool), "--filing",
                        str(filing), "--out", str(out), "--format", "json"],
                       capture_output=True, text=True, timeout=300, cwd=tmp)
    assert r.returncode in (0, 1), r.stderr
    return spool, json.loads((out / "report.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[tuple[Path, dict], tuple[Path, dict]]:
    tmp = tmp_path_factory.mktemp("sampled")
    return sampled_run(tmp, "a"), sampled_run(tmp, "b")


def flows(spool: Path) -> list[dict]:
    return [r for f in sorted((spool / "flows").glob("*.parquet")) for r in pq.read_table(f).to_pylist()]


def test_sampled_flows_carry_their_weight_and_the_same_flows_are_chosen_every_time(runs) -> None:
    (spool_a, _), (spool_b, _) = runs
    a, b = flows(spool_a), flows(spool_b)
    assert {f["sample_weight"] for f in a} == {2.0}
    inspected = {f["flow_id"] for f in a if f["inspected"]}
    assert inspected == {f["flow_id"] for f in b if f["inspected"]}
    eligible = [f for f in a if f["cross_border"] and not f["encrypted"] and f["requests"]]
    assert 0 < len(inspected) < len(eligible)          # some, not all, of the plaintext exports


def test_the_report_keeps_exact_lower_bounds_and_adds_estimates_with_an_interval(runs) -> None:
    (_, report), _ = runs
    observed = report["observed"]
    assert observed["persons_basis"] == "exact_lower_bound"
    assert observed["sampling_rate_min"] == 0.5
    truth_total = sum(t.get("persons_nonsensitive", 0) for t in TRUTH["destinations"].values()
                      if t["cross_border"])
    assert observed["persons_nonsensitive"] <= truth_total       # exact over what was inspected
    est = observed["persons_nonsensitive_estimate"]
    assert est["low"] >= observed["persons_nonsensitive"] and est["low"] <= est["value"] <= est["high"]
    assert est["value"] > observed["persons_nonsensitive"]
