"""The collector service's request and response bodies (DESIGN §9) as pydantic models: what /openapi.json
documents for each route, and what FastAPI checks each JSON answer against before it leaves.

Field names are the contract the agents, the console and the tests read: never rename one here. Times are
served as Python's `isoformat()` writes them (`2026-01-01T08:00:00+08:00`, never pydantic's `Z`), as they
always were. Open-ended documents (a filing, a negative list) are kept as the mapping that was stored,
inside a modelled envelope; the §7 report is documented by its own model (collector/report_models.py).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer

from collector.errors import CODES
from collector.warehouse import Version

__all__ = ["ERROR_RESPONSES", "HTML_ERROR_RESPONSES", "AuditLog", "AuditRow", "BatchStored", "CheckRun",
           "CheckRunDone", "DocumentVersion", "EnterpriseList", "EnterpriseOut", "ErrorBody", "ErrorDetail",
           "FilingVersion", "Health", "NegativeListVersion", "RemovedBatch", "ReportList", "ReportRow",
           "Timestamp"]

# A time as `datetime.isoformat()` writes it (the format these answers had before they were modelled).
Timestamp = Annotated[datetime, PlainSerializer(lambda t: t.isoformat(), return_type=str, when_used="json")]


class ErrorDetail(BaseModel):
    status: int
    code: str = Field(description=f"by status: {', '.join(f'{s} {c}' for s, c in CODES.items())}")
    message: str
    field: str | None = Field(description="the header, column or field path at fault, or null")


class ErrorBody(BaseModel):
    """The one JSON error shape of every error the service answers (401, 403, 404, 413, 422, 500, …)."""
    error: ErrorDetail


# Every route may answer with the one error shape; "4XX" also replaces FastAPI's own 422 entry, whose
# schema (`{"detail": […]}`) this service never sends.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": ErrorBody, "description": "refused: the one JSON error shape"},
    "5XX": {"model": ErrorBody, "description": "failed: the one JSON error shape"},
}
# The same for a route whose answer is a page: FastAPI would file a `model` under text/html.
HTML_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"description": entry["description"],
             "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}
    for status, entry in ERROR_RESPONSES.items()}


class Health(BaseModel):
    status: Literal["ok"] = "ok"


# --- agents ------------------------------------------------------------------------------------------

class BatchStored(BaseModel):
    batch_id: str
    record_type: str
    rows: int
    stored_rows: int
    duplicate_rows: int
    status: Literal["stored", "already_stored"]


# --- filings and negative lists ----------------------------------------------------------------------

class DocumentVersion(BaseModel):
    """One stored version of a filing or a negative list."""
    kind: Literal["filing", "negative_list"]
    id: str
    version: int
    sha256: str
    stored_at: Timestamp
    created: bool = Field(description="whether this upload made the version (false: identical to the "
                                      "latest one)")

    @classmethod
    def of(cls, v: Version, **document: dict[str, Any]) -> Self:
        """The summary of a stored version (and, for a GET, the stored document under its kind)."""
        return cls(kind=v.kind, id=v.doc_id, version=v.version, sha256=v.sha256,
                   stored_at=v.stored_at, created=v.created, **document)


class FilingVersion(DocumentVersion):
    filing: dict[str, Any] = Field(description="the filing as stored (zjftz.filing/v1)")


class NegativeListVersion(DocumentVersion):
    negative_list: dict[str, Any] = Field(description="the negative list as uploaded")


# --- checks and reports ------------------------------------------------------------------------------

class CheckRun(BaseModel):
    """POST /v1/checks/run: the filing to check and the period (CST days; the filing's year by default)."""
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    filing_id: str = Field(min_length=1)
    from_: date | None = Field(default=None, alias="from")
    to: date | None = None


class CheckRunDone(BaseModel):
    report_id: str
    verdict: Literal["consistent", "inconsistent"]
    findings: int


class ReportRow(BaseModel):
    """A stored report in the list (its body is GET /v1/reports/{report_id})."""
    report_id: str
    filing_id: str
    filing_version: int | None
    enterprise_id: str
    ftz_area: str
    generated_at: Timestamp
    period_from: Timestamp
    period_to: Timestamp
    verdict: Literal["consistent", "inconsistent"]
    findings: int
    complete: bool
    trigger: str = Field(description="api | schedule | cli")


class ReportList(BaseModel):
    reports: list[ReportRow] = Field(description="newest first")


# --- tenancy -----------------------------------------------------------------------------------------

class EnterpriseOut(BaseModel):
    enterprise_id: str
    name: str | None
    ftz_area: str


class EnterpriseList(BaseModel):
    enterprises: list[EnterpriseOut]


class RemovedBatch(BaseModel):
    enterprise_id: str
    batch_id: str
    record_type: str
    agent_id: str
    rows: int
    stored_rows: int
    status: Literal["removed"] = "removed"


class AuditRow(BaseModel):
    """One audit row (DESIGN §9.1); `seq` orders them and pages with `before`."""
    model_config = ConfigDict(populate_by_name=True)
    seq: int
    at: Timestamp
    actor: str
    role: str
    ftz_area: str
    enterprise_id: str | None
    object: str
    object_id: str
    action: str
    from_: str | None = Field(alias="from")
    to: str | None
    note: str | None


class AuditLog(BaseModel):
    audit: list[AuditRow] = Field(description="newest first")
