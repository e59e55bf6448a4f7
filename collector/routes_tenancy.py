"""Routes a regulator uses to see and correct its area's tenants (DESIGN §9): the registered enterprises,
the audit log, and the removal of a stored batch (poisoned or mistaken).

Every route here is regulator-only and reaches only enterprises registered in the token's own area; a
batch is addressed by (enterprise_id, batch_id) because batch ids are scoped per enterprise.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from collector.audit import AuditEntry
from collector.auth import Auth
from collector.errors import RequestProblem
from collector.ingest import BATCH_ID_RE
from collector.warehouse import Warehouse

__all__ = ["router"]

router = APIRouter()


def _warehouse(request: Request) -> Warehouse:
    return request.app.state.warehouse


Store = Annotated[Warehouse, Depends(_warehouse)]


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
    status: str = "removed"


@router.get("/v1/enterprises", tags=["tenancy"], response_model=EnterpriseList)
def list_enterprises(request: Request, who: Auth) -> EnterpriseList:
    """The enterprises registered in the regulator's FTZ area."""
    who.require_role("regulator")
    return EnterpriseList(enterprises=[
        EnterpriseOut(enterprise_id=e.enterprise_id, name=e.name, ftz_area=str(e.ftz_area))
        for e in request.app.state.config.enterprises if str(e.ftz_area) == who.ftz_area])


@router.delete("/v1/batches/{enterprise_id}/{batch_id}", tags=["tenancy"], response_model=RemovedBatch)
async def delete_batch(enterprise_id: str, batch_id: str, who: Auth, warehouse: Store,
                       note: Annotated[str | None, Query(max_length=500)] = None) -> RemovedBatch:
    """Remove a stored batch of an enterprise of the regulator's area; recorded in the audit log. Its rows
    stop counting in the next check, and the agent may upload them again."""
    who.require_role("regulator")
    who.require_access(enterprise_id, f"batch {batch_id} of enterprise {enterprise_id}")
    if not BATCH_ID_RE.match(batch_id):
        raise RequestProblem(422, "batch_id", "batch_id: not 1-128 of [A-Za-z0-9_.-]")
    entry = AuditEntry(actor=who.name, role=who.role, ftz_area=who.area_of(enterprise_id),
                       enterprise_id=enterprise_id, object="batch", object_id=batch_id, action="delete",
                       from_="stored", to="removed", note=note)
    removed = await run_in_threadpool(warehouse.delete_batch, enterprise_id, batch_id, entry)
    if removed is None:
        raise RequestProblem(404, "batch_id",
                             f"batch_id: enterprise {enterprise_id} has no batch {batch_id!r}")
    return RemovedBatch(**removed)


@router.get("/v1/audit", tags=["tenancy"])
def audit(who: Auth, warehouse: Store, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
          before: Annotated[int | None, Query(ge=1)] = None) -> dict[str, Any]:
    """The audit log of the regulator's area, newest first (`before` = a `seq` to page back from)."""
    who.require_role("regulator")
    rows = warehouse.audit_rows(who.ftz_area or "", limit=limit, before=before)
    return {"audit": [{**r, "at": r["at"].isoformat()} for r in rows]}
