"""One uploaded batch -> validated Arrow rows, ready to store (DESIGN §3, §9 `POST /v1/batches`).

The agent's Arrow schema per record type is the contract: a batch must have exactly its columns with their
types (nullability aside), or it is refused with the column named. Rows are stamped with the uploading
token's enterprise when the agent left `enterprise_id` empty, and refused when they name another one.

Replays: flow ids are deterministic (agent id, 5-tuple, first-packet time; agent/flows.py), so a capture
shipped twice yields the same (agent_id, flow_id) pairs. `row_keys` gives each row the key under which the
store keeps it once: the flow for flow-scoped rows, a digest of the row for the rest (anomalies without a
flow, capture_stats).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from agent.records import RECORD_TYPES, SCHEMA_VERSION
from collector.errors import RequestProblem

__all__ = ["BATCH_ID_RE", "Batch", "BatchError", "parse_batch", "row_keys"]

BATCH_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class BatchError(RequestProblem):
    """A batch the collector refuses (403 other enterprise, 422 wrong schema or headers)."""


@dataclass(frozen=True, slots=True)
class Batch:
    batch_id: str
    record_type: str
    agent_id: str
    enterprise_id: str
    table: pa.Table
    sha256: str


def _check_schema(table: pa.Table, record_type: str) -> pa.Table:
    expected: pa.Schema = RECORD_TYPES[record_type][1]
    have = {f.name: f for f in table.schema}
    for field in expected:
        got = have.get(field.name)
        if got is None:
            raise BatchError(422, f"column {field.name}",
                             f"column {field.name}: missing (is this a {record_type} batch?)")
        if not got.type.equals(field.type):
            raise BatchError(422, f"column {field.name}",
                             f"column {field.name}: expected {field.type}, got {got.type}")
    extra = [name for name in have if expected.get_field_index(name) < 0]
    if extra:
        raise BatchError(422, f"column {extra[0]}",
                         f"column {extra[0]}: not a column of {record_type} (wrong X-Record-Type?)")
    for field in expected:
        if not field.nullable and table.column(field.name).null_count:
            raise BatchError(422, f"column {field.name}", f"column {field.name}: null in a required column")
    return table.select(expected.names).cast(expected)


def parse_batch(body: bytes, batch_id: str | None, record_type: str | None, enterprise_id: str) -> Batch:
    if not batch_id or not BATCH_ID_RE.match(batch_id):
        raise BatchError(422, "header X-Batch-Id",
                         "header X-Batch-Id: missing or not 1-128 of [A-Za-z0-9_.-]")
    if record_type not in RECORD_TYPES:
        raise BatchError(422, "header X-Record-Type",
                         f"header X-Record-Type: {record_type!r} is not one of {', '.join(RECORD_TYPES)}")
    try:
        table = pq.read_table(pa.BufferReader(body))
    except (pa.ArrowException, OSError, ValueError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise BatchError(422, "body", f"body: not a readable Parquet file ({first})") from None
    table = _check_schema(table, record_type)
    versions = set(pc.unique(table.column("schema_version")).to_pylist())
    if versions - {SCHEMA_VERSION}:
        raise BatchError(422, "column schema_version",
                         f"column schema_version: {sorted(versions)} not supported (this collector reads "
                         f"{SCHEMA_VERSION})")
    agents = pc.unique(table.column("agent_id")).to_pylist()
    if len(agents) > 1:
        raise BatchError(422, "column agent_id", "column agent_id: one batch must come from one agent")
    stamped = set(pc.unique(table.column("enterprise_id")).to_pylist()) - {None}
    if stamped - {enterprise_id}:
        raise BatchError(403, "column enterprise_id",
                         f"column enterprise_id: rows for {', '.join(sorted(stamped - {enterprise_id}))}; "
                         f"this token uploads for {enterprise_id}")
    table = table.set_column(table.schema.get_field_index("enterprise_id"), "enterprise_id",
                             pa.array([enterprise_id] * table.num_rows, pa.string()))
    agent_id = agents[0] if agents else ""
    return Batch(batch_id, record_type, agent_id, enterprise_id, table, hashlib.sha256(body).hexdigest())


def row_keys(batch: Batch) -> list[str]:
    """The dedup key of each row within its record type and agent (see the module docstring)."""
    if batch.record_type not in ("anomalies", "capture_stats"):
        return [f"flow:{f}" for f in batch.table.column("flow_id").to_pylist()]
    keys = []
    content = batch.table.drop_columns(["batch_id"]).to_pylist()
    for row in content:
        if row.get("flow_id") is not None:
            keys.append(f"flow:{row['flow_id']}")
        else:
            digest = hashlib.blake2b(repr(sorted(row.items())).encode(), digest_size=16).hexdigest()
            keys.append(f"row:{digest}")
    return keys
