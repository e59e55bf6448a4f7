"""The catalog carries every reference id with its flags; config errors are one line naming file and entry."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from detectors.catalog import CatalogError, load_catalog, load_policy

from .conftest import CONFIGS

REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference" / "field_types.yaml"
TESTS = Path(__file__).resolve().parent


def _reference() -> list[dict]:
    if not REFERENCE.exists():
        pytest.skip(f"reference catalog not present at {REFERENCE}")
    return yaml.safe_load(REFERENCE.read_text(encoding="utf-8"))["field_types"]


def test_every_reference_id_is_present_with_its_flags(catalog):
    for ref in _reference():
        ft = catalog.get(ref["id"])
        assert (ft.pi, ft.sensitive, ft.identifier) == (ref["pi"], ref["sensitive"], ref["identifier"]), ft.id
        assert ft.important_subcategory == ref.get("important_subcategory"), ft.id
        assert ft.name_zh == ref["name_zh"]
        assert set(ref.get("key_hints", [])) <= set(ft.key_hints), ft.id


def test_every_entry_is_described(catalog):
    for ft in catalog.field_types:
        assert ft.name_en and ft.name_zh
        assert ft.key_hints or ft.id == "minor_under_14", ft.id


def test_every_type_with_patterns_has_a_test_table(catalog):
    modules = {p.stem for p in TESTS.glob("test_*.py")}
    owners = {"resident_id_cn": "test_resident_id", "mobile_cn": "test_mobile", "email": "test_email",
              "bank_card": "test_bank_card", "person_name": "test_person_name",
              "postal_address": "test_postal_address", "passport_no": "test_passport",
              "travel_permit": "test_travel_permit", "landline_cn": "test_landline",
              "bank_account": "test_bank_account", "health_medical": "test_health_medical",
              "genetic": "test_genetic", "face_biometric": "test_face_biometric",
              "precise_location": "test_precise_location", "location_track": "test_location_track",
              "vehicle_plate": "test_vehicle_plate", "vin": "test_vin", "device_id": "test_device_id",
              "minor_under_14": "test_minor_under_14"}
    owners.update({t: "test_keyed_types" for t in ("auth_secret", "transaction_record", "other_biometric",
                                                   "religion", "criminal_record", "communications",
                                                   "ip_address", "online_account", "demographic")})
    for ft in catalog.field_types:
        if ft.patterns:
            module = owners.get(ft.id, "test_other_types")
            assert module in modules, ft.id
            assert ft.id in (TESTS / f"{module}.py").read_text(encoding="utf-8"), ft.id


def _broken_copy(tmp_path: Path, old: str, new: str) -> Path:
    text = (CONFIGS / "field_types.yaml").read_text(encoding="utf-8")
    assert old in text
    path = tmp_path / "field_types.yaml"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("old", "new", "entry"),
    [
        ("regex: '(?<![0-9A-Za-z])[1-9]\\d{15,18}", "regex: '(?<![0-9A-Za-z])[1-9\\d{15,18}", "bank_card"),
        ("validator: luhn", "validator: no_such_check", "bank_card"),
        ("masker: mobile", "masker: nope", "mobile_cn"),
        ("- id: email", "- id: Email!", "field_types[6]"),
        ("- id: email", "- id: mobile_cn", "duplicate"),
        ('important_subcategory: "27"', 'important_subcategory: "41"', "genetic"),
        ("    priority: 100", "    priority: high", "resident_id_cn"),
    ],
)
def test_bad_entry_error_names_file_and_entry(tmp_path, old, new, entry):
    path = _broken_copy(tmp_path, old, new)
    with pytest.raises(CatalogError) as info:
        load_catalog(path)
    message = str(info.value)
    assert str(path) in message and entry in message
    assert "\n" not in message
    assert isinstance(info.value, ValueError)


def test_missing_file_names_the_file(tmp_path):
    with pytest.raises(CatalogError, match=re.escape("nothere.yaml: cannot read: No such file or directory")):
        load_catalog(tmp_path / "nothere.yaml")


def test_bad_yaml_names_the_line(tmp_path):
    path = tmp_path / "field_types.yaml"
    path.write_text("field_types: [\n  {id: x\n", encoding="utf-8")
    with pytest.raises(CatalogError, match=re.escape("field_types.yaml: line")):
        load_catalog(path)


def test_policy_defaults_and_errors(tmp_path, catalog):
    policy = load_policy(CONFIGS / "policy.yaml", catalog)
    assert policy.resident_id_is_sensitive is True
    assert policy.is_sensitive(catalog.get("resident_id_cn"))
    bad = tmp_path / "policy.yaml"
    bad.write_text("resident_id_is_sensitiv: false\n", encoding="utf-8")
    with pytest.raises(CatalogError, match=re.escape("policy.yaml: resident_id_is_sensitiv")):
        load_policy(bad)
    bad.write_text("sensitive_overrides: {no_such_type: true}\n", encoding="utf-8")
    expected = "sensitive_overrides.no_such_type: unknown field type id"
    with pytest.raises(CatalogError, match=re.escape(expected)):
        load_policy(bad, catalog)
