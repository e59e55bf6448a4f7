"""PUT/GET /v1/negative-lists/{list_id} (DESIGN §6, §9): a regulator keeps its area's negative lists.

A list belongs to the area whose regulator first stored it: another area cannot rewrite what this area's
checks apply. A changed upload becomes a new version; an identical one is answered 200 with the stored
version. Bodies are parsed under the document caps, off the event loop (collector/bodies.py).
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from collector import documents
from collector.auth import Auth, AuthError
from collector.deps import Bodies, Store, audit_entry
from collector.errors import RequestProblem, shown
from collector.schemas import ERROR_RESPONSES, DocumentVersion, NegativeListVersion

__all__ = ["router"]

router = APIRouter(tags=["negative lists"], responses=ERROR_RESPONSES)


@router.put("/v1/negative-lists/{list_id}", response_model=DocumentVersion,
            responses={201: {"model": DocumentVersion, "description": "a new version stored"}})
async def put_negative_list(list_id: str, request: Request, response: Response, who: Auth,
                            warehouse: Store, bodies: Bodies) -> DocumentVersion:
    who.require_role("regulator")
    body = await bodies.document(who, request, documents.parse_negative_list_body, list_id)
    prior = warehouse.get_document("negative_list", list_id)
    if prior is not None and prior.ftz_area not in (None, who.ftz_area):
        raise AuthError(403, "forbidden", f"negative list {shown(list_id)}: kept by the regulators of "
                        f"area {prior.ftz_area}; token {who.name!r} is for area {who.ftz_area}")
    v = await run_in_threadpool(
        warehouse.put_document, "negative_list", list_id, body, None, who.ftz_area, who.name,
        audit_entry(who, "list", list_id, None, who.ftz_area))
    response.status_code = 201 if v.created else 200
    return DocumentVersion.of(v)


@router.get("/v1/negative-lists/{list_id}", response_model=NegativeListVersion)
def get_negative_list(list_id: str, who: Auth, warehouse: Store) -> NegativeListVersion:
    who.require_role("regulator")
    v = warehouse.get_document("negative_list", list_id)
    if v is None:
        raise RequestProblem(404, "list_id", f"list_id: no negative list {shown(list_id)}")
    return NegativeListVersion.of(v, negative_list=v.body)
