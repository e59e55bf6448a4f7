"""walkers.json: malformed and deeply nested JSON."""

from __future__ import annotations

import json

from detectors.walkers import WalkBudget, walk


def _body(doc: object) -> bytes:
    return json.dumps(doc, ensure_ascii=False).encode()


def test_malformed_json_reports_an_anomaly_without_payload():
    walked = walk(b'{"sfzh": "11010519491231002X", xm}', "application/json")
    assert [name for name, _ in walked.anomalies] == ["json_malformed"]
    assert all("11010519491231002X" not in detail for _, detail in walked.anomalies)


def test_deep_nesting_stays_within_budget():
    doc: object = "deep"
    for _ in range(200):
        doc = {"a": doc}
    walked = walk(json.dumps(doc).encode(), "application/json", WalkBudget(max_depth=50))
    assert walked.triples == ()
    assert [name for name, _ in walked.anomalies] == ["depth_limit"]


def test_pathological_nesting_does_not_crash():
    walked = walk(b"[" * 200_000 + b"]" * 200_000, "application/json")
    assert walked.kind == "text"
    assert walked.anomalies == (("json_too_deep", "400000 chars; scanned as text"),)


def test_a_base64_value_in_json_stays_a_value():
    blob = __import__("base64").b64encode(bytes(range(256)) * 8).decode()
    assert walk(_body({"file": blob}), "application/json").triples == (("$.file", blob, 0),)
