"""Bearer tokens and what each may reach (DESIGN §9).

A token is 32 random bytes, URL-safe base64; the config holds only its SHA-256. Comparison is by digest
lookup in a dict built once: the digest of a guessed token tells an attacker nothing about real ones, so
no constant-time compare is needed beyond that of the hash itself.

Roles: `agent` uploads for its own enterprise; `enterprise` reads and files for its own enterprise;
`regulator` reads and runs everything in its FTZ area. 401 when the token is missing or unknown, 403 when a
known token reaches for someone else's data.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from collector.config import TokenEntry

__all__ = ["AuthError", "Principal", "TokenBook", "new_token", "token_digest"]


class AuthError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    role: str
    enterprise_id: str | None
    ftz_area: str | None

    def require_role(self, *roles: str) -> None:
        if self.role not in roles:
            raise AuthError(403, "forbidden", f"token {self.name!r} (role {self.role}) may not do this; "
                            f"needs role {' or '.join(roles)}")

    def may_access(self, enterprise_id: str, ftz_area: str | None) -> bool:
        """Whether this principal may see or change data of `enterprise_id` located in `ftz_area`."""
        if self.role == "regulator":
            return ftz_area is not None and ftz_area == self.ftz_area
        return enterprise_id == self.enterprise_id

    def require_access(self, enterprise_id: str, ftz_area: str | None, what: str) -> None:
        if not self.may_access(enterprise_id, ftz_area):
            scope = (f"area {self.ftz_area}" if self.role == "regulator"
                     else f"enterprise {self.enterprise_id}")
            where = f" in area {ftz_area}" if ftz_area else ""
            raise AuthError(403, "forbidden", f"{what} belongs to enterprise {enterprise_id}{where}; "
                            f"token {self.name!r} is for {scope}")


class TokenBook:
    def __init__(self, entries: Iterable[TokenEntry]) -> None:
        self._by_digest = {e.sha256: Principal(e.name, e.role, e.enterprise_id,
                                               str(e.ftz_area) if e.ftz_area else None) for e in entries}

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
