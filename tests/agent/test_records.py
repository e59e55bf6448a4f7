"""The record dataclasses and their Arrow schemas are one contract (DESIGN §3)."""

from __future__ import annotations

import dataclasses
import typing
from datetime import UTC, datetime

import pyarrow as pa
import pytest

from agent import records
from agent.records import ENVELOPE, RECORD_TYPES, Envelope, to_table

PY_TO_ARROW = {
    str: {pa.string()},
    int: {pa.int32(), pa.int64()},
    float: {pa.float64()},
    bool: {pa.bool_()},
    datetime: {records.TS},
    tuple[str, ...]: {pa.list_(pa.string())},
}

DESIGN_COLUMNS = {
    "flows": ["flow_id", "ts_start", "ts_end", "src_ip", "dst_ip", "src_port", "dst_port", "transport", "app",
              "server_name", "dst_country", "cross_border", "bytes_out", "bytes_in", "packets_out",
              "packets_in", "missed_bytes", "encrypted", "inspected", "sample_weight", "requests"],
    "detections": ["flow_id", "field_type", "sensitive", "important_subcategory", "occurrences", "key_paths",
                   "confidence", "masked_samples"],
    "pi_values": ["flow_id", "record_key", "field_type", "value_key", "identifier", "sensitive"],
    "anomalies": ["flow_id", "layer", "name", "detail"],
}


def _unwrap(tp: object) -> tuple[object, bool]:
    args = typing.get_args(tp)
    if type(None) in args:
        (inner,) = [a for a in args if a is not type(None)]
        return inner, True
    return tp, False


@pytest.mark.parametrize("record_type", sorted(RECORD_TYPES))
def test_dataclass_fields_equal_schema_columns_after_the_envelope(record_type: str) -> None:
    cls, schema = RECORD_TYPES[record_type]
    assert [f.name for f in schema][: len(ENVELOPE)] == [f.name for f in ENVELOPE]
    assert [f.name for f in dataclasses.fields(cls)] == [f.name for f in schema][len(ENVELOPE):]


@pytest.mark.parametrize("record_type", sorted(RECORD_TYPES))
def test_dataclass_types_and_nullability_match_the_schema(record_type: str) -> None:
    cls, schema = RECORD_TYPES[record_type]
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        py, optional = _unwrap(hints[f.name])
        column = schema.field(f.name)
        assert column.type in PY_TO_ARROW[py], f"{record_type}.{f.name}: {py} vs {column.type}"
        assert column.nullable == optional, f"{record_type}.{f.name}: nullability differs"


@pytest.mark.parametrize("record_type", sorted(DESIGN_COLUMNS))
def test_every_column_named_in_the_design_is_in_the_schema(record_type: str) -> None:
    names = set(RECORD_TYPES[record_type][1].names)
    assert set(DESIGN_COLUMNS[record_type]) <= names
    assert {"schema_version", "agent_id", "enterprise_id", "batch_id"} <= names


def test_to_table_stamps_the_envelope_on_every_row() -> None:
    t0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
    row = records.DetectionRecord("f1", "mobile_cn", False, None, 3, ("$.a",), 0.9, ("138****0000",))
    table = to_table("detections", [row, row], Envelope("gw-1", "hz-demo", "b1"))
    assert table.schema == records.DETECTIONS_SCHEMA
    assert table.column("agent_id").to_pylist() == ["gw-1", "gw-1"]
    assert table.column("batch_id").to_pylist() == ["b1", "b1"]
    assert table.column("key_paths").to_pylist() == [["$.a"], ["$.a"]]
    flows = to_table("flows", [records.FlowRecord(
        "f1", t0, t0, "10.0.0.1", "203.116.1.1", 50000, 443, "tcp", "tls", "x.example", "SG", True,
        10, 20, 1, 2, 0, True, False, 1.0, 0)], Envelope("gw-1", None, "b2"))
    assert flows.column("ts_start").to_pylist() == [t0]
    assert flows.column("enterprise_id").to_pylist() == [None]
