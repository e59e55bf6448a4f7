"""health_medical: ICD-10 codes under medical keys or beside diagnosis vocabulary
(诊断 病历 处方 检验 过敏 住院), HL7 v2 MSH segments, FHIR resourceType Patient/Condition/Observation
(in JSON records and in text)."""

from __future__ import annotations

import json

import pytest

from .helpers import found, types_in

HL7 = "MSH|^~\\&|HIS|HZ-HOSP|LIS|PARTNER|202603030941||ORU^R01|MSG001|P|2.5.1"


@pytest.mark.parametrize(
    ("body", "key_path", "expected"),
    [
        ("E11.9", "$.diagnosis", {"health_medical"}),
        ("2型糖尿病", "$.zdmc", {"health_medical"}),
        ("青霉素过敏", "form.ywgm", {"health_medical"}),
        ("诊断：J45.9 支气管哮喘", "text", {"health_medical"}),
        ("住院期间 K21.9", "text", {"health_medical"}),                         # vocabulary as context
        (HL7, "text", {"health_medical"}),
        ('{"resourceType": "Condition", "id": "c1"', "text", {"health_medical"}),  # FHIR in (broken) text
        (json.dumps({"resourceType": "Patient", "id": "p1"}), "json", {"health_medical"}),
        # near misses
        ("J45.9", "$.remark", set()),                      # an ICD shape alone: seat, product code, grid ref
        ("座位A12", "text", set()),
        ("j45.9", "$.diagnosis", set()),                   # lower case is not an ICD-10 code
        ("null", "$.diagnosis", set()),
        (json.dumps({"resourceType": "Bundle", "type": "collection"}), "json", set()),
        (json.dumps({"resourceType": "instance", "region": "cn-hangzhou"}), "json", set()),
    ],
)
def test_health_medical_table(engine, body, key_path, expected):
    if key_path == "json":
        got = types_in(engine, body.encode())
    else:
        got = {t for t, _ in found(engine, body, key_path)}
    assert got & {"health_medical"} == expected
