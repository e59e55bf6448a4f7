"""The collector service (DESIGN §9): FastAPI routes over the warehouse, bearer tokens, the schedule.

Every error, whatever raised it (a refused batch, a bad filing, a wrong token, an unknown route), leaves as
one JSON shape: `{"error": {"status": 422, "code": "invalid_batch", "message": "…", "field": "…"}}` —
`field` names the header, column or filing path at fault, or is null. The interactive API page is served
from here without a CDN: /docs lists the OpenAPI operations (the schema itself at /openapi.json).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import date
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from collector import documents
from collector.auth import AuthError, Principal, TokenBook
from collector.config import CollectorConfig
from collector.errors import RequestProblem
from collector.ingest import parse_batch
from collector.models import Report
from collector.reports import render_html
from collector.scheduler import SpotCheckScheduler
from collector.spotcheck import run_spot_check
from collector.warehouse import StoredBatch, Warehouse

log = logging.getLogger(__name__)

__all__ = ["create_app"]


def _error(status: int, code: str, message: str, field: str | None = None) -> JSONResponse:
    return JSONResponse({"error": {"status": status, "code": code, "message": message, "field": field}},
                        status_code=status)


class CheckRun(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    filing_id: str = Field(min_length=1)
    from_: date | None = Field(default=None, alias="from")
    to: date | None = None


def _principal(request: Request, authorization: Annotated[str | None, Header()] = None) -> Principal:
    return request.app.state.tokens.authenticate(authorization)


# Module level: route annotations are strings here (PEP 563) and FastAPI resolves them in module globals.
Auth = Annotated[Principal, Depends(_principal)]


def create_app(config: CollectorConfig, *, scheduler: bool = True) -> FastAPI:
    warehouse = Warehouse(config.data_dir)
    tokens = TokenBook(config.tokens)
    schedule = SpotCheckScheduler(warehouse, config.schedule.spot_checks) if scheduler else None

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if schedule is not None:
            schedule.start()
        try:
            yield
        finally:
            if schedule is not None:
                schedule.stop()
            warehouse.close()

    app = FastAPI(title="egresswatch collector", version="1", lifespan=lifespan, docs_url=None,
                  redoc_url=None, description="Filings, agent batches, spot checks and reports (DESIGN §9).")
    app.state.warehouse = warehouse
    app.state.tokens = tokens
    app.state.schedule = schedule

    @app.exception_handler(RequestProblem)
    async def _problem(_: Request, e: RequestProblem) -> JSONResponse:
        return _error(e.status, e.code, str(e), e.field)

    @app.exception_handler(AuthError)
    async def _auth_error(_: Request, e: AuthError) -> JSONResponse:
        resp = _error(e.status, e.code, str(e))
        if e.status == 401:
            resp.headers["WWW-Authenticate"] = "Bearer"
        return resp

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return _error(422, "invalid_request", f"{where}: {first.get('msg')}", where or None)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, e: StarletteHTTPException) -> JSONResponse:
        return _error(e.status_code, "not_found" if e.status_code == 404 else "http_error", str(e.detail))

    async def read_body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > config.max_upload_bytes:
            raise RequestProblem(413, "body", f"body: {declared} bytes exceeds max_upload_bytes "
                                 f"{config.max_upload_bytes}")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > config.max_upload_bytes:
                raise RequestProblem(413, "body", f"body: exceeds max_upload_bytes {config.max_upload_bytes}")
            chunks.append(chunk)
        return b"".join(chunks)

    @app.get("/healthz", tags=["service"])
    def healthz() -> dict[str, Any]:
        return {"status": "ok"}

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return HTMLResponse(documents.api_page(app.openapi()))

    @app.post("/v1/batches", status_code=201, tags=["agents"])
    async def post_batch(request: Request, who: Auth,
                         x_batch_id: Annotated[str | None, Header()] = None,
                         x_record_type: Annotated[str | None, Header()] = None) -> JSONResponse:
        """One Parquet file of one record type; idempotent by X-Batch-Id."""
        who.require_role("agent")
        body = await read_body(request)

        def store() -> StoredBatch:
            batch = parse_batch(body, x_batch_id, x_record_type, who.enterprise_id or "")
            try:
                return warehouse.store_batch(batch, who.name)
            except ValueError as e:    # same batch id, other content
                raise RequestProblem(409, "header X-Batch-Id", str(e)) from None

        # Parquet decoding and the DuckDB commit block: off the event loop, so one agent's upload does not
        # stall every other request.
        stored = await run_in_threadpool(store)
        return JSONResponse({"batch_id": stored.batch_id, "record_type": stored.record_type,
                             "rows": stored.rows, "stored_rows": stored.stored_rows,
                             "duplicate_rows": stored.rows - stored.stored_rows,
                             "status": "stored" if stored.created else "already_stored"},
                            status_code=201 if stored.created else 200)

    @app.put("/v1/filings/{filing_id}", tags=["filings"])
    async def put_filing(filing_id: str, request: Request, who: Auth) -> JSONResponse:
        """A filing record (zjftz.filing/v1) as YAML or JSON; a changed one becomes a new version."""
        who.require_role("regulator", "enterprise")
        filing = documents.parse_filing(await read_body(request), filing_id)
        who.require_access(filing.processor.id, str(filing.ftz_area), f"filing {filing_id}")
        prior = warehouse.get_document("filing", filing_id)
        if prior is not None:
            who.require_access(prior.enterprise_id or "", prior.ftz_area, f"filing {filing_id}")
        v = warehouse.put_document("filing", filing_id, filing.model_dump(mode="json", by_alias=True),
                                   filing.processor.id, str(filing.ftz_area), who.name)
        return JSONResponse(documents.version_summary(v), status_code=201 if v.created else 200)

    @app.get("/v1/filings/{filing_id}", tags=["filings"])
    def get_filing(filing_id: str, who: Auth, version: Annotated[int | None, Query(ge=1)] = None
                   ) -> dict[str, Any]:
        who.require_role("regulator", "enterprise")
        v = warehouse.get_document("filing", filing_id, version)
        if v is None:
            raise RequestProblem(404, "filing_id", f"filing_id: no filing {filing_id!r}"
                                 f"{f' version {version}' if version else ''}")
        who.require_access(v.enterprise_id or "", v.ftz_area, f"filing {filing_id}")
        return {**documents.version_summary(v), "filing": v.body}

    @app.put("/v1/negative-lists/{list_id}", tags=["negative lists"])
    async def put_negative_list(list_id: str, request: Request, who: Auth) -> JSONResponse:
        who.require_role("regulator")
        body = documents.parse_negative_list_body(await read_body(request), list_id)
        v = warehouse.put_document("negative_list", list_id, body, None, None, who.name)
        return JSONResponse(documents.version_summary(v), status_code=201 if v.created else 200)

    @app.get("/v1/negative-lists/{list_id}", tags=["negative lists"])
    def get_negative_list(list_id: str, who: Auth) -> dict[str, Any]:
        who.require_role("regulator")
        v = warehouse.get_document("negative_list", list_id)
        if v is None:
            raise RequestProblem(404, "list_id", f"list_id: no negative list {list_id!r}")
        return {**documents.version_summary(v), "negative_list": v.body}

    @app.post("/v1/checks/run", status_code=201, tags=["checks"])
    def run_check(req: CheckRun, who: Auth) -> dict[str, Any]:
        """Run every check for a filing now; returns the stored report's id."""
        who.require_role("regulator")
        prior = warehouse.get_document("filing", req.filing_id)
        if prior is not None:
            who.require_access(prior.enterprise_id or "", prior.ftz_area, f"filing {req.filing_id}")
        done = run_spot_check(warehouse, req.filing_id, start=req.from_, end=req.to, trigger="api")
        return {"report_id": done.report_id, "verdict": done.report.verdict,
                "findings": len(done.report.findings)}

    @app.get("/v1/reports", tags=["reports"])
    def list_reports(who: Auth, filing_id: str | None = None) -> dict[str, Any]:
        """Reports the token may read, newest first."""
        who.require_role("regulator", "enterprise")
        filings = [v for v in warehouse.latest_documents("filing")
                   if who.may_access(v.enterprise_id or "", v.ftz_area)]
        if filing_id is not None:
            v = warehouse.get_document("filing", filing_id)
            if v is None:
                raise RequestProblem(404, "filing_id", f"filing_id: no filing {filing_id!r}")
            who.require_access(v.enterprise_id or "", v.ftz_area, f"filing {filing_id}")
            filings = [v]
        rows = warehouse.list_reports([v.doc_id for v in filings])
        return {"reports": [documents.jsonable(r) for r in rows]}

    def _report(report_id: str, who: Principal) -> tuple[dict[str, Any], str]:
        who.require_role("regulator", "enterprise")
        found = warehouse.get_report(report_id)
        if found is None:
            raise RequestProblem(404, "report_id", f"report_id: no report {report_id!r}")
        meta, body = found
        who.require_access(meta["enterprise_id"], meta["ftz_area"], f"report {report_id}")
        return meta, body

    def _html(meta: dict[str, Any], body: str) -> HTMLResponse:
        report = Report.model_validate_json(body)
        v = warehouse.get_document("filing", meta["filing_id"], meta["filing_version"])
        return HTMLResponse(render_html(report, documents.filing_of(v) if v else None))

    @app.get("/v1/reports/{report_id}.html", tags=["reports"], response_class=HTMLResponse)
    def get_report_html(report_id: str, who: Auth) -> HTMLResponse:
        return _html(*_report(report_id, who))

    @app.get("/v1/reports/{report_id}", tags=["reports"])
    def get_report(report_id: str, who: Auth, accept: Annotated[str | None, Header()] = None) -> Response:
        """The §7 report as JSON, or the HTML page with `Accept: text/html`."""
        meta, body = _report(report_id, who)
        if accept and "text/html" in accept and "application/json" not in accept:
            return _html(meta, body)
        return Response(body, media_type="application/json")

    return app
