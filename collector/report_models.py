"""Report sub-models added beside the §7 core (collector/models.py re-exports them): which negative lists
a report was checked against, the persons-over-time series the report's chart is drawn from, and the
estimates shown beside the exact counts when the agent sampled flows (collector/estimates.py).

Kept apart from models.py so the filing and report core stays small; this module imports only pydantic,
so models.py can import it without a cycle.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

__all__ = ["Estimate", "NegativeListRef", "OmitsUnsampled", "PersonsPoint"]


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
        for name in [k for k, v in data.items() if v is None and _sampling_only(k)]:
            del data[name]
        return data


def _sampling_only(name: str) -> bool:
    return name.endswith("_estimate") or name == "sampling_rate_min"
