"""The collector service (DESIGN §9): FastAPI routes over the warehouse, bearer tokens, the schedule.

Every error, whatever raised it (a refused batch, a bad filing, a wrong token, an unknown route), leaves as
one JSON shape: `{"error": {"status": 422, "code": "invalid_batch", "message": "…", "field": "…"}}` —
`field` names the header, column or filing path at fault, or is null. The interactive API page is served
from here without a CDN: /docs lists the OpenAPI operations (the schema itself at /openapi.json).

Hostile input is normal input: bodies are read against a size cap; documents and batches are parsed in
worker threads (batches in a memory- and time-limited process) so that no upload stalls the event loop;
an unexpected failure is a 500 in the same shape, never a traceback. Tenancy is decided from the registry
(collector.yaml `enterprises:`) and the token, never from the uploaded body.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import date
from typing import Annotated, Any

from fastapi import FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from collector import batchread, documents
from collector.audit import AuditEntry
from collector.auth import Auth, AuthError, Principal, TokenBook
from collector.config import CollectorConfig
from collector.errors import RequestProblem, shown
from collector.ingest import parse_batch
from collector.models import Filing, Report
from collector.reports import render_html
from collector.routes_tenancy import router as tenancy_router
from collector.scheduler import SpotCheckScheduler
from collector.spotcheck import run_spot_check
from collector.warehouse import StorageError, StoredBatch, Version, Warehouse
from detectors.inputs import TOP, location

log = logging.getLogger(__name__)

__all__ = ["create_app"]


def _error(status: int, code: str, message: str, field: str | None = None) -> JSONResponse:
    # Cut short whatever a message quotes of the request: an error never echoes an upload back.
    message = message if len(message) <= 500 else message[:500] + "…"
    field = field if field is None or len(field) <= 120 else field[:120] + "…"
    return JSONResponse({"error": {"status": status, "code": code, "message": message, "field": field}},
                        status_code=status)


# HTML pages are self-contained (inline styles, inline SVG, no script): nothing else may load or run.
CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")
SMALL_BODY = 64 * 1024     # JSON requests other than uploads (a check run)


class CheckRun(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    filing_id: str = Field(min_length=1)
    from_: date | None = Field(default=None, alias="from")
    to: date | None = None


def create_app(config: CollectorConfig, *, scheduler: bool = True) -> FastAPI:
    warehouse = Warehouse(config.data_dir)
    tokens = TokenBook(config.tokens, config.enterprises)
    limits = config.limits
    # Batches wait here rather than all decoding at once: each one can hold max_upload_bytes in memory.
    # A body is received before a decoding slot is taken, under a deadline, and one token has at most
    # max_uploads_per_token uploads in flight: a slow or hostile agent holds only its own slots.
    uploads = asyncio.Semaphore(limits.max_concurrent_uploads)
    per_token: defaultdict[str, asyncio.Semaphore] = defaultdict(
        lambda: asyncio.Semaphore(limits.max_uploads_per_token))
    # Parsing a filing holds a worker thread and the GIL for up to seconds: a few at a time, each token's
    # in its own slots, so that one token's documents cannot starve the thread pool the routes share.
    parsing = asyncio.Semaphore(limits.max_concurrent_documents)

    async def parse_document(who: Principal, request: Request, parse: Any, *args: Any) -> Any:
        async with per_token[who.name]:
            body = await read_body(request, limits.max_document_bytes, "max_document_bytes")
            async with parsing:
                return await run_in_threadpool(functools.partial(parse, body, *args, limits))

    schedule = (SpotCheckScheduler(warehouse, config.schedule.spot_checks, config.area_of())
                if scheduler else None)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if schedule is not None:
            schedule.start()
        try:
            yield
        finally:
            if schedule is not None:
                schedule.stop()
            batchread.shutdown()
            warehouse.close()

    app = FastAPI(title="egresswatch collector", version="1", lifespan=lifespan, docs_url=None,
                  redoc_url=None, description="Filings, agent batches, spot checks and reports (DESIGN §9).")
    app.state.warehouse = warehouse
    app.state.tokens = tokens
    app.state.schedule = schedule
    app.state.config = config
    app.include_router(tenancy_router)

    @app.middleware("http")
    async def _headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        response.headers["X-Content-Type-Options"] = "nosniff"
        if response.headers.get("content-type", "").startswith("text/html"):
            response.headers["Content-Security-Policy"] = CSP
        return response

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
        where = location(tuple(p for p in first.get("loc", ()) if p != "body"))   # the files' wording
        return _error(422, "invalid_request", f"{where}: {first.get('msg')}", None if where == TOP else where)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, e: StarletteHTTPException) -> JSONResponse:
        return _error(e.status_code, "not_found" if e.status_code == 404 else "http_error", str(e.detail))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, e: Exception) -> JSONResponse:
        # A bug, not bad input: logged with its traceback here, one line to the caller (no internals).
        log.error("%s %s failed: %s", request.method, request.url.path, type(e).__name__, exc_info=e)
        return _error(500, "internal_error", "internal error; the collector's log has the details")

    async def read_body(request: Request, cap: int, what: str = "max_upload_bytes") -> bytes:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > cap:
            raise RequestProblem(413, "body", f"body: {shown(declared, 24)} bytes exceeds {what} {cap}")

        async def receive() -> bytes:
            chunks, size = [], 0
            async for chunk in request.stream():
                size += len(chunk)
                if size > cap:
                    raise RequestProblem(413, "body", f"body: exceeds {what} {cap}")
                chunks.append(chunk)
            return b"".join(chunks)

        try:
            return await asyncio.wait_for(receive(), limits.upload_timeout_s)
        except TimeoutError:
            raise RequestProblem(408, "body", f"body: not received within limits.upload_timeout_s "
                                 f"{limits.upload_timeout_s:g} s") from None
        except ClientDisconnect:
            # Nobody is left to answer; not a server error (no traceback in the log).
            log.info("%s %s: client disconnected during the body", request.method, request.url.path)
            raise RequestProblem(400, "body", "body: the client disconnected") from None

    def own_filing(who: Principal, filing_id: str, version: int | None = None) -> Version:
        """The filing if this token may read it; otherwise the same 404 as for a filing that does not
        exist, so that no one can probe another tenant's filing numbers."""
        v = warehouse.get_document("filing", filing_id, version)
        if v is None or not who.may_access(v.enterprise_id):
            raise RequestProblem(404, "filing_id", f"filing_id: no filing {shown(filing_id)}"
                                 f"{f' version {version}' if version else ''}")
        return v

    def audit_entry(who: Principal, obj: str, object_id: str, enterprise_id: str | None,
                    ftz_area: str | None) -> AuditEntry:
        return AuditEntry(actor=who.name, role=who.role, ftz_area=ftz_area, enterprise_id=enterprise_id,
                          object=obj, object_id=object_id, action="create")

    @app.get("/healthz", tags=["service"])
    async def healthz() -> dict[str, Any]:
        # On the event loop, not the thread pool: liveness must not wait behind slow routes' threads.
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

        def store(body: bytes) -> StoredBatch:
            batch = parse_batch(body, x_batch_id, x_record_type, who.enterprise_id or "", who.agent_id or "",
                                limits=limits)
            # 409 same id other content, 507 disk full or the enterprise's quota reached
            return warehouse.store_batch(batch, who.name, quota=limits.max_enterprise_bytes)

        # Parquet decoding and the DuckDB commit block: off the event loop, so one agent's upload does not
        # stall every other request; at most max_concurrent_uploads batches decode at once.
        async with per_token[who.name]:
            body = await read_body(request, config.max_upload_bytes)
            used = await run_in_threadpool(warehouse.over_quota, who.enterprise_id or "",
                                           limits.max_enterprise_bytes)
            if used is not None:       # refused before any decoding is spent on it
                raise StorageError(f"enterprise {who.enterprise_id} has used {used} of its limits."
                                   f"max_enterprise_bytes {limits.max_enterprise_bytes}; nothing stored (a "
                                   "regulator can remove batches)")
            async with uploads:
                stored = await run_in_threadpool(store, body)
        return JSONResponse({"batch_id": stored.batch_id, "record_type": stored.record_type,
                             "rows": stored.rows, "stored_rows": stored.stored_rows,
                             "duplicate_rows": stored.rows - stored.stored_rows,
                             "status": "stored" if stored.created else "already_stored"},
                            status_code=201 if stored.created else 200)

    @app.put("/v1/filings/{filing_id}", tags=["filings"])
    async def put_filing(filing_id: str, request: Request, who: Auth) -> JSONResponse:
        """A filing record (zjftz.filing/v1) as YAML or JSON; a changed one becomes a new version."""
        who.require_role("regulator", "enterprise")
        filing = await parse_document(who, request, documents.parse_filing, filing_id)
        prior = warehouse.get_document("filing", filing_id)
        if prior is not None:
            who.require_access(prior.enterprise_id, f"filing {shown(filing_id)}")
        elif who.role != "regulator":
            # The filing number (备案编号) is registered by the area's regulator; an enterprise adds versions
            # to its own filings. Otherwise any tenant could take another area's number first.
            raise AuthError(403, "forbidden", f"filing {shown(filing_id)}: a new filing number is registered "
                            "by the area's regulator; an enterprise uploads new versions of its own filings")
        enterprise, area = _tenant_of(who, filing)
        if prior is not None and prior.enterprise_id != enterprise:
            raise RequestProblem(409, "processor.id", f"processor.id: filing {filing_id} belongs to "
                                 f"enterprise {prior.enterprise_id}; a filing cannot move to another one")
        v = await run_in_threadpool(
            warehouse.put_document, "filing", filing_id, filing.model_dump(mode="json", by_alias=True),
            enterprise, area, who.name, audit_entry(who, "filing", filing_id, enterprise, area))
        return JSONResponse(documents.version_summary(v), status_code=201 if v.created else 200)

    @app.get("/v1/filings/{filing_id}", tags=["filings"])
    def get_filing(filing_id: str, who: Auth, version: Annotated[int | None, Query(ge=1)] = None
                   ) -> dict[str, Any]:
        who.require_role("regulator", "enterprise")
        v = own_filing(who, filing_id, version)
        return {**documents.version_summary(v), "filing": v.body}

    @app.put("/v1/negative-lists/{list_id}", tags=["negative lists"])
    async def put_negative_list(list_id: str, request: Request, who: Auth) -> JSONResponse:
        who.require_role("regulator")
        body = await parse_document(who, request, documents.parse_negative_list_body, list_id)
        # A list belongs to the area whose regulator first stored it: another area cannot rewrite what
        # this area's checks apply.
        prior = warehouse.get_document("negative_list", list_id)
        if prior is not None and prior.ftz_area not in (None, who.ftz_area):
            raise AuthError(403, "forbidden", f"negative list {shown(list_id)}: kept by the regulators of "
                            f"area {prior.ftz_area}; token {who.name!r} is for area {who.ftz_area}")
        v = await run_in_threadpool(
            warehouse.put_document, "negative_list", list_id, body, None, who.ftz_area, who.name,
            audit_entry(who, "list", list_id, None, who.ftz_area))
        return JSONResponse(documents.version_summary(v), status_code=201 if v.created else 200)

    @app.get("/v1/negative-lists/{list_id}", tags=["negative lists"])
    def get_negative_list(list_id: str, who: Auth) -> dict[str, Any]:
        who.require_role("regulator")
        v = warehouse.get_document("negative_list", list_id)
        if v is None:
            raise RequestProblem(404, "list_id", f"list_id: no negative list {shown(list_id)}")
        return {**documents.version_summary(v), "negative_list": v.body}

    @app.post("/v1/checks/run", status_code=201, tags=["checks"],
              openapi_extra={"requestBody": {"content": {"application/json": {
                  "schema": CheckRun.model_json_schema(by_alias=True)}}, "required": True}})
    async def run_check(request: Request, who: Auth) -> dict[str, Any]:
        """Run every check for a filing now (`{"filing_id": …, "from": …, "to": …}`); returns the stored
        report's id."""
        who.require_role("regulator")
        raw = await read_body(request, SMALL_BODY, "the size of a check request")
        req = await run_in_threadpool(documents.parse_request, raw, CheckRun, limits)
        own_filing(who, req.filing_id)
        done = await run_in_threadpool(run_spot_check, warehouse, req.filing_id, start=req.from_, end=req.to,
                                       trigger="api")
        return {"report_id": done.report_id, "verdict": done.report.verdict,
                "findings": len(done.report.findings)}

    @app.get("/v1/reports", tags=["reports"])
    def list_reports(who: Auth, filing_id: str | None = None) -> dict[str, Any]:
        """Reports the token may read, newest first."""
        who.require_role("regulator", "enterprise")
        if filing_id is not None:
            filing_ids = [own_filing(who, filing_id).doc_id]
        else:
            filing_ids = [doc for doc, owner in warehouse.document_owners("filing") if who.may_access(owner)]
        rows = warehouse.list_reports(filing_ids)
        return {"reports": [documents.jsonable(r) for r in rows]}

    def _report(report_id: str, who: Principal) -> tuple[dict[str, Any], str]:
        who.require_role("regulator", "enterprise")
        found = warehouse.get_report(report_id)
        if found is None or not who.may_access(found[0]["enterprise_id"]):
            raise RequestProblem(404, "report_id", f"report_id: no report {shown(report_id)}")
        return found

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


def _tenant_of(who: Principal, filing: Filing) -> tuple[str, str]:
    """The registered enterprise a filing is for and its area: the filing names them, the registry decides.
    A regulator names only enterprises registered in its area (422 otherwise, the same whether the id is
    unregistered or another area's), an enterprise only itself (403); an ftz_area other than the
    registered one is a 422 naming the field."""
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
