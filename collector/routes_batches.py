"""POST /v1/batches (DESIGN §9): an agent uploads one Parquet file of one record type, idempotent by
X-Batch-Id. (A regulator removes a stored batch in collector/routes_tenancy.py.)

The body is received in the agent's own slots under the upload cap and deadline (collector/bodies.py);
Parquet decoding and the DuckDB commit run off the event loop, at most max_concurrent_uploads at once, so
one agent's upload does not stall every other request. An enterprise over its quota is refused before
any decoding is spent on its upload.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request, Response
from starlette.concurrency import run_in_threadpool

from collector.auth import Auth
from collector.deps import Bodies, Store
from collector.ingest import parse_batch
from collector.schemas import ERROR_RESPONSES, BatchStored
from collector.warehouse import StorageError, StoredBatch

__all__ = ["router"]

router = APIRouter(tags=["agents"], responses=ERROR_RESPONSES)


@router.post("/v1/batches", status_code=201, response_model=BatchStored,
             responses={200: {"model": BatchStored, "description": "already stored (same batch id, same "
                                                                  "content): nothing new"}})
async def post_batch(request: Request, response: Response, who: Auth, warehouse: Store, bodies: Bodies,
                     x_batch_id: Annotated[str | None, Header()] = None,
                     x_record_type: Annotated[str | None, Header()] = None) -> BatchStored:
    """One Parquet file of one record type; idempotent by X-Batch-Id."""
    who.require_role("agent")
    limits = bodies.limits

    def store(body: bytes) -> StoredBatch:
        batch = parse_batch(body, x_batch_id, x_record_type, who.enterprise_id or "", who.agent_id or "",
                            limits=limits)
        # 409 same id other content, 507 disk full or the enterprise's quota reached
        return warehouse.store_batch(batch, who.name, quota=limits.max_enterprise_bytes)

    async with bodies.slot(who):
        body = await bodies.read(request, bodies.max_upload_bytes)
        used = await run_in_threadpool(warehouse.over_quota, who.enterprise_id or "",
                                       limits.max_enterprise_bytes)
        if used is not None:       # refused before any decoding is spent on it
            raise StorageError(f"enterprise {who.enterprise_id} has used {used} of its limits."
                               f"max_enterprise_bytes {limits.max_enterprise_bytes}; nothing stored (a "
                               "regulator can remove batches)")
        async with bodies.uploads:
            stored = await run_in_threadpool(store, body)
    response.status_code = 201 if stored.created else 200
    return BatchStored(batch_id=stored.batch_id, record_type=stored.record_type, rows=stored.rows,
                       stored_rows=stored.stored_rows, duplicate_rows=stored.rows - stored.stored_rows,
                       status="stored" if stored.created else "already_stored")
