"""A message's content, collected within the flow's budgets: the part of HTTP message handling that does not
depend on how the messages are framed.

`HttpResponse` is what every response framer produces, `MessageHead` what a framer holds of a message while
reading it, and `MessageBody` how it collects a body: bytes kept within the flow's inspection budget
(`sampling.max_payload_bytes_per_flow`, shared by all messages of the flow), content codings undone
(codings.py) within `max_decompressed_bytes`. HTTP/1.x frames requests and responses in
agent/protocols/http_framing.py; the HTTP/2 handler (next issue) must frame HEADERS and DATA into the same
`HttpResponse` through `MessageBody` and `has_body`, and hand them to the same `on_response`
(agent/protocols/served.py), so that pulls over h2 are inspected within the same budgets.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from agent.anomalies import known_or_shape
from agent.protocols.codings import REGISTERED, Decoder, unsupported

__all__ = ["BodyBudget", "HttpResponse", "MessageBody", "MessageHead", "PendingResponse", "has_body"]

Anomaly = Callable[[str, str], None]


@dataclass(frozen=True, slots=True)
class HttpResponse:
    number: int                           # 0, 1, 2… among the connection's final responses
    status: int
    version: str                          # "HTTP/1.1"
    method: str | None                    # of the request it answers, when that request was seen
    target: str | None
    headers: tuple[tuple[str, str], ...]  # as sent, trailer fields appended
    content_type: str | None
    body: bytes                           # after content / transfer decoding, at most the budgets
    body_truncated: bool


def has_body(method: str | None, status: int) -> bool:
    """Whether a response can carry content (RFC 9110 §6.4.1, §9.3.2, §9.3.6; RFC 9112 §6.3): not one to
    HEAD, not a 1xx, 204 or 304, not a 2xx to CONNECT (a tunnel follows)."""
    if method == "HEAD" or status < 200 or status in (204, 304):
        return False
    return not (method == "CONNECT" and status < 300)


class BodyBudget:
    """Body bytes a flow may still keep for inspection, across all its messages."""

    __slots__ = ("kept", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = max(0, limit)
        self.kept = 0

    @property
    def exhausted(self) -> bool:
        return self.kept >= self.limit


class MessageBody:
    """One message's content being collected: `add` framed bytes, `cut` at a hole, `finish` at its end."""

    __slots__ = ("budget", "decoder", "raw", "truncated")

    def __init__(self, budget: BodyBudget, codings: Sequence[str], max_decompressed_bytes: int,
                 anomaly: Anomaly) -> None:
        self.budget = budget
        self.raw = bytearray()       # framed bytes kept (before decoding), at most the budget
        self.truncated = False
        self.decoder: Decoder | None = None
        if not codings:
            return
        bad = unsupported(codings)
        if bad:
            # Kept as it is: an unknown coding's bytes are inspected raw (they may be plain after all).
            anomaly("unsupported_coding", ",".join(known_or_shape(c, REGISTERED) for c in bad[:4])
                    + (f" and {len(bad) - 4} more" if len(bad) > 4 else ""))
        elif any(c != "identity" for c in codings):
            self.decoder = Decoder(codings, max_decompressed_bytes)

    def add(self, data: bytes | bytearray) -> None:
        """Framed body bytes (not kept: a slice of the framer's buffer may be handed over as it is)."""
        budget = self.budget
        room = budget.limit - budget.kept
        if len(data) > room:
            self.truncated = True
            data = data[: max(0, room)]
        if not data:
            return
        budget.kept += len(data)
        dec = self.decoder
        if dec is None:
            self.raw += data
            return
        if not dec.out:
            self.raw += data     # kept until decoding yields output: a body mislabelled as coded
        dec.feed(bytes(data))
        if dec.out and self.raw:
            self.raw = bytearray()

    def cut(self) -> None:
        """Bytes of this body went missing: what follows cannot be decoded across the hole."""
        self.truncated = True
        if self.decoder is not None:
            self.decoder.cut = True

    def finish(self, anomaly: Anomaly, limit: int) -> bytes:
        """The decoded content (or the raw bytes when they do not decode); sets `truncated` on a limit."""
        body = bytes(self.raw)
        dec = self.decoder
        if dec is not None:
            if dec.limited:
                anomaly("decompression_limit", f"{dec.name} body over {limit} bytes decoded; kept the "
                                               "decoded prefix")
                self.truncated = True
            elif dec.error is not None:
                anomaly("decompression_error", f"{dec.name}: {len(dec.out)} bytes decoded")
                self.truncated = True
            if dec.error is None or dec.out:
                body = bytes(dec.out)
        return body


class MessageHead:
    """A message being framed: its header (then trailer) fields as read so far, its body once started."""

    __slots__ = ("body", "fields", "header_bytes", "malformed")

    def __init__(self, malformed: bool = False) -> None:
        self.malformed = malformed     # the start line was malformed; the message was kept all the same
        self.fields: list[tuple[str, str]] = []
        self.header_bytes = 0
        self.body: MessageBody | None = None

    def values(self, name: str) -> list[str]:
        return [v for n, v in self.fields if n.lower() == name]

    def content(self, anomaly: Anomaly, max_decompressed_bytes: int) -> tuple[bytes, bool]:
        """The body as inspected and whether it is truncated (b"", False for a message without one)."""
        body = self.body
        if body is None:
            return b"", False
        content = body.finish(anomaly, max_decompressed_bytes)
        return content, body.truncated


class PendingResponse(MessageHead):
    """A response being framed: its head as read so far, the request it answers, its body once started."""

    __slots__ = ("method", "status", "target", "version")

    def __init__(self, status: int, version: str) -> None:
        super().__init__()
        self.status, self.version = status, version
        self.method: str | None = None
        self.target: str | None = None

    def response(self, number: int, anomaly: Anomaly, max_decompressed_bytes: int) -> HttpResponse:
        body, truncated = self.content(anomaly, max_decompressed_bytes)
        content_type = next((v.strip() for v in self.values("content-type")), None)
        return HttpResponse(
            number=number, status=self.status, version=self.version, method=self.method, target=self.target,
            headers=tuple(self.fields), content_type=content_type, body=body, body_truncated=truncated)
