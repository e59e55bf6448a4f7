"""FTZ data-export negative lists (DESIGN §6, `schema: ftz.negative_list/v1`).

A list names, per sector, the data that needs a mechanism despite the FTZ exemption (Measures Art. 8):
each entry has a kind, the route it requires, the field types of the catalog it covers (and/or an
important-data sub-category of the Measures' appendix) and a threshold in distinct persons per calendar
year. A sector may carry a GB/T 4754 industry code prefix ("F", "F52"): its entries then apply only to a
processor whose `processor.industry.gbt4754` starts with it; a sector without a code applies to all.
Other zones' lists load the same way (Measures Art. 19).

Validation follows the filing's: strict models, one line per error naming the file and the field path
(`zj.yaml: sectors[0].entries[1].field_types[0]: 'x' is not a field type id …`). `entries_table` flattens
the lists that apply to a processor into the rows of the store's `negative_list_entries` table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import pyarrow as pa
from pydantic import AfterValidator, Field, field_validator, model_validator

from collector.bounds import Persons
from collector.errors import shown
from collector.models import SubcategoryId, known_field_types
from detectors.inputs import InputError, PathIssue, Strict, read_yaml, validate

__all__ = [
    "ENTRY_COLUMNS", "NEGATIVE_LIST_SCHEMA", "Entry", "NegativeList", "NegativeListError", "Sector",
    "Threshold", "entries_table", "load_negative_list", "parse_negative_list", "sector_applies",
]

NEGATIVE_LIST_SCHEMA = "ftz.negative_list/v1"

# Columns of the store's `negative_list_entries` table, one row per (entry, field type).
ENTRY_COLUMNS: dict[str, pa.DataType] = {
    "list_id": pa.string(), "list_version": pa.string(), "sector_code": pa.string(),
    "entry_id": pa.string(), "name": pa.string(), "kind": pa.string(), "route": pa.string(),
    "field_type": pa.string(), "important_subcategory": pa.string(),
    "threshold_gte": pa.int64(), "threshold_lt": pa.int64(),
}


class NegativeListError(InputError):
    """A negative list that cannot be used; `str()` is one line: `FILE: field.path: what is wrong`."""


def _known_field_type(v: str) -> str:
    if v not in known_field_types():
        raise ValueError(f"{v!r} is not a field type id of configs/field_types.yaml")
    return v


FieldTypeId = Annotated[str, AfterValidator(_known_field_type)]


class Threshold(Strict):
    """Distinct persons per calendar year (CST): gte is the floor (None = none), lt the ceiling."""

    metric: Literal["distinct_persons"] = "distinct_persons"
    window: Literal["calendar_year"] = "calendar_year"
    # Bounded like a filing's scale: the checks compare them with BIGINT counts (collector/bounds.py).
    gte: Persons | None = None
    lt: Annotated[Persons, Field(ge=1)] | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Threshold:
        if self.gte is not None and self.lt is not None and self.lt <= self.gte:
            raise PathIssue(("lt",), f"{self.lt} is not above gte {self.gte}")
        return self

    def holds(self, persons: int) -> bool:
        return (self.gte is None or persons >= self.gte) and (self.lt is None or persons < self.lt)


class Entry(Strict):
    entry_id: str = Field(min_length=1, max_length=128)
    name: str = Field(min_length=1)
    kind: Literal["important_data", "personal_information", "sensitive_personal_information"]
    route: Literal["standard_contract", "certification", "security_assessment"]
    scenario: str | None = None
    field_types: list[FieldTypeId] = Field(default_factory=list)
    important_subcategory: SubcategoryId = None
    threshold: Threshold = Field(default_factory=Threshold)

    @model_validator(mode="after")
    def _consistent(self) -> Entry:
        if not self.field_types and self.important_subcategory is None:
            raise PathIssue(("field_types",), "an entry needs field types or an important_subcategory")
        # Important data needs the security assessment whatever the volume (Measures Art. 8(一), P16 Art. 7).
        if self.kind == "important_data" and self.route != "security_assessment":
            raise PathIssue(("route",), f"kind important_data needs route security_assessment, "
                                         f"not {self.route!r}")
        return self


class Sector(Strict):
    name: str = Field(min_length=1)
    gbt4754: str | None = Field(default=None, pattern=r"^[A-T](\d{2,4})?$",
                                description="GB/T 4754 code prefix; None = every sector")
    entries: list[Entry] = Field(min_length=1)


class NegativeList(Strict):
    schema_: Literal["ftz.negative_list/v1"] = Field(alias="schema")
    list_id: str = Field(min_length=1, max_length=128)
    version: str | None = None
    jurisdiction: str = Field(min_length=1)
    title: str = Field(min_length=1)
    illustrative: bool = False
    sectors: list[Sector] = Field(min_length=1)

    @field_validator("version", mode="before")
    @classmethod
    def _version(cls, v: Any) -> str | None:
        # `version: 1` in YAML is a number; anything but a scalar would be str()-expanded (an alias bomb).
        if v is not None and not isinstance(v, str | int | float):
            raise ValueError("a version is a string or a number")
        return None if v is None else str(v)

    @model_validator(mode="after")
    def _unique_entries(self) -> NegativeList:
        seen: set[str] = set()
        for i, sector in enumerate(self.sectors):
            for j, entry in enumerate(sector.entries):
                if entry.entry_id in seen:
                    raise PathIssue(("sectors", i, "entries", j, "entry_id"),
                                     f"duplicate entry {entry.entry_id!r}")
                seen.add(entry.entry_id)
        return self


def parse_negative_list(data: Mapping[str, Any], source_name: str) -> NegativeList:
    """Validate a parsed mapping; raises NegativeListError `SOURCE: field.path: what is wrong`."""
    if (got := data.get("schema")) != NEGATIVE_LIST_SCHEMA:
        raise NegativeListError.at(source_name, "schema",
                                   f"expected {NEGATIVE_LIST_SCHEMA!r}, got {shown(got)}")
    return validate(NegativeList, dict(data), source_name, NegativeListError)


def load_negative_list(path: Path | str) -> NegativeList:
    """Read and validate a negative list YAML file."""
    return parse_negative_list(read_yaml(path, NegativeListError), str(path))


def sector_applies(sector_code: str | None, industry_code: str | None) -> bool:
    """A sector without a code applies to everyone; with one, to processors whose code starts with it
    (a processor that declares no industry gets only the sectors without a code)."""
    if sector_code is None:
        return True
    return industry_code is not None and industry_code.startswith(sector_code)


def entries_table(lists: Sequence[NegativeList], industry_code: str | None) -> pa.Table:
    """Rows of `negative_list_entries` for a processor of `industry_code`: one per (entry, field type);
    an entry with only an important_subcategory gets one row with field_type NULL."""
    rows: list[tuple] = []
    for nl in lists:
        for sector in nl.sectors:
            if not sector_applies(sector.gbt4754, industry_code):
                continue
            for e in sector.entries:
                for ft in e.field_types or [None]:
                    rows.append((nl.list_id, nl.version, sector.gbt4754, e.entry_id, e.name, e.kind, e.route,
                                 ft, e.important_subcategory, e.threshold.gte, e.threshold.lt))
    cols = list(zip(*rows, strict=False)) or [() for _ in ENTRY_COLUMNS]
    return pa.table({name: pa.array(list(c), t) for (name, t), c in zip(ENTRY_COLUMNS.items(), cols,
                                                                       strict=True)})
