"""Filing validation: every invalid filing names the file and the exact field path."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from collector.models import Filing, FilingError, known_field_types, load_filing

from .builders import EXAMPLE_FILING, delete_at, example_data, set_at

REFERENCE_EXAMPLE = Path(__file__).resolve().parents[3] / "shared" / "reference" / "filing.example.yaml"


INVALID = [
    # (mutation, expected "field.path: message" fragment)
    pytest.param(set_at(("scenarios", 0, "scale", "persons_sensitive"), "many"),
                 "scenarios[0].scale.persons_sensitive: Input should be a valid integer", id="wrong-type"),
    pytest.param(set_at(("processor", "is_ciio"), "perhaps"),
                 "processor.is_ciio: Input should be a valid boolean", id="wrong-type-bool"),
    pytest.param(set_at(("scenarios", 0, "data_catalog", 1, "field_type"), "shoe_size"),
                 "scenarios[0].data_catalog[1].field_type: 'shoe_size' is not a field type id",
                 id="unknown-field-type"),
    pytest.param(set_at(("scenarios", 1, "recipients", 0), "R9"),
                 "scenarios[1].recipients[0]: 'R9' is not a declared recipient", id="undeclared-recipient"),
    pytest.param(set_at(("valid_from",), "2026-13-01"),
                 "valid_from: Input should be a valid date", id="bad-date"),
    pytest.param(set_at(("valid_until",), "2025-12-31"),
                 "valid_until: 2025-12-31 is before valid_from 2026-01-01", id="until-before-from"),
    pytest.param(set_at(("ftz_area",), "shanghai"), "ftz_area: Input should be 'zhoushan'",
                 id="bad-enum-area"),
    pytest.param(set_at(("scenarios", 1, "route"), "handshake"), "scenarios[1].route: Input should be",
                 id="bad-enum-route"),
    pytest.param(set_at(("status",), "maybe"), "status: Input should be", id="bad-enum-status"),
    pytest.param(set_at(("recipients", 0, "declared_endpoints", "domains", 1), "not a domain"),
                 "recipients[0].declared_endpoints.domains[1]: 'not a domain' is not a domain name",
                 id="bad-domain"),
    pytest.param(set_at(("recipients", 1, "declared_endpoints", "ip_cidrs", 0), "203.116.40.0/33"),
                 "recipients[1].declared_endpoints.ip_cidrs[0]: '203.116.40.0/33' is not a CIDR block",
                 id="bad-cidr"),
    pytest.param(set_at(("recipients", 0, "country_region"), "Germany"),
                 "recipients[0].country_region: String should match pattern", id="bad-country"),
    pytest.param(set_at(("processor", "uscc"), "91330201MA2H3GKJ3X"),
                 "processor.uscc: not a valid unified social credit code", id="bad-uscc-check-digit"),
    pytest.param(delete_at(("scenarios", 0, "scale")), "scenarios[0].scale: Field required", id="missing"),
    pytest.param(set_at(("scenarios", 0, "colour"), "blue"),
                 "scenarios[0].colour: Extra inputs are not permitted", id="unknown-key"),
    pytest.param(set_at(("recipients", 1, "recipient_id"), "R1"),
                 "recipients[1].recipient_id: duplicate recipient", id="duplicate-recipient"),
    pytest.param(set_at(("scenarios", 0, "negative_list_match", "subcategory"), "41"),
                 "scenarios[0].negative_list_match.subcategory: '41' is not an appendix sub-category",
                 id="bad-subcategory"),
    pytest.param(set_at(("schema",), "zjftz.filing/v2"), "schema: expected 'zjftz.filing/v1'",
                 id="wrong-schema"),
]


@pytest.mark.parametrize(("mutate", "message"), INVALID)
def test_invalid_filing_names_file_and_field_path(tmp_path: Path, mutate: Callable, message: str) -> None:
    data = copy.deepcopy(example_data())
    mutate(data)
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(FilingError) as exc:
        load_filing(path)
    text = str(exc.value)
    assert text.startswith(f"{path}: {message}"), text
    assert "\n" not in text


@pytest.mark.parametrize(("content", "message"), [
    ("schema: [unclosed", "line 1"),
    ("- just\n- a list\n", "expected a mapping"),
])
def test_unparseable_yaml_is_one_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(FilingError, match=message) as exc:
        load_filing(path)
    assert str(exc.value).startswith(f"{path}: ")


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(FilingError, match=r"nope\.yaml: cannot read"):
        load_filing(tmp_path / "nope.yaml")


@pytest.mark.parametrize("path", [EXAMPLE_FILING, REFERENCE_EXAMPLE])
def test_reference_example_loads(path: Path) -> None:
    if not path.exists():
        pytest.skip(f"{path} not present in this checkout")
    f = load_filing(path)
    assert f.filing_id == "ZJFTZ-NB-2026-0031"
    assert [s.scenario_id for s in f.scenarios] == ["booking", "crew-management"]
    assert f.recipients[0].declared_endpoints.domains == [
        "booking.gfb-freight.example", "*.edi.gfb-freight.example"]
    assert f.scenarios[1].scale.persons_sensitive == 800


def test_project_example_is_a_copy_of_the_reference() -> None:
    if not REFERENCE_EXAMPLE.exists():
        pytest.skip("reference example not present")
    assert Filing.model_validate(example_data()) == load_filing(REFERENCE_EXAMPLE)


def test_known_field_types_has_the_reference_ids() -> None:
    expected = {"person_name", "resident_id_cn", "mobile_cn", "passport_no", "org_credit_code"}
    assert expected <= known_field_types()
