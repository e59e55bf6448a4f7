"""The append-only audit log (DESIGN §9, §9.1): who changed what, when, in which area.

A row is written in the same DuckDB transaction as the change it records (a filing or list version, a
removed batch), so the log never claims a change that did not happen nor misses one that did. Nothing in
the service updates or deletes a row; `GET /v1/audit` reads them for a regulator's area.

Row schema (§9.1): {at, actor, role, ftz_area, enterprise_id, object, object_id, action, from, to, note};
`object` is one of finding | order | filing | list | batch | token.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import duckdb

__all__ = ["AUDIT_SCHEMA", "OBJECTS", "AuditEntry", "list_audit", "write_audit"]

OBJECTS = ("finding", "order", "filing", "list", "batch", "token")

# `at`, `from`, `to` are SQL keywords: stored as at_time/from_state/to_state, served under their §9.1 names.
AUDIT_SCHEMA = """
CREATE SEQUENCE IF NOT EXISTS audit_seq;
CREATE TABLE IF NOT EXISTS audit (
    seq BIGINT PRIMARY KEY DEFAULT nextval('audit_seq'), at_time TIMESTAMPTZ, actor VARCHAR, role VARCHAR,
    ftz_area VARCHAR, enterprise_id VARCHAR, object VARCHAR, object_id VARCHAR, action VARCHAR,
    from_state VARCHAR, to_state VARCHAR, note VARCHAR);
"""


@dataclass(frozen=True, slots=True)
class AuditEntry:
    actor: str                 # the token's name
    role: str
    ftz_area: str | None       # the area of the enterprise concerned (a regulator's own area for lists)
    enterprise_id: str | None
    object: str                # one of OBJECTS
    object_id: str
    action: str                # create | update | delete | …
    from_: str | None = None
    to: str | None = None
    note: str | None = None

    def __post_init__(self) -> None:
        if self.object not in OBJECTS:
            raise ValueError(f"audit object {self.object!r} is not one of {', '.join(OBJECTS)}")


def write_audit(cur: duckdb.DuckDBPyConnection, entry: AuditEntry, at: datetime | None = None) -> None:
    """Insert one row; the caller holds the transaction of the change it records."""
    cur.execute("INSERT INTO audit (at_time, actor, role, ftz_area, enterprise_id, object, object_id, "
                "action, from_state, to_state, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [at or datetime.now(UTC), entry.actor, entry.role, entry.ftz_area, entry.enterprise_id,
                 entry.object, entry.object_id, entry.action, entry.from_, entry.to, entry.note])


def list_audit(cur: duckdb.DuckDBPyConnection, ftz_area: str, *, limit: int = 100,
               before: int | None = None) -> list[dict[str, Any]]:
    """Rows of one area, newest first; `before` pages by sequence number."""
    sql = ("SELECT seq, at_time, actor, role, ftz_area, enterprise_id, object, object_id, action, "
           "from_state, to_state, note FROM audit WHERE ftz_area = ?")
    params: list[Any] = [ftz_area]
    if before is not None:
        sql += " AND seq < ?"
        params.append(before)
    rows = cur.execute(sql + " ORDER BY seq DESC LIMIT ?", [*params, limit]).fetchall()
    names = ("seq", "at", "actor", "role", "ftz_area", "enterprise_id", "object", "object_id", "action",
             "from", "to", "note")
    return [dict(zip(names, row, strict=True)) for row in rows]
