"""The route dependencies of the collector service (DESIGN §9): the settings, the warehouse, the body gate,
and the tenancy lookups that fetch what a route is about, answer 404 and check access in one place.

The caller is `Auth` (collector/auth.py). A tenancy dependency takes it together with the route's own
path and query parameters, so that every route answers in one order: 401 (no or unknown token), 422 (a
malformed path or query parameter), 403 (a role that may not do this), then 404 — where another tenant's
filing or report answers exactly as one that does not exist, so that no one can probe another tenant's
numbers. Routes without a tenancy dependency check their role first thing, which keeps the same order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Query, Request

from collector.audit import AuditEntry
from collector.auth import Auth, Principal
from collector.bodies import BodyGate
from collector.config import CollectorConfig
from collector.errors import RequestProblem, shown
from collector.ingest import BATCH_ID_RE
from collector.warehouse import Version, Warehouse

__all__ = ["READERS", "BatchRemoval", "Bodies", "OwnBatch", "OwnFiling", "OwnReport", "ReadableFilings",
           "Settings", "Store", "StoredReport", "audit_entry", "own_filing"]

READERS = ("regulator", "enterprise")     # who reads filings and reports


def _settings(request: Request) -> CollectorConfig:
    return request.app.state.config


def _warehouse(request: Request) -> Warehouse:
    return request.app.state.warehouse


def _bodies(request: Request) -> BodyGate:
    return request.app.state.bodies


Settings = Annotated[CollectorConfig, Depends(_settings)]
Store = Annotated[Warehouse, Depends(_warehouse)]
Bodies = Annotated[BodyGate, Depends(_bodies)]


def own_filing(warehouse: Warehouse, who: Principal, filing_id: str, version: int | None = None) -> Version:
    """The filing if this token may read it; otherwise the same 404 as for a filing that does not exist."""
    v = warehouse.get_document("filing", filing_id, version)
    if v is None or not who.may_access(v.enterprise_id):
        raise RequestProblem(404, "filing_id", f"filing_id: no filing {shown(filing_id)}"
                             f"{f' version {version}' if version else ''}")
    return v


def _own_filing(filing_id: str, who: Auth, warehouse: Store,
                version: Annotated[int | None, Query(ge=1)] = None) -> Version:
    who.require_role(*READERS)
    return own_filing(warehouse, who, filing_id, version)


def _readable_filings(who: Auth, warehouse: Store, filing_id: str | None = None) -> list[str]:
    who.require_role(*READERS)
    if filing_id is not None:
        return [own_filing(warehouse, who, filing_id).doc_id]
    return [doc for doc, owner in warehouse.document_owners("filing") if who.may_access(owner)]


@dataclass(frozen=True, slots=True)
class StoredReport:
    meta: dict[str, Any]       # filing_id, filing_version, enterprise_id, ftz_area
    body: str                  # the §7 report as stored (JSON)


def _own_report(report_id: str, who: Auth, warehouse: Store) -> StoredReport:
    who.require_role(*READERS)
    found = warehouse.get_report(report_id)
    if found is None or not who.may_access(found[0]["enterprise_id"]):
        raise RequestProblem(404, "report_id", f"report_id: no report {shown(report_id)}")
    return StoredReport(*found)


@dataclass(frozen=True, slots=True)
class BatchRemoval:
    enterprise_id: str
    batch_id: str
    note: str | None


def _own_batch(enterprise_id: str, batch_id: str, who: Auth,
               note: Annotated[str | None, Query(max_length=500)] = None) -> BatchRemoval:
    # The note is this dependency's parameter so that a malformed one is a 422 before any 403, as on
    # every other route. Whether the batch exists is the removal's own answer (404 in the same step).
    who.require_role("regulator")
    who.require_access(enterprise_id, f"batch {batch_id} of enterprise {enterprise_id}")
    if not BATCH_ID_RE.match(batch_id):
        raise RequestProblem(422, "batch_id", "batch_id: not 1-128 of [A-Za-z0-9_.-]")
    return BatchRemoval(enterprise_id, batch_id, note)


# What a route declares to get the thing it is about, already fetched and access-checked.
OwnFiling = Annotated[Version, Depends(_own_filing)]              # path filing_id, query version
ReadableFilings = Annotated[list[str], Depends(_readable_filings)]  # query filing_id, or all readable
OwnReport = Annotated[StoredReport, Depends(_own_report)]          # path report_id
OwnBatch = Annotated[BatchRemoval, Depends(_own_batch)]            # path enterprise_id, batch_id


def audit_entry(who: Principal, obj: str, object_id: str, enterprise_id: str | None, ftz_area: str | None,
                *, action: str = "create", from_: str | None = None, to: str | None = None,
                note: str | None = None) -> AuditEntry:
    """The audit row of a change `who` makes (the warehouse writes it in the change's transaction)."""
    return AuditEntry(actor=who.name, role=who.role, ftz_area=ftz_area, enterprise_id=enterprise_id,
                      object=obj, object_id=object_id, action=action, from_=from_, to=to, note=note)
