"""One HTTP/2 request stream: its decoded header fields, its body, and the `HttpRequest` it becomes.

Pseudo-header fields (RFC 9113 §8.3.1) give the method, target and authority; the regular fields are kept
as sent (trailers appended, §8.1), pseudo-headers not repeated among them. `:authority` names the server
like Host does in HTTP/1.1 (lower-cased, RFC 9113 §8.3.1 forbids userinfo, so any is dropped as HTTP/1's
absolute-form does); a value that is no host name is an anomaly that only says what it looked like. A block
that breaks the pseudo-header rules (missing :method or :path, a pseudo-header after a regular field, an
unknown one) still becomes a request, marked `malformed`: the bytes were sent all the same.
"""

from __future__ import annotations

from typing import Protocol

from agent.protocols.http import HttpRequest
from agent.protocols.http_body import BodyBudget, MessageBody
from agent.protocols.http_framing import MAX_FIELDS
from agent.protocols.http_syntax import tokens, valid_host

__all__ = ["MAX_HEADER_BLOCK", "H2Stream", "StreamOwner"]

MAX_HEADER_BLOCK = 256 * 1024    # one compressed header block (HEADERS + CONTINUATION payloads)
_PSEUDO = frozenset({":method", ":scheme", ":authority", ":path", ":protocol"})


class StreamOwner(Protocol):
    """What a stream needs of its connection."""

    budget: BodyBudget
    max_decompressed_bytes: int

    def anomaly(self, name: str, detail: str) -> None: ...

    def bad_host(self, value: str) -> None: ...


class H2Stream:
    """A request stream from its HEADERS to its END_STREAM (or reset, or the connection's end)."""

    __slots__ = ("body", "fields", "malformed", "pseudo", "sid", "size")

    def __init__(self, sid: int, decoded: list[tuple[str, str]], owner: StreamOwner) -> None:
        self.sid = sid
        self.pseudo: dict[str, str] = {}
        self.fields: list[tuple[str, str]] = []
        self.malformed = False
        self.body: MessageBody | None = None
        self.size = 0        # decoded bytes held, as RFC 7541 §4.1 counts them (32 per field for overhead)
        regular = False
        for name, value in decoded:
            if name.startswith(":"):
                if regular or name not in _PSEUDO or name in self.pseudo:
                    self.malformed = True
                    continue
                self.pseudo[name] = value
                self.size += len(name) + len(value) + 32
            else:
                regular = True
                self._add_field(name, value, owner)
        method = self.pseudo.get(":method")
        if method is None or (method != "CONNECT" and ":path" not in self.pseudo):
            self.malformed = True
        if self.malformed:
            owner.anomaly("malformed_headers", f"stream {sid}: pseudo-header fields out of RFC 9113 §8.3")

    def _add_field(self, name: str, value: str, owner: StreamOwner) -> None:
        if len(self.fields) >= MAX_FIELDS:
            owner.anomaly("too_many_fields", f"stream {self.sid}: more than {MAX_FIELDS}")
            return
        self.fields.append((name, value))
        self.size += len(name) + len(value) + 32

    def values(self, name: str) -> list[str]:
        return [v for n, v in self.fields if n.lower() == name]

    def trailers(self, decoded: list[tuple[str, str]], owner: StreamOwner) -> None:
        for name, value in decoded:
            if name.startswith(":"):
                self.malformed = True      # §8.1: trailers carry no pseudo-header fields
            else:
                self._add_field(name, value, owner)

    def add(self, chunk: bytes, owner: StreamOwner) -> None:
        if self.body is None:
            codings = tokens(self.values("content-encoding"))
            self.body = MessageBody(owner.budget, codings, owner.max_decompressed_bytes, owner.anomaly)
        self.body.add(chunk)

    def cut(self, owner: StreamOwner) -> None:
        """The stream ends before its END_STREAM: what it sent is kept, marked truncated."""
        if self.body is None:
            self.body = MessageBody(owner.budget, [], owner.max_decompressed_bytes, owner.anomaly)
        self.body.cut()

    def request(self, owner: StreamOwner) -> HttpRequest:
        body, truncated = b"", False
        if self.body is not None:
            body = self.body.finish(owner.anomaly, owner.max_decompressed_bytes)
            truncated = self.body.truncated
        method = self.pseudo.get(":method", "")
        authority = self.pseudo.get(":authority")
        target = self.pseudo.get(":path") or (authority if method == "CONNECT" else "") or ""
        content_type = next((v.strip(" \t") for v in self.values("content-type")), None)
        return HttpRequest(method=method, target=target, version="HTTP/2", host=self._host(owner),
                           headers=tuple(self.fields), content_type=content_type, body=body,
                           body_truncated=truncated, malformed=self.malformed)

    def _host(self, owner: StreamOwner) -> str | None:
        """:authority, else the Host field (§8.3.1: a client may send Host instead), lower-cased."""
        authority = self.pseudo.get(":authority")
        if authority is None:
            hosts = self.values("host")
            authority = hosts[0].strip(" \t") if hosts else None
        if not authority:
            return None
        host = authority.rsplit("@", 1)[-1].lower()
        if not valid_host(host):
            owner.bad_host(authority)
            return None
        return host

