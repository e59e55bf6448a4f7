"""Uploaded documents (filings, negative lists) parsed and validated for the service, and the small
renderings the routes share: a version summary, JSON-safe rows, the CDN-free API page.

A filing or list body is YAML or JSON (JSON is YAML), parsed under the caps of `limits:` (DESIGN §9
"Hostile input": max_document_bytes, max_document_depth, max_document_aliases) by detectors/safeyaml.py; a
problem is a `RequestProblem` naming the field path (413 for size, 422 for the rest), as `egress-collector
validate` names it for files. Every parse_* here is CPU work the service runs in its thread pool: nothing
here touches the event loop, and a refused body costs no more than the caps allow.
"""

from __future__ import annotations

import html
import json
import logging
import re
from datetime import date, datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from collector.config import Limits
from collector.errors import RequestProblem, shown
from collector.models import FILING_SCHEMA, Filing, describe_validation_error
from collector.negative_lists import NegativeListError, parse_negative_list
from collector.warehouse import Version
from detectors.safeyaml import Caps, SafeYamlError, load

__all__ = ["DocumentError", "api_page", "caps_of", "filing_of", "jsonable", "parse_filing", "parse_json_body",
           "parse_negative_list_body", "parse_request"]

log = logging.getLogger(__name__)

_DEFAULT_LIMITS = Limits()
M = TypeVar("M", bound=BaseModel)


class DocumentError(RequestProblem):
    """A filing or negative list that does not validate: 422 naming the field path (413 when too large)."""

    def __init__(self, field: str | None, message: str, status: int = 422) -> None:
        super().__init__(status, field, message)


def caps_of(limits: Limits | None) -> Caps:
    """The document caps of the service's `limits:` (defaults when None)."""
    limits = limits or _DEFAULT_LIMITS
    return Caps(max_bytes=limits.max_document_bytes, max_depth=limits.max_document_depth,
                max_aliases=limits.max_document_aliases)


def _mapping(body: bytes, what: str, limits: Limits | None) -> dict[str, Any]:
    try:
        data = load(body, caps_of(limits))
    except SafeYamlError as e:
        raise DocumentError("body", f"body: {e}", e.status) from None
    if not isinstance(data, dict):
        raise DocumentError("body", f"body: {what} must be a mapping at the top level")
    return data


def _field_of(message: str) -> str:
    return message.split(":", 1)[0]


def parse_filing(body: bytes, filing_id: str, limits: Limits | None = None) -> Filing:
    """Caps, parse and validate a filing upload; raises RequestProblem (413/422) naming the field."""
    data = _mapping(body, "the filing", limits)
    if (got := data.get("schema")) != FILING_SCHEMA:
        raise DocumentError("schema", f"schema: expected {FILING_SCHEMA!r}, got {shown(got)}")
    try:
        filing = Filing.model_validate(data)
    except ValidationError as e:
        message = describe_validation_error(e)
        raise DocumentError(_field_of(message), message) from None
    if filing.filing_id != filing_id:
        raise DocumentError("filing_id", f"filing_id: {shown(filing.filing_id)} does not match the URL's "
                                         f"{shown(filing_id)}")
    return filing


def parse_negative_list_body(body: bytes, list_id: str, limits: Limits | None = None) -> dict[str, Any]:
    """The list as uploaded, after it validated (stored as given: a loader of a later version reads it)."""
    data = _mapping(body, "the negative list", limits)
    try:
        parsed = parse_negative_list(data, "body")
    except NegativeListError as e:
        message = str(e).removeprefix("body: ")
        raise DocumentError(_field_of(message), message) from None
    if parsed.list_id != list_id:
        raise DocumentError("list_id", f"list_id: {shown(parsed.list_id)} does not match the URL's "
                                       f"{shown(list_id)}")
    return jsonable(data)


# JSON strings (escapes included) and brackets: enough to bound how deep `json.loads` will recurse.
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_JSON_BRACKET = re.compile(rb"[\[\]{}]")


def _json_too_deep(body: bytes, max_depth: int) -> bool:
    """Whether the brackets outside strings open deeper than `max_depth`: an upper bound of the recursion
    `json.loads` would need (it raises RecursionError, not a ValueError, on 100k-deep input)."""
    depth = 0
    for m in _JSON_BRACKET.finditer(_JSON_STRING.sub(b'""', body)):
        if m.group() in (b"[", b"{"):
            depth += 1
            if depth > max_depth:
                return True
        else:
            depth -= 1
    return False


def parse_json_body(body: bytes, limits: Limits | None = None) -> dict[str, Any]:
    """A small JSON request body (POST /v1/checks/run, PATCH of a finding) under the same size and depth
    caps as documents; raises RequestProblem 413/422 on field "body"."""
    caps = caps_of(limits)
    if len(body) > caps.max_bytes:
        raise RequestProblem(413, "body", f"body: {len(body)} bytes is more than max_document_bytes "
                                          f"{caps.max_bytes}")
    if _json_too_deep(body, caps.depth):
        raise RequestProblem(422, "body", f"body: nesting deeper than max_document_depth {caps.depth}")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:   # JSONDecodeError, an int of 5,000 digits, bad UTF-8
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise RequestProblem(422, "body", f"body: not valid JSON: {first[:200]}") from None
    if not isinstance(data, dict):
        raise RequestProblem(422, "body", "body: expected a JSON object")
    return data


def parse_request(body: bytes, model: type[M], limits: Limits | None = None) -> M:
    """`parse_json_body`, then `model`'s validation: a 422 naming the field (`from: Input should be …`)."""
    data = parse_json_body(body, limits)
    try:
        return model.model_validate(data)
    except ValidationError as e:
        message = describe_validation_error(e)
        raise RequestProblem(422, _field_of(message), message) from None


def filing_of(version: Version) -> Filing | None:
    """The stored filing, or None (logged) for one stored before a bound was added: a report page then
    renders without the filing's details instead of failing."""
    try:
        return Filing.model_validate(version.body)
    except ValidationError as e:
        log.warning("stored filing %s v%s no longer validates: %s", version.doc_id, version.version,
                    describe_validation_error(e))
        return None


def jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def api_page(openapi: dict[str, Any]) -> str:
    """The operations of the OpenAPI document as one self-contained page (Swagger UI would load from a
    CDN, which this service must never reach for)."""
    rows = []
    for path, ops in sorted(openapi.get("paths", {}).items()):
        for method, op in ops.items():
            summary = op.get("summary") or ""
            doc = (op.get("description") or "").strip().splitlines()
            rows.append(f"<tr><td><code>{html.escape(method.upper())}</code></td><td><code>{html.escape(path)}"
                        f"</code></td><td>{html.escape(summary)}</td><td>{html.escape(doc[0] if doc else '')}"
                        "</td></tr>")
    title = html.escape(openapi.get("info", {}).get("title", "API"))
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>" + title + "</title>"
            "<style>body{font-family:sans-serif;margin:2em}td{padding:.2em .8em;border-bottom:1px solid #ddd}"
            "</style></head><body><h1>" + title + "</h1><p>Every route but <code>/healthz</code> needs "
            "<code>Authorization: Bearer &lt;token&gt;</code>. Machine-readable schema: "
            "<a href=\"/openapi.json\">/openapi.json</a>.</p><table>" + "".join(rows)
            + "</table></body></html>")
