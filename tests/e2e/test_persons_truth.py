"""Persons and distinct values per destination against the generator's truth (DESIGN §5).

Runs the real pipeline and the embedded collector on each generated capture. The issue's bar is persons
within 2 % and distinct values within 3 % of the truth; linked records (one person with ID + mobile in one
request and mobile only in another; name + date of birth without an identifier) are where a wrong linking
rule would show.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.config import load_agent_config
from agent.pipeline import run_capture_stats
from collector.models import load_filing
from collector.selfcheck import run_selfcheck
from tests.conftest import FIXTURES, ROOT

PCAPS = FIXTURES / "pcaps"
CAPTURES = sorted(p for p in PCAPS.glob("*.pcap") if (PCAPS / f"{p.stem}.truth.json").is_file())


def _close(got: int, want: int, rel: float) -> bool:
    return abs(got - want) <= rel * want


@pytest.fixture(scope="module", params=CAPTURES, ids=[p.name for p in CAPTURES])
def report(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:
    capture: Path = request.param
    tmp = tmp_path_factory.mktemp(capture.stem)
    key = tmp / "k.key"
    key.write_bytes(b"persons-test-key-not-a-secret-00")
    config = load_agent_config(None, agent_id="persons", subject_key_file=str(key))
    run_capture_stats([capture], config, tmp / "records")
    # The filing only decides scenarios; persons per destination are counted for every destination.
    doc = run_selfcheck(tmp / "records", load_filing(ROOT / "configs" / "filings" / "demo.yaml"), None)
    truth = json.loads((PCAPS / f"{capture.stem}.truth.json").read_text(encoding="utf-8"))
    return truth, doc.model_dump(mode="json")


def test_persons_per_destination_are_within_2_percent_of_the_truth(report: tuple[dict, dict]) -> None:
    truth, doc = report
    by_name = {d["server_name"]: d for d in doc["observed"]["destinations"]}
    for name, t in truth["destinations"].items():
        if not t["cross_border"] or not t.get("field_types"):
            continue
        d = by_name[name]
        for kind in ("persons_nonsensitive", "persons_sensitive"):
            assert _close(d[kind], t[kind], 0.02), (name, kind, d[kind], t[kind])


def test_distinct_values_per_field_type_are_within_3_percent_of_the_truth(report: tuple[dict, dict]) -> None:
    truth, doc = report
    by_name = {d["server_name"]: d for d in doc["observed"]["destinations"]}
    for name, t in truth["destinations"].items():
        if not t["cross_border"]:
            continue
        got = by_name[name]["field_types"] if name in by_name else {}
        for field_type, planted in t.get("field_types", {}).items():
            assert field_type in got, (name, field_type)
            assert _close(got[field_type]["distinct_values"], planted["distinct_values"], 0.03), \
                (name, field_type, got[field_type]["distinct_values"], planted["distinct_values"])
