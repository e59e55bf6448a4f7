"""Record types the agent writes: frozen dataclasses and the Arrow schema of each (DESIGN §3).

The schemas are the on-disk contract between agent and collector. Every row also carries
`schema_version`, `agent_id`, `enterprise_id` and `batch_id`, added by the spool when a batch is written,
so the dataclasses hold only what a pipeline stage knows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import attrgetter

import pyarrow as pa

# 2: flows.initiator (a version-1 flow was initiated by its internal side)
# 3: flows.visibility, alpn, uninspected_reason (coverage; agent/coverage.py has the vocabularies)
# 4: flows.dst_ip_source (content handed over by a proxy or a browser: where dst_ip came from)
# 5: pi_values.key_id (which deployment key hashed the values: persons are joined within one key)
SCHEMA_VERSION = 5

# flows.dst_ip_source: where dst_ip came from (schema 4; agent/handover.py).
DST_IP_SOURCES = ("wire", "proxy", "browser", "resolved", "unknown")

TS = pa.timestamp("us", tz="UTC")

# Columns every batch carries; filled by the spool, not by the stages.
ENVELOPE = [
    pa.field("schema_version", pa.int32(), nullable=False),
    pa.field("agent_id", pa.string(), nullable=False),
    pa.field("enterprise_id", pa.string()),
    pa.field("batch_id", pa.string(), nullable=False),
]


@dataclass(frozen=True, slots=True)
class FlowRecord:
    flow_id: str
    ts_start: datetime
    ts_end: datetime
    src_ip: str
    dst_ip: str
    src_port: int
    dst_port: int
    transport: str
    app: str
    server_name: str | None
    dst_country: str | None
    cross_border: bool
    bytes_out: int
    bytes_in: int
    packets_out: int
    packets_in: int
    missed_bytes: int
    encrypted: bool
    inspected: bool
    sample_weight: float
    requests: int
    # "internal": src opened the flow (a push); "external": the external peer dst did (a pull, DESIGN §3).
    initiator: str = "internal"
    # What the agent could read (agent/coverage.py: plaintext | decrypted | proxy | har | encrypted | none),
    # the ALPN protocol when known, and why the detectors saw nothing (None when the flow was inspected).
    visibility: str = "none"
    alpn: str | None = None
    uninspected_reason: str | None = None
    # Where dst_ip came from: "wire" (the capture), "proxy" (ICAP), "browser" (a HAR's serverIPAddress),
    # "resolved" (the agent resolved server_name), "unknown" (dst_ip is 0.0.0.0). agent/handover.py.
    dst_ip_source: str = "wire"


@dataclass(frozen=True, slots=True)
class DetectionRecord:
    flow_id: str
    field_type: str
    sensitive: bool
    important_subcategory: str | None
    occurrences: int
    key_paths: tuple[str, ...]
    confidence: float
    masked_samples: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PiValueRecord:
    flow_id: str
    record_key: int
    field_type: str
    value_key: int
    # The deployment key's id (detectors/subjects.key_id), where DESIGN §3 lists it; keyword-only, so the
    # positional fields keep their places. None: a row of no known key (every row before version 5).
    key_id: str | None = field(default=None, kw_only=True)
    identifier: bool
    sensitive: bool


@dataclass(frozen=True, slots=True)
class AnomalyRecord:
    flow_id: str | None
    layer: str
    name: str
    detail: str
    ts: datetime | None = None


@dataclass(frozen=True, slots=True)
class CaptureStatsRecord:
    """What the capture saw and what it could not look at, per interval (Zeek's capture_loss.log and
    stats.log in one row): the numbers that say how far the other records can be trusted."""

    ts: datetime                    # end of the interval
    interval_s: float
    source: str                     # the interface, or "pcap" for capture files
    packets_received: int           # frames the agent read
    packets_kernel_dropped: int     # the kernel's count of frames it could not hand over (PACKET_STATISTICS)
    packets_undecoded: int          # frames the agent read but could not use (not IP, malformed)
    flows_active: int               # open flows at the end of the interval
    flows_ended: int
    flows_evicted: int              # closed early because max_flows was reached
    spool_rows_dropped: int         # rows not written because the spool was full (spool_max_bytes)


def _schema(fields: list[pa.Field]) -> pa.Schema:
    return pa.schema([*ENVELOPE, *fields])


FLOWS_SCHEMA = _schema([
    pa.field("flow_id", pa.string(), nullable=False),
    pa.field("ts_start", TS, nullable=False),
    pa.field("ts_end", TS, nullable=False),
    pa.field("src_ip", pa.string(), nullable=False),
    pa.field("dst_ip", pa.string(), nullable=False),
    pa.field("src_port", pa.int32(), nullable=False),
    pa.field("dst_port", pa.int32(), nullable=False),
    pa.field("transport", pa.string(), nullable=False),
    pa.field("app", pa.string(), nullable=False),
    pa.field("server_name", pa.string()),
    pa.field("dst_country", pa.string()),
    pa.field("cross_border", pa.bool_(), nullable=False),
    pa.field("bytes_out", pa.int64(), nullable=False),
    pa.field("bytes_in", pa.int64(), nullable=False),
    pa.field("packets_out", pa.int64(), nullable=False),
    pa.field("packets_in", pa.int64(), nullable=False),
    pa.field("missed_bytes", pa.int64(), nullable=False),
    pa.field("encrypted", pa.bool_(), nullable=False),
    pa.field("inspected", pa.bool_(), nullable=False),
    pa.field("sample_weight", pa.float64(), nullable=False),
    pa.field("requests", pa.int32(), nullable=False),
    pa.field("initiator", pa.string(), nullable=False),
    pa.field("visibility", pa.string(), nullable=False),
    pa.field("alpn", pa.string()),
    pa.field("uninspected_reason", pa.string()),
    pa.field("dst_ip_source", pa.string(), nullable=False),
])

DETECTIONS_SCHEMA = _schema([
    pa.field("flow_id", pa.string(), nullable=False),
    pa.field("field_type", pa.string(), nullable=False),
    pa.field("sensitive", pa.bool_(), nullable=False),
    pa.field("important_subcategory", pa.string()),
    pa.field("occurrences", pa.int64(), nullable=False),
    pa.field("key_paths", pa.list_(pa.string()), nullable=False),
    pa.field("confidence", pa.float64(), nullable=False),
    pa.field("masked_samples", pa.list_(pa.string()), nullable=False),
])

PI_VALUES_SCHEMA = _schema([
    pa.field("flow_id", pa.string(), nullable=False),
    pa.field("record_key", pa.int64(), nullable=False),
    pa.field("field_type", pa.string(), nullable=False),
    pa.field("value_key", pa.int64(), nullable=False),
    pa.field("key_id", pa.string()),
    pa.field("identifier", pa.bool_(), nullable=False),
    pa.field("sensitive", pa.bool_(), nullable=False),
])

ANOMALIES_SCHEMA = _schema([
    pa.field("flow_id", pa.string()),
    pa.field("layer", pa.string(), nullable=False),
    pa.field("name", pa.string(), nullable=False),
    pa.field("detail", pa.string(), nullable=False),
    pa.field("ts", TS),
])

CAPTURE_STATS_SCHEMA = _schema([
    pa.field("ts", TS, nullable=False),
    pa.field("interval_s", pa.float64(), nullable=False),
    pa.field("source", pa.string(), nullable=False),
    pa.field("packets_received", pa.int64(), nullable=False),
    pa.field("packets_kernel_dropped", pa.int64(), nullable=False),
    pa.field("packets_undecoded", pa.int64(), nullable=False),
    pa.field("flows_active", pa.int64(), nullable=False),
    pa.field("flows_ended", pa.int64(), nullable=False),
    pa.field("flows_evicted", pa.int64(), nullable=False),
    pa.field("spool_rows_dropped", pa.int64(), nullable=False),
])

# Columns added after version 1 (DESIGN §3: a batch of an earlier version is read with the documented
# value): record type -> column -> (the schema_version that added it, the value earlier rows take as a
# DuckDB SQL expression over the row's own columns of that version; a literal for a constant). The
# collector evaluates them on upload (collector/ingest.py) and over stored files (collector/store.py).
ADDED_COLUMNS: dict[str, dict[str, tuple[int, str]]] = {
    "flows": {
        "initiator": (2, "'internal'"),     # before version 2 the agent inspected pushes only
        # Before version 3 the agent parsed HTTP/1.x and DNS in the clear and opened no TLS or QUIC.
        "visibility": (3, "CASE WHEN inspected OR (NOT encrypted AND app IN ('http', 'dns')) "
                          "THEN 'plaintext' WHEN encrypted THEN 'encrypted' ELSE 'none' END"),
        "alpn": (3, "CAST(NULL AS VARCHAR)"),
        # As far as the old columns tell (agent/coverage.py): a plaintext flow not inspected under sampling
        # (sample_weight > 1) was not sampled or carried no body, which they do not say: NULL.
        "uninspected_reason": (3, "CASE WHEN inspected OR NOT cross_border OR bytes_out + bytes_in = 0 "
                                  "THEN NULL "
                                  "WHEN encrypted THEN 'no_secrets' "
                                  "WHEN missed_bytes > 0 THEN 'capture_gap' "
                                  "WHEN app NOT IN ('http', 'dns') THEN 'unknown_protocol' "
                                  "ELSE NULL END"),
        "dst_ip_source": (4, "'wire'"),    # before version 4 every flow came off the wire
    },
    "pi_values": {
        # Before version 5 no row named its key: the collector treats NULL as one unnamed key.
        "key_id": (5, "CAST(NULL AS VARCHAR)"),
    },
}

# Record type name (as in X-Record-Type and the spool folder names) -> (dataclass, schema).
RECORD_TYPES: dict[str, tuple[type, pa.Schema]] = {
    "flows": (FlowRecord, FLOWS_SCHEMA),
    "detections": (DetectionRecord, DETECTIONS_SCHEMA),
    "pi_values": (PiValueRecord, PI_VALUES_SCHEMA),
    "anomalies": (AnomalyRecord, ANOMALIES_SCHEMA),
    "capture_stats": (CaptureStatsRecord, CAPTURE_STATS_SCHEMA),
}


@dataclass(frozen=True, slots=True)
class Envelope:
    """What the spool stamps on every row of a batch."""

    agent_id: str
    enterprise_id: str | None
    batch_id: str


def utc(ts: float) -> datetime:
    """A capture timestamp (seconds since the epoch) as an aware UTC datetime."""
    return datetime.fromtimestamp(ts, tz=UTC)


def to_table(record_type: str, rows: Sequence[object] | Iterable[object], env: Envelope) -> pa.Table:
    """Build the Arrow table of one batch; the schema, not the rows, decides the column order."""
    cls, schema = RECORD_TYPES[record_type]
    rows = list(rows)
    n = len(rows)
    columns: dict[str, list] = {}
    # Column by column with one comprehension each: a batch can hold 50k rows, and a per-cell loop with
    # type checks cost more than the Parquet write itself.
    for f in dataclasses.fields(cls):
        get = attrgetter(f.name)
        if pa.types.is_list(schema.field(f.name).type):
            columns[f.name] = [list(get(r)) for r in rows]
        else:
            columns[f.name] = [get(r) for r in rows]
    columns["schema_version"] = [SCHEMA_VERSION] * n
    columns["agent_id"] = [env.agent_id] * n
    columns["enterprise_id"] = [env.enterprise_id] * n
    columns["batch_id"] = [env.batch_id] * n
    return pa.table({f.name: pa.array(columns[f.name], type=f.type) for f in schema}, schema=schema)
