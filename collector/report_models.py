"""The mismatch report (DESIGN §7) and its findings; collector/models.py re-exports every name.

Beside the §7 core: which negative lists a report was checked against, the persons-over-time series the
report's chart is drawn from, and the estimates shown beside the exact counts when the agent sampled flows
(collector/estimates.py). Apart from the filing models so that each module stays one job; this module
imports only pydantic, so models.py can import it without a cycle.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

__all__ = [
    "CheckStatus",
    "Coverage",
    "Destination",
    "Estimate",
    "FieldTypeCount",
    "Finding",
    "JsonValue",
    "NegativeListRef",
    "Observed",
    "OmitsUnsampled",
    "Period",
    "PersonsPoint",
    "ReasonBytes",
    "Report",
    "Severity",
    "SharedPersonKey",
    "Uninspected",
    "UninspectedDestination",
]


class NegativeListRef(BaseModel):
    """One negative list the checks used: its id, its declared version, and the SHA-256 of the file as
    loaded, so a reader can tell two copies labelled the same version apart."""

    model_config = ConfigDict(frozen=True, from_attributes=True)

    list_id: str = Field(min_length=1)
    version: str | None = None
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")

    @field_validator("sha256", mode="before")
    @classmethod
    def _lower(cls, v: Any) -> Any:
        return v.lower() if isinstance(v, str) else v


class PersonsPoint(BaseModel):
    """Cumulative distinct persons of one scenario from the period start up to and including `date`
    (a China Standard Time calendar day on which the scenario had flows carrying persons)."""

    model_config = ConfigDict(frozen=True)

    scenario_id: str
    date: date
    persons_nonsensitive: int = Field(ge=0)
    persons_sensitive: int = Field(ge=0)


class Estimate(BaseModel):
    """An estimate of distinct units (persons, values) with sampled flows: `value` with a 95 % interval
    [`low`, `high`]; `low` is never below the exact count over inspected flows. `method` names the
    estimator (collector/estimates.py)."""

    model_config = ConfigDict(frozen=True)

    value: int = Field(ge=0)
    low: int = Field(ge=0)
    high: int = Field(ge=0)
    method: str = Field(min_length=1)

    @model_validator(mode="after")
    def _ordered(self) -> Estimate:
        if not self.low <= self.value <= self.high:
            raise ValueError(f"expected low <= value <= high, got {self.low}, {self.value}, {self.high}")
        return self


class OmitsUnsampled(BaseModel):
    """Base of report models with sampling-only fields (`*_estimate`, `sampling_rate_min`): they are left
    out of the output while None, so the JSON of an unsampled run keeps its shape."""

    @model_serializer(mode="wrap")
    def _omit_unsampled(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data = handler(self)
        for name in [k for k, v in data.items() if (v is None and _sampling_only(k))
                     or (not v and k in _OMITTED_WHEN_EMPTY)]:
            del data[name]
        return data


def _sampling_only(name: str) -> bool:
    return name.endswith("_estimate") or name == "sampling_rate_min"


# Anomalies of person linking (DESIGN §5): absent from the JSON of a run without any (goldens keep shape).
_OMITTED_WHEN_EMPTY = frozenset({"shared_person_keys", "key_ids"})


class SharedPersonKey(BaseModel):
    """A person key carried by more records than persons.max_records_per_key: not linked (no value shown)."""

    field_types: str        # "mobile_cn", or "person_name+date_of_birth" for a combination
    records: int


# --- findings and the report (§7) -------------------------------------------------------------------

Severity = Literal["low", "medium", "high", "critical"]
JsonValue = str | int | float | bool | list[Any] | dict[str, Any] | None


class Finding(BaseModel):
    """One mismatch between the filing and what left; identity is (check, scenario_id, subject)."""

    model_config = ConfigDict(frozen=True)

    check: str
    scenario_id: str | None
    subject: str
    severity: Severity
    expected: JsonValue = None
    observed: JsonValue = None
    basis: list[str] = Field(default_factory=list)
    action: str = ""
    evidence: dict[str, Any] = Field(default_factory=dict)

    @property
    def identity(self) -> tuple[str, str | None, str]:
        return (self.check, self.scenario_id, self.subject)


class CheckStatus(BaseModel):
    """How one check ran: `pass` (no rows), `fail` (findings) or `error` (the check itself broke)."""

    check: str
    status: Literal["pass", "fail", "error"]
    findings: int = 0
    error: str | None = None


class Period(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: datetime = Field(alias="from")
    to: datetime


class FieldTypeCount(OmitsUnsampled):
    distinct_values: int
    distinct_values_estimate: Estimate | None = None
    occurrences: int


class Destination(OmitsUnsampled):
    server_name: str | None
    ip: list[str]
    country: str | None
    scenario_id: str | None
    flows: int
    bytes_out: int
    encrypted_bytes_out: int
    persons_nonsensitive: int
    persons_sensitive: int
    persons_nonsensitive_estimate: Estimate | None = None
    persons_sensitive_estimate: Estimate | None = None
    field_types: dict[str, FieldTypeCount] = Field(default_factory=dict)


class Uninspected(BaseModel):
    server_name: str | None
    country: str | None
    flows: int
    bytes_out: int
    encrypted_bytes_out: int
    reason: str | None = None     # the flows' uninspected_reason (DESIGN §3); None in older reports too


class ReasonBytes(BaseModel):
    """Uninspected flows of one `uninspected_reason` (DESIGN §3); `reason` is None for rows of agents
    before records schema 3 whose old columns do not tell (a plaintext flow under sampling)."""

    reason: str | None
    flows: int = Field(ge=0)
    bytes_out: int = Field(ge=0)


class UninspectedDestination(BaseModel):
    """A destination (server name, else IP; a pull's peer IP) with bytes out the detectors did not see,
    by reason, largest first."""

    destination: str
    country: str | None
    flows: int = Field(ge=0)
    bytes_out: int = Field(ge=0)
    reasons: list[ReasonBytes] = Field(default_factory=list)


class Coverage(BaseModel):
    """How much of the period's cross-border bytes out the checks could look into (collector/coverage.py).
    `inspected_share` counts only flows actually inspected, so sampling, encryption and budgets lower it;
    `small_share` is true when it is below `small_share_threshold`: the verdict then rests on a small
    share of the traffic."""

    cross_border_bytes_out: int = Field(ge=0)     # DESIGN §7's name; `bytes_out` is the same number
    bytes_out: int = Field(ge=0)
    by_visibility: dict[str, int] = Field(default_factory=dict)   # every visibility, 0 when none
    inspected_bytes_out: int = Field(ge=0)
    inspected_share: float | None = None       # None: no cross-border bytes out in the period
    small_share_threshold: float
    small_share: bool
    uninspected_by_reason: list[ReasonBytes] = Field(default_factory=list)
    uninspected_destinations: list[UninspectedDestination] = Field(default_factory=list)   # top N by bytes
    uninspected_destinations_omitted: int = Field(default=0, ge=0)   # destinations past the top N


class Observed(OmitsUnsampled):
    flows: int = 0
    bytes_out: int = 0
    encrypted_bytes_out: int = 0
    persons_nonsensitive: int = 0
    persons_sensitive: int = 0
    # Counts come from inspected flows only: exact lower bounds, estimated beside, when sampled (DESIGN §5).
    persons_basis: Literal["exact", "exact_lower_bound"] = "exact_lower_bound"
    persons_nonsensitive_estimate: Estimate | None = None
    persons_sensitive_estimate: Estimate | None = None
    sampling_rate_min: float | None = None  # smallest 1 / sample_weight of the inspected flows
    destinations: list[Destination] = Field(default_factory=list)
    uninspected: list[Uninspected] = Field(default_factory=list)
    persons_over_time: list[PersonsPoint] = Field(default_factory=list)  # per scenario, cumulative, by day
    coverage: Coverage | None = None      # None only in reports stored before it existed
    shared_person_keys: list[SharedPersonKey] = Field(default_factory=list)   # keys that did not link
    # The enterprise's deployment key ids, listed only when there are several: its agents use different
    # keys and their persons cannot be joined.
    key_ids: list[str] = Field(default_factory=list)


class Report(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    report_version: Literal[1] = 1
    report_id: str | None = None
    filing_id: str
    filing_version: int | None = None
    negative_lists: list[NegativeListRef] = Field(default_factory=list)
    enterprise_id: str
    period: Period
    generated_at: datetime
    verdict: Literal["consistent", "inconsistent"]
    observed: Observed
    findings: list[Finding] = Field(default_factory=list)
    checks: list[CheckStatus] = Field(default_factory=list)

    @property
    def complete(self) -> bool:
        """False when a check errored: a consistent verdict then does not cover every check."""
        return all(c.status != "error" for c in self.checks)
