"""The collector service (DESIGN §9): `create_app(config)` assembles the routers over one warehouse, the
bearer tokens, the body limits, the spot-check schedule and the dataset's background compaction
(collector/compaction.py).

Routers, one module per resource: collector/routes_batches.py (agents' uploads), routes_filings.py,
routes_negative_lists.py, routes_reports.py (check runs and reports) and routes_tenancy.py (a regulator's
enterprises, batch removal, audit log); their dependencies (settings, warehouse, caller, tenancy lookups)
are in collector/deps.py, their bodies in collector/schemas.py.

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

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from collector import (
    batchread,
    documents,
    routes_batches,
    routes_filings,
    routes_negative_lists,
    routes_reports,
    routes_tenancy,
)
from collector.auth import AuthError, TokenBook
from collector.bodies import BodyGate
from collector.compaction import Compactor
from collector.config import CollectorConfig
from collector.errors import RequestProblem
from collector.scheduler import SpotCheckScheduler
from collector.schemas import Health
from collector.warehouse import Warehouse
from detectors.inputs import TOP, location

log = logging.getLogger(__name__)

__all__ = ["create_app"]

# HTML pages are self-contained (inline styles, inline SVG, no script): nothing else may load or run.
CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")


def _error(status: int, code: str, message: str, field: str | None = None) -> JSONResponse:
    # Cut short whatever a message quotes of the request: an error never echoes an upload back.
    message = message if len(message) <= 500 else message[:500] + "…"
    field = field if field is None or len(field) <= 120 else field[:120] + "…"
    return JSONResponse({"error": {"status": status, "code": code, "message": message, "field": field}},
                        status_code=status)


def create_app(config: CollectorConfig, *, scheduler: bool = True) -> FastAPI:
    warehouse = Warehouse(config.data_dir, max_records_per_key=config.persons.max_records_per_key)
    schedule = (SpotCheckScheduler(warehouse, config.schedule.spot_checks, config.area_of())
                if scheduler else None)
    compactor = Compactor(warehouse, config.storage) if scheduler else None

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if schedule is not None:
            schedule.start()
        if compactor is not None:
            compactor.start()
        try:
            yield
        finally:
            if schedule is not None:
                schedule.stop()
            if compactor is not None:
                compactor.stop()
            batchread.shutdown()
            warehouse.close()

    app = FastAPI(title="egresswatch collector", version="1", lifespan=lifespan, docs_url=None,
                  redoc_url=None, description="Filings, agent batches, spot checks and reports (DESIGN §9).")
    # What the dependencies of collector/deps.py and collector/auth.py hand to the routes.
    app.state.config = config
    app.state.warehouse = warehouse
    app.state.tokens = TokenBook(config.tokens, config.enterprises)
    app.state.bodies = BodyGate.of(config)
    app.state.schedule = schedule
    app.state.compactor = compactor
    for module in (routes_batches, routes_filings, routes_negative_lists, routes_reports, routes_tenancy):
        app.include_router(module.router)
    _errors(app)

    @app.middleware("http")
    async def _headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        response.headers["X-Content-Type-Options"] = "nosniff"
        if response.headers.get("content-type", "").startswith("text/html"):
            response.headers["Content-Security-Policy"] = CSP
        return response

    @app.get("/healthz", tags=["service"], response_model=Health)
    async def healthz() -> Health:
        # On the event loop, not the thread pool: liveness must not wait behind slow routes' threads.
        return Health()

    @app.get("/docs", include_in_schema=False, response_class=HTMLResponse)
    def docs() -> HTMLResponse:
        return HTMLResponse(documents.api_page(app.openapi()))

    return app


def _errors(app: FastAPI) -> None:
    """Every error leaves in the one JSON shape (collector/schemas.py `ErrorBody`)."""

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
