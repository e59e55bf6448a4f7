"""Uploaded documents (filings, negative lists) parsed and validated for the service, and the small
renderings the routes share: a version summary, JSON-safe rows, the CDN-free API page.

A filing or list body is YAML or JSON (JSON is YAML); a problem is a `DocumentError` naming the field
path, as `egress-collector validate` names it for files.
"""

from __future__ import annotations

import html
from datetime import date, datetime
from typing import Any

import yaml
from pydantic import ValidationError

from collector.errors import RequestProblem
from collector.models import FILING_SCHEMA, Filing, describe_validation_error
from collector.negative_lists import NegativeListError, parse_negative_list
from collector.warehouse import Version

__all__ = ["DocumentError", "api_page", "filing_of", "jsonable", "parse_filing", "parse_negative_list_body",
           "version_summary"]


class DocumentError(RequestProblem):
    """A filing or negative list that does not validate: 422 naming the field path."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(422, field, message)


def _mapping(body: bytes, what: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise DocumentError("body", f"body: {what} is not UTF-8 text") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise DocumentError("body", f"body: {what} is not valid YAML or JSON{where}") from None
    if not isinstance(data, dict):
        raise DocumentError("body", f"body: {what} must be a mapping at the top level")
    return data


def parse_filing(body: bytes, filing_id: str) -> Filing:
    data = _mapping(body, "the filing")
    if data.get("schema") != FILING_SCHEMA:
        raise DocumentError("schema", f"schema: expected {FILING_SCHEMA!r}, got {data.get('schema')!r}")
    try:
        filing = Filing.model_validate(data)
    except ValidationError as e:
        message = describe_validation_error(e)
        raise DocumentError(message.split(":", 1)[0], message) from None
    if filing.filing_id != filing_id:
        raise DocumentError("filing_id", f"filing_id: {filing.filing_id!r} does not match the URL's "
                                         f"{filing_id!r}")
    return filing


def parse_negative_list_body(body: bytes, list_id: str) -> dict[str, Any]:
    """The list as uploaded, after it validated (stored as given: a loader of a later version reads it)."""
    data = _mapping(body, "the negative list")
    try:
        parsed = parse_negative_list(data, "body")
    except NegativeListError as e:
        message = str(e).removeprefix("body: ")
        raise DocumentError(message.split(":", 1)[0], message) from None
    if parsed.list_id != list_id:
        raise DocumentError("list_id", f"list_id: {parsed.list_id!r} does not match the URL's {list_id!r}")
    return jsonable(data)


def filing_of(version: Version) -> Filing:
    return Filing.model_validate(version.body)


def version_summary(v: Version) -> dict[str, Any]:
    return {"kind": v.kind, "id": v.doc_id, "version": v.version, "sha256": v.sha256,
            "stored_at": v.stored_at.isoformat(), "created": v.created}


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
