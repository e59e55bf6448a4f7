"""One uploaded batch -> validated Arrow rows, ready to store (DESIGN §3, §9 `POST /v1/batches`).

The agent's Arrow schema per record type is the contract: a batch must have exactly its columns with their
types (nullability aside), or it is refused with the column named. Rows are stamped with the uploading
token's enterprise and agent; a row naming another enterprise or agent is refused (403).

Replays: flow ids are deterministic (agent id, 5-tuple, first-packet time; agent/flows.py), so a capture
shipped twice yields the same (agent_id, flow_id) pairs. `row_keys` gives each row the key under which the
store keeps it once: the flow for flow-scoped rows, a digest of the row for the rest (anomalies without a
flow, capture_stats).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from agent.records import ADDED_COLUMNS, RECORD_TYPES, SCHEMA_VERSION
from collector.batchread import read_batch_table
from collector.columns import check_columns
from collector.config import Limits
from collector.errors import RequestProblem, shown
from collector.models import known_field_types
from detectors.keypath import redact_key_path
from detectors.samples import safe_sample

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
    keys: pa.Array          # row_key of each row (strings), computed before the warehouse's lock


def _older_columns(table: pa.Table, record_type: str) -> dict[str, str]:
    """A batch of an earlier schema version lacks the columns added since; they take their documented
    values (DESIGN §3, agent/records.py ADDED_COLUMNS), so that agents in the field can be upgraded one by
    one. Column -> its SQL expression, for the added columns this batch may lack: every row is older than
    the column. A batch that claims a version with the column and lacks it is refused by the schema check."""
    i = table.schema.get_field_index("schema_version")
    if i < 0 or not pa.types.is_integer(table.schema.field(i).type):
        return {}        # the schema check names the column
    versions = pc.unique(table.column("schema_version")).to_pylist()
    return {column: sql for column, (since, sql) in ADDED_COLUMNS.get(record_type, {}).items()
            if column not in table.column_names and versions
            and all(v is not None and v < since for v in versions)}


def _derived(table: pa.Table, columns: dict[str, str]) -> pa.Table:
    """`table` with the older batch's missing columns computed from its own (already type-checked)
    columns, by the same SQL the store uses over stored files."""
    if not columns:
        return table
    con = duckdb.connect()
    try:
        con.register("t", table)
        select = ", ".join(f"CAST({sql} AS VARCHAR) AS {name}" for name, sql in columns.items())
        values = con.sql(f"SELECT {select} FROM t").to_arrow_table()
    finally:
        con.close()
    for name in columns:
        table = table.append_column(name, values.column(name).cast(pa.string()))
    return table


def _check_schema(table: pa.Table, record_type: str) -> pa.Table:
    expected: pa.Schema = RECORD_TYPES[record_type][1]
    older = _older_columns(table, record_type)
    have = {f.name: f for f in table.schema}
    for field in expected:
        got = have.get(field.name)
        if got is None:
            if field.name in older:
                continue
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
        if not field.nullable and field.name in have and table.column(field.name).null_count:
            raise BatchError(422, f"column {field.name}", f"column {field.name}: null in a required column")
    table = _derived(table, older)
    return table.select(expected.names).cast(expected)


def parse_batch(body: bytes, batch_id: str | None, record_type: str | None, enterprise_id: str,
                agent_id: str, *, limits: Limits = Limits()) -> Batch:
    """Validate one upload of the token for (`enterprise_id`, `agent_id`): rows claiming another agent or
    enterprise are refused (403), so no token can store rows under another tenant's identity."""
    if not batch_id or not BATCH_ID_RE.match(batch_id):
        raise BatchError(422, "header X-Batch-Id",
                         "header X-Batch-Id: missing or not 1-128 of [A-Za-z0-9_.-]")
    if record_type not in RECORD_TYPES:
        raise BatchError(422, "header X-Record-Type",
                         f"header X-Record-Type: {shown(record_type)} is not one of "
                         f"{', '.join(RECORD_TYPES)}")
    try:   # decoded in a worker process within `limits`: the file's own metadata may lie (DESIGN §9)
        table = read_batch_table(body, limits)
    except RequestProblem as e:
        raise BatchError(e.status, e.field, str(e)) from None
    table = _check_schema(table, record_type)
    try:
        table = check_columns(table, known_field_types())
    except RequestProblem as e:
        raise BatchError(e.status, e.field, str(e)) from None
    versions = set(pc.unique(table.column("schema_version")).to_pylist())
    if versions - set(range(1, SCHEMA_VERSION + 1)):
        raise BatchError(422, "column schema_version",
                         f"column schema_version: {sorted(versions)} not supported (this collector reads "
                         f"1 to {SCHEMA_VERSION})")
    # The enterprise first: a row for another tenant is the graver claim.
    for column, own in (("enterprise_id", enterprise_id), ("agent_id", agent_id)):
        claimed = set(pc.unique(table.column(column)).to_pylist()) - {None, ""}
        if claimed - {own}:
            raise BatchError(403, f"column {column}",
                             f"column {column}: rows claim {_shown_few(claimed - {own})}; "
                             f"this token uploads as {column.removesuffix('_id')} {own}")
    for column, value in (("enterprise_id", enterprise_id), ("agent_id", agent_id)):
        # pa.repeat, not a list of num_rows strings: 2 ms per column of a 100,000-row batch.
        table = table.set_column(table.schema.get_field_index(column), column,
                                 pa.repeat(pa.scalar(value, pa.string()), table.num_rows))
    if record_type == "detections":
        table = _redacted_detections(table)
    return Batch(batch_id, record_type, agent_id, enterprise_id, table, hashlib.sha256(body).hexdigest(),
                 _row_keys(table, record_type))


# DESIGN §3: a detection row carries up to 5 example key paths and up to 3 masked samples.
LIST_CAPS = {"key_paths": 5, "masked_samples": 3}
# Distinct key paths one batch may bring: each is redacted in this process (~7 µs); an agent's batch holds
# a few thousand (paths repeat across records), a hostile one a million (seconds of the service's CPU).
MAX_DISTINCT_KEY_PATHS = 50_000


def _redacted_detections(table: pa.Table) -> pa.Table:
    """Defence in depth (DESIGN §3): key paths through the agent's own redaction again and masked samples
    through the sample check, so an old or hostile agent cannot put a raw value (a key that is a phone
    number or a name, an unmasked sample) into a stored record, a report or the console. Each distinct
    value is judged once; rows over the per-row caps are refused, which bounds the work per batch."""
    for name, cap in LIST_CAPS.items():
        longest = pc.max(pc.list_value_length(table.column(name))).as_py() or 0
        if longest > cap:
            raise BatchError(422, f"column {name}",
                             f"column {name}: {longest} values in one row; at most {cap} (DESIGN §3)")
    table = _map_list_values(table, "key_paths", redact_key_path, MAX_DISTINCT_KEY_PATHS)
    return _map_list_values(table, "masked_samples", safe_sample)


def _map_list_values(table: pa.Table, name: str, fn: Callable[[str], str],
                     max_distinct: int | None = None) -> pa.Table:
    """`fn` over each distinct value of a list<string> column (refused past `max_distinct` of them)."""
    i = table.schema.get_field_index(name)
    column = table.column(i).combine_chunks()
    flat = column.flatten()                       # the values the rows reach, offsets respected
    distinct = pc.unique(flat)
    if max_distinct is not None and len(distinct) > max_distinct:
        raise BatchError(413, f"column {name}", f"column {name}: {len(distinct)} distinct values in one "
                         f"batch; at most {max_distinct}")
    mapped = pa.array([None if v is None else fn(v) for v in distinct.to_pylist()], pa.string())
    if mapped.equals(distinct):
        return table
    values = pc.take(mapped, pc.index_in(flat, value_set=distinct))
    offsets = pc.subtract(column.offsets, column.offsets[0])
    rebuilt = pa.ListArray.from_arrays(offsets, values, type=column.type, mask=column.is_null())
    return table.set_column(i, table.schema.field(i), rebuilt)


def _shown_few(values: set[str]) -> str:
    """Uploader-chosen strings in an error: a few, each cut short by `errors.shown`."""
    listed = ", ".join(shown(v, 40) for v in sorted(values)[:3])
    return listed + (f" and {len(values) - 3} more" if len(values) > 3 else "")


def row_keys(batch: Batch) -> list[str]:
    """The dedup key of each row within its enterprise, record type and agent (module docstring)."""
    return [str(k) for k in batch.keys.to_pylist()]


def _row_keys(table: pa.Table, record_type: str) -> pa.Array:
    """`flow:<flow_id>` for flow-scoped rows; for rows without a flow (anomalies of the capture,
    capture_stats) `row:` + MD5 of the row as JSON. Vectorised (DuckDB over the Arrow table): a Python loop
    over 200,000 rows held 1.7 GB and the warehouse's lock for seconds."""
    has_flow = "flow_id" in table.column_names          # capture_stats rows belong to no flow
    flow_id = table.column("flow_id") if has_flow else pa.nulls(table.num_rows, pa.string())
    by_flow = pc.binary_join_element_wise("flow:", flow_id, "")
    if has_flow and (record_type not in ("anomalies", "capture_stats") or flow_id.null_count == 0):
        return by_flow.combine_chunks() if isinstance(by_flow, pa.ChunkedArray) else by_flow
    con = duckdb.connect()
    try:
        con.register("t", table.drop_columns(["batch_id"]))
        digests = con.sql("SELECT 'row:' || md5(to_json(t)) AS k FROM t").to_arrow_table().column("k")
    finally:
        con.close()
    return pc.if_else(pc.is_null(flow_id), digests, by_flow).combine_chunks()
