"""Report sub-models added beside the §7 core (collector/models.py re-exports them): which negative lists
a report was checked against, and the persons-over-time series the report's chart is drawn from.

Kept apart from models.py so the filing and report core stays small; this module imports only pydantic,
so models.py can import it without a cycle.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["NegativeListRef", "PersonsPoint"]


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
