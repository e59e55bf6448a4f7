"""Pydantic models of the filing record (DESIGN §6); the findings and the mismatch report (§7) are in
collector/report_models.py and importable from here too.

A filing is validated once, when loaded; every error names the file and the field path
(`demo.yaml: scenarios[1].recipients[0]: 'R9' is not a declared recipient`), the way a user of a
config-driven tool expects. Cross-references (scenario -> recipient, catalog item -> field type) are
checked here too, so the checks can trust the filing tables.
"""

from __future__ import annotations

import ipaddress
import re
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BeforeValidator, Field, field_validator, model_validator
from stdnum.cn import uscc as _uscc

from collector.bounds import DocDate, Percent, Persons
from collector.errors import shown

# The report models live in report_models.py; these names stay importable from here.
from collector.report_models import (  # noqa: F401
    CheckStatus,
    Coverage,
    Destination,
    Estimate,
    FieldTypeCount,
    Finding,
    JsonValue,
    NegativeListRef,
    Observed,
    Period,
    PersonsPoint,
    ReasonBytes,
    Report,
    Severity,
    Uninspected,
    UninspectedDestination,
)
from detectors.configs import configs_dir
from detectors.inputs import InputError, PathIssue, Strict, describe, read_yaml, validate

__all__ = [
    "CheckStatus", "Coverage", "Destination", "Estimate", "Filing", "FilingError", "Finding", "FtzArea",
    "NegativeListRef", "Observed", "Period", "PersonsPoint", "ReasonBytes", "Report", "Route", "Status",
    "Uninspected", "UninspectedDestination", "known_field_types", "load_filing",
]

FILING_SCHEMA = "zjftz.filing/v1"

_DOMAIN_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_DOMAIN_RE = re.compile(rf"^(\*\.)?(?:{_DOMAIN_LABEL}\.)+{_DOMAIN_LABEL}$")
_USCC_RE = re.compile(r"^[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}$")


# The catalog: configs/field_types.yaml of this checkout (validated by detectors.catalog); the shared
# reference table beside DESIGN.md when the project's copy is absent (e.g. a bare source tree).
_ROOT = Path(__file__).resolve().parents[1]
CATALOG_PATH = configs_dir() / "field_types.yaml"
REFERENCE_CATALOG_PATH = _ROOT.parent / "shared" / "reference" / "field_types.yaml"


@cache
def field_type_catalog() -> dict[str, dict[str, Any]]:
    """Field type id -> {pi, sensitive, identifier, name_zh, name_en}; the one place reading the catalog."""
    if CATALOG_PATH.is_file():
        from detectors.catalog import load_catalog  # lazy: its regex/pydantic setup is not free

        return {
            ft.id: {"pi": ft.pi, "sensitive": ft.sensitive, "identifier": ft.identifier,
                    "name_zh": ft.name_zh, "name_en": ft.name_en}
            for ft in load_catalog(CATALOG_PATH).field_types
        }
    if REFERENCE_CATALOG_PATH.is_file():
        data = yaml.safe_load(REFERENCE_CATALOG_PATH.read_text(encoding="utf-8")) or {}
        return {
            str(e["id"]): {"pi": bool(e.get("pi", True)), "sensitive": bool(e.get("sensitive", False)),
                           "identifier": bool(e.get("identifier", False)), "name_zh": e.get("name_zh"),
                           "name_en": e.get("name_en")}
            for e in data.get("field_types", [])
        }
    raise FileNotFoundError(f"{CATALOG_PATH}: field type catalog not found")


def known_field_types() -> frozenset[str]:
    """Every field type id of the catalog (filings may only declare these)."""
    return frozenset(field_type_catalog())


class FilingError(InputError):
    """A filing that cannot be used; `str()` is one line: `FILE: field.path: what is wrong`."""


# The service's validation errors are worded as the files' (detectors/inputs.py): one formatter.
describe_validation_error = describe


class FtzArea(StrEnum):
    zhoushan = "zhoushan"
    ningbo = "ningbo"
    hangzhou = "hangzhou"
    jinyi = "jinyi"


class Route(StrEnum):
    exempt_outside_list = "exempt_outside_list"
    standard_contract = "standard_contract"
    certification = "certification"
    security_assessment = "security_assessment"


class Status(StrEnum):
    draft = "draft"
    submitted = "submitted"
    active = "active"
    suspended = "suspended"
    revoked = "revoked"
    expired = "expired"


class AreaOpinion(Strict):
    issued_at: DocDate
    outcome: str = Field(min_length=1)
    reference_no: str | None = None


class Industry(Strict):
    gbt4754: str = Field(pattern=r"^[A-T](\d{2,4})?$")
    label: str | None = None


class Processor(Strict):
    id: str = Field(min_length=1, max_length=128)
    name: str = Field(min_length=1)
    uscc: str
    industry: Industry | None = None
    is_ciio: bool = False

    @field_validator("uscc")
    @classmethod
    def _uscc_valid(cls, v: str) -> str:
        # GB 32100-2015; calc_check_digit rather than is_valid (see engineering notes).
        if not _USCC_RE.match(v) or _uscc.calc_check_digit(v[:17]) != v[17]:
            raise ValueError("not a valid unified social credit code (GB 32100-2015)")
        return v


class Endpoints(Strict):
    domains: list[str] = Field(default_factory=list)
    ip_cidrs: list[str] = Field(default_factory=list)

    @field_validator("domains")
    @classmethod
    def _domains(cls, values: list[str]) -> list[str]:
        out = []
        for i, v in enumerate(values):
            d = v.strip().rstrip(".").lower()
            if not _DOMAIN_RE.match(d):
                raise PathIssue((i,), f"{v!r} is not a domain name or a '*.' wildcard")
            out.append(d)
        return out

    @field_validator("ip_cidrs")
    @classmethod
    def _cidrs(cls, values: list[str]) -> list[str]:
        out = []
        for i, v in enumerate(values):
            try:
                out.append(str(ipaddress.ip_network(str(v))))
            except ValueError as e:
                raise PathIssue((i,), f"{v!r} is not a CIDR block ({e})") from None
        return out


class Recipient(Strict):
    recipient_id: str = Field(min_length=1, max_length=128)
    name: str = Field(min_length=1)
    country_region: str = Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2; HK, MO, TW own codes")
    declared_endpoints: Endpoints = Field(default_factory=Endpoints)


def _subcategory_id(v: Any) -> str | None:
    """An important-data sub-category of the Measures' appendix, "1".."40" (YAML may give a number)."""
    if v is None:
        return None
    s = str(v)
    if not s.isdigit() or not 1 <= int(s) <= 40:
        raise ValueError(f"{v!r} is not an appendix sub-category id ('1'..'40')")
    return s


SubcategoryId = Annotated[str | None, BeforeValidator(_subcategory_id)]


class NegativeListMatch(Strict):
    entry_ids: list[str] = Field(default_factory=list)
    subcategory: SubcategoryId = None
    reason: str | None = None


class CatalogItem(Strict):
    item_id: str = Field(min_length=1, max_length=128)
    name_cn: str = Field(min_length=1)
    field_type: str

    @field_validator("field_type")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in known_field_types():
            raise ValueError(f"{v!r} is not a field type id of configs/field_types.yaml")
        return v


class Scale(Strict):
    window: Literal["calendar_year"] = "calendar_year"
    # Bounded (collector/bounds.py): 2**63 validated, then overflowed every check of its filing.
    persons_nonsensitive: Persons
    persons_sensitive: Persons


class Transfer(Strict):
    method: str = Field(min_length=1)
    direction: Literal["push", "pull", "both"]
    frequency: str | None = None


class Scenario(Strict):
    scenario_id: str = Field(min_length=1, max_length=128)
    name: str = Field(min_length=1)
    description: str | None = None
    route: Route
    exemption_claimed: str | None = None
    negative_list_match: NegativeListMatch = Field(default_factory=NegativeListMatch)
    recipients: list[str] = Field(min_length=1)
    data_catalog: list[CatalogItem] = Field(min_length=1)
    scale: Scale
    transfer: Transfer | None = None


class Tolerances(Strict):
    volume_increase_major_pct: Percent = 30


class Filing(Strict):
    schema_: Literal["zjftz.filing/v1"] = Field(alias="schema")
    filing_id: str = Field(min_length=1, max_length=128)
    ftz_area: FtzArea
    status: Status = Status.active
    valid_from: DocDate
    valid_until: DocDate
    area_opinion: AreaOpinion | None = None
    processor: Processor
    recipients: list[Recipient] = Field(min_length=1)
    scenarios: list[Scenario] = Field(min_length=1)
    tolerances: Tolerances = Field(default_factory=Tolerances)

    @model_validator(mode="after")
    def _cross_references(self) -> Filing:
        if self.valid_until < self.valid_from:
            raise PathIssue(("valid_until",), f"{self.valid_until} is before valid_from {self.valid_from}")
        declared: set[str] = set()
        for i, r in enumerate(self.recipients):
            if r.recipient_id in declared:
                raise PathIssue(("recipients", i, "recipient_id"), f"duplicate recipient {r.recipient_id!r}")
            declared.add(r.recipient_id)
        scenario_ids: set[str] = set()
        for i, s in enumerate(self.scenarios):
            if s.scenario_id in scenario_ids:
                raise PathIssue(("scenarios", i, "scenario_id"), f"duplicate scenario {s.scenario_id!r}")
            scenario_ids.add(s.scenario_id)
            for j, rid in enumerate(s.recipients):
                if rid not in declared:
                    raise PathIssue(("scenarios", i, "recipients", j),
                                     f"{rid!r} is not a declared recipient")
            items: set[str] = set()
            for j, item in enumerate(s.data_catalog):
                if item.item_id in items:
                    raise PathIssue(("scenarios", i, "data_catalog", j, "item_id"),
                                     f"duplicate item {item.item_id!r}")
                items.add(item.item_id)
        return self

    def scenario(self, scenario_id: str) -> Scenario | None:
        return next((s for s in self.scenarios if s.scenario_id == scenario_id), None)


def load_filing(path: Path | str) -> Filing:
    """Read and validate a filing record; raises FilingError with `FILE: field.path: what is wrong`."""
    data = read_yaml(path, FilingError)
    if (got := data.get("schema")) != FILING_SCHEMA:
        raise FilingError.at(path, "schema", f"expected {FILING_SCHEMA!r}, got {shown(got)}")
    return validate(Filing, data, path, FilingError)
