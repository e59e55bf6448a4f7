"""The one error type for bad input a request or command brought to the collector.

`RequestProblem(status, field, message)`: `status` the HTTP status it answers with (403, 404, 409, 413,
422), `field` the header, column or field path at fault (or None), `str()` one line. Ingestion, documents
and spot checks raise it; the service turns any of them into the one JSON error shape, the command line
into one line on stderr.
"""

from __future__ import annotations

__all__ = ["CODES", "RequestProblem", "shown"]

# The `code` of the JSON error shape, by status.
CODES = {400: "bad_request", 401: "unauthenticated", 403: "forbidden", 404: "not_found", 408: "timeout",
         409: "conflict", 413: "too_large", 422: "invalid_request", 500: "internal_error", 503: "unavailable",
         507: "insufficient_storage"}


class RequestProblem(ValueError):
    def __init__(self, status: int, field: str | None, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.field = field

    @property
    def code(self) -> str:
        return CODES.get(self.status, "http_error")


def shown(value: object, limit: int = 60) -> str:
    """An uploader-chosen value quoted in an error message, cut short: an error must not echo a megabyte
    back (nor hand a probe a free amplifier). A mapping or list is named by its type, never printed (an
    alias bomb prints as a tree of billions)."""
    if value is not None and not isinstance(value, str | int | float | bool):
        return f"a {type(value).__name__}"
    text = str(value)
    return repr(text if len(text) <= limit else text[:limit] + "…")
