"""Routes a regulator uses to see and correct its area's tenants (DESIGN §9): the registered enterprises,
the audit log, and the removal of a stored batch (poisoned or mistaken).

Every route here is regulator-only and reaches only enterprises registered in the token's own area; a
batch is addressed by (enterprise_id, batch_id) because batch ids are scoped per enterprise.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from collector.auth import Auth
from collector.deps import OwnBatch, Settings, Store, audit_entry
from collector.errors import RequestProblem
from collector.schemas import (
    ERROR_RESPONSES,
    AuditLog,
    AuditRow,
    EnterpriseList,
    EnterpriseOut,
    RemovedBatch,
)

__all__ = ["router"]

router = APIRouter(tags=["tenancy"], responses=ERROR_RESPONSES)


@router.get("/v1/enterprises", response_model=EnterpriseList)
def list_enterprises(who: Auth, config: Settings) -> EnterpriseList:
    """The enterprises registered in the regulator's FTZ area."""
    who.require_role("regulator")
    return EnterpriseList(enterprises=[
        EnterpriseOut(enterprise_id=e.enterprise_id, name=e.name, ftz_area=str(e.ftz_area))
        for e in config.enterprises if str(e.ftz_area) == who.ftz_area])


@router.delete("/v1/batches/{enterprise_id}/{batch_id}", response_model=RemovedBatch)
async def delete_batch(removal: OwnBatch, who: Auth, warehouse: Store) -> RemovedBatch:
    """Remove a stored batch of an enterprise of the regulator's area; recorded in the audit log. Its rows
    stop counting in the next check, and the agent may upload them again."""
    enterprise_id, batch_id = removal.enterprise_id, removal.batch_id
    entry = audit_entry(who, "batch", batch_id, enterprise_id, who.area_of(enterprise_id), action="delete",
                        from_="stored", to="removed", note=removal.note)
    removed = await run_in_threadpool(warehouse.delete_batch, enterprise_id, batch_id, entry)
    if removed is None:
        raise RequestProblem(404, "batch_id",
                             f"batch_id: enterprise {enterprise_id} has no batch {batch_id!r}")
    return RemovedBatch(**removed)


@router.get("/v1/audit", response_model=AuditLog)
def audit(who: Auth, warehouse: Store, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
          before: Annotated[int | None, Query(ge=1)] = None) -> AuditLog:
    """The audit log of the regulator's area, newest first (`before` = a `seq` to page back from)."""
    who.require_role("regulator")
    rows = warehouse.audit_rows(who.ftz_area or "", limit=limit, before=before)
    return AuditLog(audit=[AuditRow.model_validate(r) for r in rows])
