"""health_medical: ICD-10 codes under medical keys or beside diagnosis vocabulary
(诊断 病历 处方 检验 过敏 住院), HL7 v2 MSH segments, FHIR resourceType Patient/Condition/Observation
(in JSON records and in text).

What one value is (configs/field_types.yaml): an ICD-10 code, or diagnosis text under a diagnosis key in a
record without a code; MSH headers and resourceType markers are evidence (Inspection.evidence), no value."""

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
        (HL7, "text", {"health_medical"}),                    # a span (find_spans); inspect: evidence
        ('{"resourceType": "Condition", "id": "c1"', "text", {"health_medical"}),  # FHIR in (broken) text
        # near misses
        ("J45.9", "$.remark", set()),                      # an ICD shape alone: seat, product code, grid ref
        ("座位A12", "text", set()),
        ("j45.9", "$.diagnosis", set()),                   # lower case is not an ICD-10 code
        ("null", "$.diagnosis", set()),
    ],
)
def test_health_medical_table(engine, body, key_path, expected):
    if key_path == "json":
        got = types_in(engine, body.encode())
    else:
        got = {t for t, _ in found(engine, body, key_path)}
    assert got & {"health_medical"} == expected


def _hl7(*segments: str) -> bytes:
    return ("\r".join([HL7, *segments]) + "\r").encode()


_PID = "PID|1||110105194912310021^^^CHN^NNCHN||张^三||19491231|M"
_ICD = "http://hl7.org/fhir/sid/icd-10"


def _condition(code: str, text: str, system: str = _ICD) -> dict:
    return {"resourceType": "Condition", "code": {"coding": [{"system": system, "code": code}], "text": text}}


@pytest.mark.parametrize(
    ("body", "content_type", "values", "evidence"),
    [
        # HL7 v2: OBR-31 / DG1-3 component 1 is the code; the text beside it and the coding-system id I10
        # in component 3 are no further values; MSH is evidence only
        (_hl7(_PID, "OBR|1|O1|L1|GLU^血糖^L" + "|" * 27 + "E11.9^2型糖尿病^I10"), "application/hl7-v2", 1,
         True),
        (_hl7(_PID, "DG1|1||J45.9^支气管哮喘^I10"), "application/hl7-v2", 1, True),
        (_hl7(_PID, "DG1|1||^支气管哮喘^I10"), "text/plain", 1, True),             # text, no code
        (_hl7(_PID), "application/hl7-v2", 0, True),                              # no diagnosis at all
        (_hl7(_PID) + _hl7(_PID), "application/hl7-v2", 0, True),                 # two MSH: still none
        # FHIR: resourceType markers are evidence; an ICD-10 Coding is the value, its text is not another
        (json.dumps({"resourceType": "Patient", "id": "p1"}).encode(), "application/fhir+json", 0, True),
        (json.dumps(_condition("E11.9", "2型糖尿病"), ensure_ascii=False).encode(), None, 1, True),
        (json.dumps(_condition("44054006", "糖尿病", "http://snomed.info/sct"), ensure_ascii=False).encode(),
         None, 0, True),
        (json.dumps({"resourceType": "Bundle", "entry": [{"resource": _condition("E11.9", "a")},
                                                         {"resource": _condition("E11.9", "b")}]}).encode(),
         None, 1, True),
        # keyed: the code, and code-less text only in a record without a code
        (json.dumps({"referrals": [{"diagnosis": "E11.9", "诊断": "2型糖尿病"}, {"诊断": "支气管哮喘"},
                                   {"zd": "E11.9 2型糖尿病"}]}, ensure_ascii=False).encode(), None, 2, False),
        ("诊断：J45.9 支气管哮喘\n出院诊断：J45.9".encode(), "text/plain", 1, False),
        # near misses
        (json.dumps({"resourceType": "Bundle", "type": "collection"}).encode(), None, 0, False),
        (json.dumps({"resourceType": "instance", "region": "cn-hangzhou"}).encode(), None, 0, False),
    ],
)
def test_health_values_and_evidence(engine, body, content_type, values, evidence):
    inspection = engine.inspect(body, content_type)
    keys = {h.value_key for h in inspection.hits if h.field_type == "health_medical"}
    assert len(keys) == values
    assert any(e.field_type == "health_medical" for e in inspection.evidence) == evidence
    if values or evidence:
        assert "28" in {i.subcategory for i in inspection.important}


def test_a_code_is_one_value_whatever_carries_it(engine):
    def key(body: bytes, content_type: str | None = None) -> set[int]:
        hits = engine.inspect(body, content_type).hits
        return {h.value_key for h in hits if h.field_type == "health_medical"}

    expected = key(b'{"diagnosis": "J45.9"}')
    assert len(expected) == 1
    assert key("诊断：J45.9 支气管哮喘".encode(), "text/plain") == expected
    assert key(_hl7(_PID, "DG1|1||J45.9^支气管哮喘^I10"), "application/hl7-v2") == expected
    assert key(json.dumps(_condition("J45.9", "x")).encode()) == expected
