"""PUT/GET /v1/filings/{filing_id} (DESIGN §6, §9): filings as YAML or JSON, versioned, by tenant.

The filing number (备案编号) is registered by the area's regulator; an enterprise adds versions to its own
filings. Which enterprise and area a filing is for comes from the registry (collector.yaml
`enterprises:`), never from the uploaded body: a filing names them, the registry decides.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from collector import documents
from collector.auth import Auth, AuthError, Principal
from collector.deps import READERS, Bodies, OwnFiling, Store, audit_entry
from collector.errors import RequestProblem, shown
from collector.models import Filing
from collector.schemas import ERROR_RESPONSES, DocumentVersion, FilingVersion

__all__ = ["router"]

router = APIRouter(tags=["filings"], responses=ERROR_RESPONSES)


@router.put("/v1/filings/{filing_id}", response_model=DocumentVersion,
            responses={201: {"model": DocumentVersion, "description": "a new version stored"}})
async def put_filing(filing_id: str, request: Request, response: Response, who: Auth, warehouse: Store,
                     bodies: Bodies) -> DocumentVersion:
    """A filing record (zjftz.filing/v1) as YAML or JSON; a changed one becomes a new version."""
    who.require_role(*READERS)
    filing = await bodies.document(who, request, documents.parse_filing, filing_id)
    prior = warehouse.get_document("filing", filing_id)
    if prior is not None:
        who.require_access(prior.enterprise_id, f"filing {shown(filing_id)}")
    elif who.role != "regulator":
        # Otherwise any tenant could take another area's number first.
        raise AuthError(403, "forbidden", f"filing {shown(filing_id)}: a new filing number is registered "
                        "by the area's regulator; an enterprise uploads new versions of its own filings")
    enterprise, area = _tenant_of(who, filing)
    if prior is not None and prior.enterprise_id != enterprise:
        raise RequestProblem(409, "processor.id", f"processor.id: filing {filing_id} belongs to "
                             f"enterprise {prior.enterprise_id}; a filing cannot move to another one")
    v = await run_in_threadpool(
        warehouse.put_document, "filing", filing_id, filing.model_dump(mode="json", by_alias=True),
        enterprise, area, who.name, audit_entry(who, "filing", filing_id, enterprise, area))
    response.status_code = 201 if v.created else 200
    return DocumentVersion.of(v)


@router.get("/v1/filings/{filing_id}", response_model=FilingVersion)
def get_filing(v: OwnFiling) -> FilingVersion:
    """The latest version of a filing, or `?version=N`; another tenant's filing is a 404."""
    return FilingVersion.of(v, filing=v.body)


def _tenant_of(who: Principal, filing: Filing) -> tuple[str, str]:
    """The registered enterprise a filing is for and its area. A regulator names only enterprises
    registered in its area (422 otherwise, the same whether the id is unregistered or another area's), an
    enterprise only itself (403); an ftz_area other than the registered one is a 422 naming the field."""
    enterprise = filing.processor.id
    area = who.area_of(enterprise)
    if who.role == "regulator" and area != who.ftz_area:
        # One answer whether the enterprise is unregistered or registered elsewhere: a regulator cannot
        # map another area's registry by trying ids.
        raise RequestProblem(422, "processor.id", f"processor.id: {shown(enterprise)} is not an enterprise "
                             f"registered in area {who.ftz_area} (collector.yaml enterprises:)")
    who.require_access(enterprise, f"a filing for enterprise {shown(enterprise)}")
    if area is None:
        raise RequestProblem(422, "processor.id", f"processor.id: {shown(enterprise)} is not a registered "
                             "enterprise (collector.yaml enterprises:)")
    if str(filing.ftz_area) != area:
        raise RequestProblem(422, "ftz_area", f"ftz_area: enterprise {enterprise} is registered in area "
                             f"{area}, not {filing.ftz_area}; an enterprise cannot change its area")
    return enterprise, area
