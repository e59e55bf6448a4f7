"""Meta-tests of the service's routes (DESIGN §9, STYLE "Service and CLI"): every route declares the body it
answers with — a pydantic `response_model`, or it is one of the few pages that are HTML by design — and
every error is documented in the one JSON error shape. The app is built in process (no request is served):
what is checked here is the route table itself; tests/e2e/test_collector_service.py checks the served
/openapi.json against real answers.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.routing import BaseRoute

from collector.config import CollectorConfig
from collector.service import create_app

# The routes that answer with a page, not JSON (their errors are still the JSON error shape).
HTML_ROUTES = {("GET", "/docs"), ("GET", "/v1/reports/{report_id}.html")}


@pytest.fixture
def app(tmp_path: Path) -> Iterator[FastAPI]:
    application = create_app(CollectorConfig(data_dir=str(tmp_path / "data")), scheduler=False)
    try:
        yield application
    finally:
        application.state.warehouse.close()


def _api_routes(routes: Iterable[BaseRoute]) -> Iterator[APIRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        # FastAPI ≥ 0.16x keeps an included router as one entry holding the router (older ones copied its
        # routes into the app's list).
        elif (included := getattr(route, "original_router", None)) is not None:
            yield from _api_routes(included.routes)


def _routes(app: FastAPI) -> dict[tuple[str, str], APIRoute]:
    return {(method, r.path): r for r in _api_routes(app.routes) for method in r.methods}


def test_every_route_has_a_response_model_or_is_an_html_page(app: FastAPI) -> None:
    routes = _routes(app)
    assert len(routes) >= 13 and ("POST", "/v1/batches") in routes    # every router was found
    assert set(routes) >= HTML_ROUTES, "an HTML route listed here no longer exists"
    for key, route in routes.items():
        if key in HTML_ROUTES:
            assert route.response_model is None and issubclass(route.response_class, HTMLResponse), key
        else:
            # A pydantic model, not one FastAPI inferred from `-> dict[str, Any]` (which documents nothing).
            model = route.response_model
            assert isinstance(model, type) and issubclass(model, BaseModel), \
                f"{key}: response_model {model!r} is not a pydantic model (or list the route in HTML_ROUTES)"


def test_every_operation_documents_its_answer_and_the_one_error_shape(app: FastAPI) -> None:
    schema = app.openapi()
    error = {"$ref": "#/components/schemas/ErrorBody"}
    operations = [(method.upper(), path, op) for path, ops in schema["paths"].items()
                  for method, op in ops.items()]
    assert len(operations) >= 12
    for method, path, op in operations:
        answers = {status: body for status, body in op["responses"].items() if status.startswith("2")}
        assert answers, (method, path)
        for status, body in answers.items():
            if (method, path) in HTML_ROUTES:
                assert body["content"]["text/html"]["schema"] == {"type": "string"}, (method, path)
            else:
                documented = body["content"]["application/json"]["schema"]
                assert documented.get("$ref", "").startswith("#/components/schemas/"), (method, path, status)
        if path == "/healthz":
            continue
        # Errors are the one shape, never FastAPI's own `{"detail": …}` validation error.
        for status in ("4XX", "5XX"):
            assert op["responses"][status]["content"]["application/json"]["schema"] == error, (path, status)
        assert "422" not in op["responses"], (method, path)
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    assert set(schema["components"]["schemas"]["ErrorDetail"]["properties"]) == {
        "status", "code", "message", "field"}
