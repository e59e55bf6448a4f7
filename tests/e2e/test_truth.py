"""The agent against the generator's ground truth (fixtures/pcaps/<name>.truth.json).

The generator knows exactly what it sent: bytes by sequence space, requests, which field types and how
many distinct values went to each destination. These are targeted asserts in the suricata-verify style —
"bytes_out to X is exactly N" — on captures with every transport quirk (reordering, retransmission,
overlap with different data, VLAN, QinQ, IP fragments, IPv6, chunked, gzip, GBK, keep-alive, pipelining).
"""

from __future__ import annotations

import json
from collections import defaultdict

import duckdb
import pytest

from agent.config import load_agent_config
from agent.pipeline import run_capture_stats
from tests.conftest import FIXTURES

PCAPS = FIXTURES / "pcaps"
CASES = [(p, t) for p in sorted(PCAPS.iterdir()) if p.name.endswith((".pcap", ".pcapng", ".pcap.gz"))
         and (t := PCAPS / f"{p.name.split('.')[0]}.truth.json").is_file()]


@pytest.fixture(scope="module", params=CASES, ids=[c[0].name for c in CASES])
def observed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:
    capture, truth_file = request.param
    tmp = tmp_path_factory.mktemp(capture.name)
    key = tmp / "k.key"
    key.write_bytes(b"truth-test-key-not-a-secret-0000")
    config = load_agent_config(None, agent_id="truth", subject_key_file=str(key))
    run_capture_stats([capture], config, tmp / "out")
    con = duckdb.connect()
    out = tmp / "out"
    flows = con.sql(f"""
        SELECT coalesce(server_name, dst_ip) AS dest, sum(bytes_out)::BIGINT AS bytes_out,
               sum(bytes_in)::BIGINT AS bytes_in, sum(requests)::BIGINT AS requests, count(*) AS connections,
               bool_or(encrypted) AS encrypted, any_value(dst_country) AS country,
               bool_or(cross_border) AS cross_border, sum(missed_bytes)::BIGINT AS missed_bytes
        FROM read_parquet('{out}/flows/*.parquet') WHERE transport = 'tcp' GROUP BY 1""").fetchall()
    by_dest: dict[str, dict] = {r[0]: dict(zip(["dest", "bytes_out", "bytes_in", "requests", "connections",
                                                "encrypted", "country", "cross_border", "missed_bytes"], r,
                                               strict=True)) for r in flows}
    types: dict[str, dict[str, int]] = defaultdict(dict)
    if (out / "pi_values").is_dir():
        for dest, field_type, distinct in con.sql(f"""
                SELECT coalesce(f.server_name, f.dst_ip), p.field_type, count(DISTINCT p.value_key)
                FROM read_parquet('{out}/pi_values/*.parquet') p
                JOIN read_parquet('{out}/flows/*.parquet') f USING (flow_id) GROUP BY ALL""").fetchall():
            types[dest][field_type] = distinct
    important: dict[str, set[str]] = defaultdict(set)
    if (out / "detections").is_dir():
        for dest, sub in con.sql(f"""
                SELECT DISTINCT coalesce(f.server_name, f.dst_ip), d.important_subcategory
                FROM read_parquet('{out}/detections/*.parquet') d
                JOIN read_parquet('{out}/flows/*.parquet') f USING (flow_id)
                WHERE d.important_subcategory IS NOT NULL""").fetchall():
            important[dest].add(sub)
    anomalies = con.sql(f"SELECT name FROM read_parquet('{out}/anomalies/*.parquet')").fetchall() \
        if (out / "anomalies").is_dir() else []
    truth = json.loads(truth_file.read_text(encoding="utf-8"))
    return truth, {"flows": by_dest, "types": dict(types), "important": dict(important),
                   "anomalies": [a[0] for a in anomalies]}


def test_every_destination_gets_exactly_the_bytes_the_client_sent(observed: tuple[dict, dict]) -> None:
    truth, got = observed
    for dest, t in truth["destinations"].items():
        assert dest in got["flows"], f"no flow named {dest}"
        assert got["flows"][dest]["bytes_out"] == t["bytes_out"], dest
        assert got["flows"][dest]["missed_bytes"] == 0, dest


def test_every_destination_gets_exactly_the_bytes_the_server_sent(observed: tuple[dict, dict]) -> None:
    truth, got = observed
    for dest, t in truth["destinations"].items():
        assert got["flows"][dest]["bytes_in"] == t["bytes_in"], dest


def test_every_http_request_is_parsed(observed: tuple[dict, dict]) -> None:
    truth, got = observed
    for dest, t in truth["destinations"].items():
        assert got["flows"][dest]["requests"] == t["requests"], dest
        assert got["flows"][dest]["connections"] == t["connections"], dest


def test_country_cross_border_and_encryption_are_as_planted(observed: tuple[dict, dict]) -> None:
    truth, got = observed
    for dest, t in truth["destinations"].items():
        g = got["flows"][dest]
        assert (g["country"], g["cross_border"], g["encrypted"]) == (t["country"], t["cross_border"],
                                                                      t["encrypted"]), dest


def test_planted_field_types_are_found_with_their_distinct_values_at_cross_border_destinations(
        observed: tuple[dict, dict]) -> None:
    truth, got = observed
    for dest, t in truth["destinations"].items():
        expected = {k: v["distinct_values"] for k, v in t.get("field_types", {}).items()}
        if not t["cross_border"]:
            expected = {}   # domestic flows are not inspected
        assert got["types"].get(dest, {}) == expected, dest


def test_the_overlap_with_different_bytes_is_reported_once(observed: tuple[dict, dict]) -> None:
    truth, got = observed
    expected = sum(t.get("overlap", {}).get("expected_anomalies", {}).get("tcp/overlap_inconsistent", 0)
                   for t in truth["destinations"].values())
    assert got["anomalies"].count("overlap_inconsistent") == expected


def test_important_data_candidates_appear_where_planted_and_nowhere_else(observed: tuple[dict, dict]) -> None:
    truth, got = observed
    for dest, t in truth["destinations"].items():
        planted = set(t.get("important_subcategories", [])) if t["cross_border"] else set()
        assert got["important"].get(dest, set()) == planted, dest
