"""Filing validation: every invalid filing names the file and the exact field path."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import yaml

from collector import documents
from collector.models import Filing, FilingError, known_field_types, load_filing
from collector.spotcheck import CheckRequestError, active_filings, period_for, run_spot_check
from collector.warehouse import Version
from detectors.safeyaml import FILE_CAPS

from .builders import EXAMPLE_FILING, EXAMPLE_NEGATIVE_LIST, delete_at, example_data, set_at

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
    pytest.param(set_at(("scenarios", 0, "scenario_id"), "s" * 129),
                 "scenarios[0].scenario_id: String should have at most 128 characters",
                 id="long-scenario-id"),
]


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


# --- value bounds: what the checks cannot compute with is refused where it enters (collector/bounds.py)

OVER = [
    # (mutation, field path named in the one-line error)
    pytest.param(set_at(("scenarios", 0, "scale", "persons_nonsensitive"), 2**63),
                 "scenarios[0].scale.persons_nonsensitive: Input should be less than or equal to 10000000000",
                 id="scale-2^63"),
    pytest.param(set_at(("scenarios", 0, "scale", "persons_nonsensitive"), 10**400),
                 "scenarios[0].scale.persons_nonsensitive: Input should be less than or equal to",
                 id="scale-10^400"),
    pytest.param(set_at(("scenarios", 1, "scale", "persons_sensitive"), 10**10 + 1),
                 "scenarios[1].scale.persons_sensitive: Input should be less than or equal to",
                 id="scale-cap+1"),
    pytest.param(set_at(("valid_from",), "1969-12-31"),
                 "valid_from: Input should be greater than or equal to 1970-01-01", id="from-1969"),
    pytest.param(set_at(("valid_until",), "9999-12-31"),
                 "valid_until: Input should be less than or equal to 2100-12-31", id="until-9999"),
    pytest.param(set_at(("valid_until",), "2101-01-01"),
                 "valid_until: Input should be less than or equal to 2100-12-31", id="until-2101"),
    pytest.param(set_at(("area_opinion", "issued_at"), "9999-12-31"),
                 "area_opinion.issued_at: Input should be less than or equal to 2100-12-31",
                 id="opinion-9999"),
    pytest.param(set_at(("tolerances",), {"volume_increase_major_pct": 10_000.5}),
                 "tolerances.volume_increase_major_pct: Input should be less than or equal to 10000",
                 id="pct-over"),
    pytest.param(set_at(("tolerances",), {"volume_increase_major_pct": float("inf")}),
                 "tolerances.volume_increase_major_pct: Input should be a finite number", id="pct-inf"),
    pytest.param(set_at(("tolerances",), {"volume_increase_major_pct": float("nan")}),
                 "tolerances.volume_increase_major_pct: Input should be a finite number", id="pct-nan"),
]


# Invalid filings, and values beyond their bounds (issue 9: a scale of 2^63 validated, then overflowed).
@pytest.mark.parametrize(("mutate", "message"), INVALID + OVER)
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


def test_values_at_their_bounds_are_accepted() -> None:
    data = copy.deepcopy(example_data())
    data.update(valid_from="1970-01-01", valid_until="2100-12-31",
                tolerances={"volume_increase_major_pct": 10_000})
    data["area_opinion"]["issued_at"] = "2100-12-31"
    data["scenarios"][0]["scale"] = {"persons_nonsensitive": 10**10, "persons_sensitive": 10**10}
    f = Filing.model_validate(data)
    assert f.scenarios[0].scale.persons_nonsensitive == 10**10 and f.valid_until.year == 2100


@pytest.mark.parametrize(("start", "end", "field"), [
    (date(9999, 12, 31), None, "from"), (None, date(9999, 12, 31), "to"), (date(1, 1, 1), None, "from"),
    (date(2026, 1, 1), date(2101, 1, 1), "to"), (date(1969, 12, 31), date(2026, 1, 1), "from"),
])
def test_a_check_period_outside_the_date_bounds_is_a_422_naming_the_field(
        start: date | None, end: date | None, field: str) -> None:
    with pytest.raises(CheckRequestError) as exc:
        period_for(start, end, datetime(2026, 6, 1, tzinfo=UTC))
    assert (exc.value.status, exc.value.field) == (422, field)
    assert str(exc.value).startswith(f"{field}: ") and "1970-01-01..2100-12-31" in str(exc.value)


def test_a_check_period_at_the_date_bounds_is_computed() -> None:
    lo, hi = period_for(date(1970, 1, 1), date(2100, 12, 31), datetime(2026, 6, 1, tzinfo=UTC))
    assert (lo.date(), hi.date()) == (date(1970, 1, 1), date(2101, 1, 1))


# --- files through the capped loader: a hostile file is one line, never a freeze or a traceback ----------

@pytest.mark.parametrize(("content", "fragment"), [
    pytest.param("a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}" if i > 1 else "*a"] * 10) + "]\n" for i in range(1, 12)),
        "YAML aliases expand the document", id="billion-laughs"),
    pytest.param("[" * 100_000 + "]" * 100_000, "nesting deeper than the limit for files of 64 levels",
                 id="100k-deep"),
    pytest.param("a: &a [*a]\n", "refers to a node that contains it", id="recursive-alias"),
    pytest.param("a: " + "7" * 5000 + "\n", "a value cannot be read", id="huge-int"),
])
def test_hostile_files_are_one_line_naming_the_file(tmp_path: Path, content: str, fragment: str) -> None:
    path = tmp_path / "hostile.yaml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(FilingError) as exc:
        load_filing(path)
    text = str(exc.value)
    assert text.startswith(f"{path}: ") and fragment in text and "\n" not in text, text


def test_a_file_over_the_size_limit_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    with open(path, "wb") as fh:
        fh.truncate(FILE_CAPS.max_bytes + 1)          # sparse: nothing written
    with pytest.raises(FilingError, match=r"huge\.yaml: .*more than the limit for files of 16777216 bytes"):
        load_filing(path)


def test_a_filing_with_anchors_and_a_merge_key_still_loads(tmp_path: Path) -> None:
    text = EXAMPLE_FILING.read_text(encoding="utf-8").replace(
        "    declared_endpoints: {domains: [hr.crewservices.example], ip_cidrs: [203.116.40.0/24]}",
        "    declared_endpoints: &crew {domains: [hr.crewservices.example], ip_cidrs: [203.116.40.0/24]}")
    assert "&crew" in text
    path = tmp_path / "anchored.yaml"
    path.write_text(text.replace("scenarios:\n", "_ep: {<<: *crew}\nscenarios:\n", 1), encoding="utf-8")
    with pytest.raises(FilingError, match=r"_ep: Extra inputs"):   # anchors load; unknown keys still refused
        load_filing(path)
    path.write_text(text, encoding="utf-8")
    assert load_filing(path).recipients[1].declared_endpoints.ip_cidrs == ["203.116.40.0/24"]


# --- documents stored before the bounds: loud where they are used, never a 500 or a stalled schedule -----

def _stored(kind: str, doc_id: str, body: dict) -> Version:
    return Version(kind, doc_id, 3, "nb-shipping-demo", "ningbo", "0" * 64, body, datetime.now(UTC))


class _Stored:
    """The two warehouse reads the spot check makes, over fixed versions."""

    def __init__(self, filings: list[Version], lists: list[Version] | None = None) -> None:
        self.docs = {"filing": filings, "negative_list": lists or []}

    def latest_documents(self, kind: str, *, area: str | None = None) -> list[Version]:
        return [v for v in self.docs[kind] if area is None or v.ftz_area in (None, area)]

    def get_document(self, kind: str, doc_id: str) -> Version | None:
        return next((v for v in self.docs[kind] if v.doc_id == doc_id), None)


def _stale_filing() -> Version:
    body = copy.deepcopy(example_data())
    body["valid_until"] = "2099-12-31"
    body["scenarios"][0]["scale"]["persons_nonsensitive"] = 2**63
    return _stored("filing", "STALE", json.loads(json.dumps(body, default=str)))


def _good_filing() -> Version:
    body = copy.deepcopy(example_data())
    body.update(filing_id="GOOD", valid_until="2099-12-31")
    return _stored("filing", "GOOD", json.loads(json.dumps(body, default=str)))


def test_a_stored_filing_beyond_the_bounds_is_a_422_for_its_check_and_skipped_by_the_schedule(
        caplog: pytest.LogCaptureFixture) -> None:
    warehouse = _Stored([_stale_filing(), _good_filing()])
    with pytest.raises(CheckRequestError) as exc:
        run_spot_check(warehouse, "STALE")  # type: ignore[arg-type]
    assert (exc.value.status, exc.value.field) == (422, "filing_id")
    assert ("stored filing STALE v3 no longer validates (scenarios[0].scale.persons_nonsensitive"
            in str(exc.value))
    assert active_filings(warehouse, date(2026, 6, 1)) == ["GOOD"]  # type: ignore[arg-type]
    assert "not scheduled" in caplog.text and "STALE" in caplog.text
    assert documents.filing_of(_stale_filing()) is None
    assert documents.filing_of(_good_filing()).filing_id == "GOOD"  # type: ignore[union-attr]


def test_a_stored_negative_list_beyond_the_bounds_is_a_422_naming_it() -> None:
    data = yaml.safe_load(EXAMPLE_NEGATIVE_LIST.read_text(encoding="utf-8"))
    data["sectors"][0]["entries"][0]["threshold"] = {"gte": 2**63}
    warehouse = _Stored([_good_filing()], [_stored("negative_list", "zj", data)])
    with pytest.raises(CheckRequestError) as exc:
        run_spot_check(warehouse, "GOOD")  # type: ignore[arg-type]
    assert (exc.value.status, exc.value.field) == (422, "negative_lists")
    assert str(exc.value).startswith("negative_lists: stored negative list zj v3: sectors[0].entries[0]"
                                     ".threshold.gte: Input should be less than or equal to 10000000000")
