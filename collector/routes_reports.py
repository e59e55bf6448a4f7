"""Spot checks and their reports (DESIGN §7, §9): POST /v1/checks/run, GET /v1/reports[?filing_id=…],
GET /v1/reports/{report_id} (JSON, or the page with `Accept: text/html`) and /v1/reports/{report_id}.html.

A report is served as it was stored, byte for byte; its page is self-contained (the service's
Content-Security-Policy forbids anything else). Another tenant's report answers as one that does not exist.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from collector import documents
from collector.auth import Auth
from collector.bodies import SMALL_BODY
from collector.deps import Bodies, OwnReport, ReadableFilings, Store, StoredReport, own_filing
from collector.models import Report
from collector.reports import render_html
from collector.schemas import (
    ERROR_RESPONSES,
    HTML_ERROR_RESPONSES,
    CheckRun,
    CheckRunDone,
    ReportList,
    ReportRow,
)
from collector.spotcheck import run_spot_check
from collector.warehouse import Warehouse

__all__ = ["router"]

router = APIRouter(responses=ERROR_RESPONSES)


@router.post("/v1/checks/run", status_code=201, tags=["checks"],
             response_model=CheckRunDone,
             openapi_extra={"requestBody": {"content": {"application/json": {
                 "schema": CheckRun.model_json_schema(by_alias=True)}}, "required": True}})
async def run_check(request: Request, who: Auth, warehouse: Store, bodies: Bodies) -> CheckRunDone:
    """Run every check for a filing now (`{"filing_id": …, "from": …, "to": …}`); returns the stored
    report's id."""
    who.require_role("regulator")
    # Read and parsed here (not by FastAPI) under the small-body cap and the document depth cap.
    raw = await bodies.read(request, SMALL_BODY, "the size of a check request")
    req = await run_in_threadpool(documents.parse_request, raw, CheckRun, bodies.limits)
    own_filing(warehouse, who, req.filing_id)
    # The spot check's one entry point for the service (the CLI and the schedule call it too).
    done = await run_in_threadpool(run_spot_check, warehouse, req.filing_id, start=req.from_, end=req.to,
                                   trigger="api")
    return CheckRunDone(report_id=done.report_id, verdict=done.report.verdict,
                        findings=len(done.report.findings))


@router.get("/v1/reports", tags=["reports"], response_model=ReportList)
def list_reports(filing_ids: ReadableFilings, warehouse: Store) -> ReportList:
    """Reports the token may read (of one filing with `?filing_id=`), newest first."""
    return ReportList(reports=[ReportRow.model_validate(r) for r in warehouse.list_reports(filing_ids)])


def _page(warehouse: Warehouse, report: StoredReport) -> HTMLResponse:
    meta = report.meta
    v = warehouse.get_document("filing", meta["filing_id"], meta["filing_version"])
    return HTMLResponse(render_html(Report.model_validate_json(report.body),
                                    documents.filing_of(v) if v else None))


@router.get("/v1/reports/{report_id}.html", tags=["reports"], response_class=HTMLResponse,
            responses=HTML_ERROR_RESPONSES)
def get_report_html(report: OwnReport, warehouse: Store) -> HTMLResponse:
    return _page(warehouse, report)


# The body is the stored JSON as it is (not re-serialised): `Report` documents it in /openapi.json.
@router.get("/v1/reports/{report_id}", tags=["reports"], response_model=Report,
            responses={200: {"description": "the §7 report; the page with `Accept: text/html`",
                             "content": {"text/html": {"schema": {"type": "string"}}}}})
def get_report(report: OwnReport, warehouse: Store,
               accept: Annotated[str | None, Header()] = None) -> Response:
    """The §7 report as JSON, or the HTML page with `Accept: text/html`."""
    if accept and "text/html" in accept and "application/json" not in accept:
        return _page(warehouse, report)
    return Response(report.body, media_type="application/json")
