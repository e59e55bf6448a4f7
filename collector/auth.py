"""Bearer tokens and what each may reach (DESIGN §9).

A token is 32 random bytes, URL-safe base64; the config holds only its SHA-256. Comparison is by digest
lookup in a dict built once: the digest of a guessed token tells an attacker nothing about real ones, so
no constant-time compare is needed beyond that of the hash itself.

Roles: `agent` uploads for its own enterprise, as its own agent; `enterprise` reads and files for its own
enterprise; `regulator` reads and runs everything of the enterprises registered in its FTZ area. 401 when
the token is missing or unknown, 403 when a known token reaches for someone else's data.

Which area an enterprise is in comes only from the registry in collector.yaml (`enterprises:`), never from
a field of an uploaded filing or batch: an uploader cannot talk its way into another area.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Annotated

from fastapi import Depends, Header, Request

from collector.config import EnterpriseEntry, TokenEntry

__all__ = ["Auth", "AuthError", "Principal", "TokenBook", "new_token", "principal", "token_digest"]


class AuthError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


_NO_AREAS: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True, eq=False)
class Principal:
    name: str
    role: str
    enterprise_id: str | None
    ftz_area: str | None
    agent_id: str | None = None
    # The registry (enterprise id -> FTZ area) the access decisions read; shared by every principal.
    areas: Mapping[str, str] = field(default_factory=lambda: _NO_AREAS, repr=False)

    def require_role(self, *roles: str) -> None:
        if self.role not in roles:
            raise AuthError(403, "forbidden", f"token {self.name!r} (role {self.role}) may not do this; "
                            f"needs role {' or '.join(roles)}")

    def area_of(self, enterprise_id: str | None) -> str | None:
        """The registered FTZ area of `enterprise_id`, or None for an unregistered enterprise."""
        return self.areas.get(enterprise_id) if enterprise_id else None

    def may_access(self, enterprise_id: str | None) -> bool:
        """Whether this principal may see or change data of `enterprise_id` (by the registry's area)."""
        if not enterprise_id:
            return False
        if self.role == "regulator":
            area = self.area_of(enterprise_id)
            return area is not None and area == self.ftz_area
        return enterprise_id == self.enterprise_id

    def require_access(self, enterprise_id: str | None, what: str) -> None:
        if not self.may_access(enterprise_id):
            # Says nothing about where the other enterprise is: a 403 must not map the registry.
            scope = (f"enterprises of area {self.ftz_area}" if self.role == "regulator"
                     else f"enterprise {self.enterprise_id}")
            raise AuthError(403, "forbidden", f"{what}: token {self.name!r} is for {scope} only")


class TokenBook:
    def __init__(self, entries: Iterable[TokenEntry], enterprises: Iterable[EnterpriseEntry] = ()) -> None:
        areas = MappingProxyType({e.enterprise_id: str(e.ftz_area) for e in enterprises})
        self.areas = areas
        self._by_digest = {e.sha256: Principal(e.name, e.role, e.enterprise_id,
                                               str(e.ftz_area) if e.ftz_area else None, e.agent_id, areas)
                           for e in entries}

    def authenticate(self, authorization: str | None) -> Principal:
        if not authorization:
            raise AuthError(401, "unauthenticated", "missing Authorization: Bearer <token>")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError(401, "unauthenticated", "expected Authorization: Bearer <token>")
        principal = self._by_digest.get(token_digest(token.strip()))
        if principal is None:
            raise AuthError(401, "unauthenticated", "unknown token")
        return principal


def principal(request: Request, authorization: Annotated[str | None, Header()] = None) -> Principal:
    """The route dependency: the principal of the request's bearer token (401 without one)."""
    tokens: TokenBook = request.app.state.tokens
    return tokens.authenticate(authorization)


# What a route declares to get its caller; importable into route modules, where FastAPI resolves it.
Auth = Annotated[Principal, Depends(principal)]
