"""Uploaded batches: the agent's Arrow schema is the contract; the enterprise comes from the token."""

from __future__ import annotations

import dataclasses
import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from agent.records import Envelope, to_table
from collector.ingest import BatchError, parse_batch, row_keys
from collector.warehouse import BatchConflict, Warehouse

from .builders import detection, flow


def parquet(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def flows_table(enterprise: str | None = "hz-demo", ids: tuple[str, ...] = ("a", "b")) -> pa.Table:
    return to_table("flows", [flow(i) for i in ids], Envelope("gw-1", enterprise, "b1"))


def _retyped(table: pa.Table, name: str, typ: pa.DataType) -> pa.Table:
    i = table.schema.get_field_index(name)
    return table.set_column(i, pa.field(name, typ), table.column(name).cast(typ))


@pytest.mark.parametrize(("body", "batch_id", "record_type", "status", "field"), [
    (b"PAR1 but not really", "b1", "flows", 422, "body"),
    (parquet(flows_table()), None, "flows", 422, "header X-Batch-Id"),
    (parquet(flows_table()), "../../etc", "flows", 422, "header X-Batch-Id"),
    (parquet(flows_table()), "b1", "packets", 422, "header X-Record-Type"),
    (parquet(flows_table()), "b1", "detections", 422, "column field_type"),
    (parquet(flows_table().drop_columns(["bytes_out"])), "b1", "flows", 422, "column bytes_out"),
    (parquet(_retyped(flows_table(), "bytes_out", pa.string())), "b1", "flows", 422, "column bytes_out"),
    (parquet(flows_table().append_column("raw_body", pa.array(["x", "y"]))), "b1", "flows", 422,
     "column raw_body"),
    (parquet(flows_table(enterprise="someone-else")), "b1", "flows", 403, "column enterprise_id"),
    (parquet(to_table("flows", [flow("a")], Envelope("gw-2", "hz-demo", "b1"))), "b1", "flows", 403,
     "column agent_id"),
])
def test_a_refused_batch_names_the_header_or_column(body: bytes, batch_id: str | None, record_type: str,
                                                    status: int, field: str) -> None:
    with pytest.raises(BatchError) as err:
        parse_batch(body, batch_id, record_type, "hz-demo", "gw-1")
    assert (err.value.status, err.value.field) == (status, field)
    assert str(err.value).startswith(field.split()[-1]) or field.split()[0] in str(err.value)


@pytest.mark.parametrize("stamped", [None, "hz-demo"])
def test_rows_carry_the_tokens_enterprise(stamped: str | None) -> None:
    batch = parse_batch(parquet(flows_table(enterprise=stamped)), "b1", "flows", "hz-demo", "gw-1")
    assert set(batch.table.column("enterprise_id").to_pylist()) == {"hz-demo"}
    assert batch.agent_id == "gw-1" and batch.table.num_rows == 2


def test_detections_of_one_flow_share_the_flows_key() -> None:
    table = to_table("detections", [detection("a", "email"), detection("a", "mobile_cn"),
                                    detection("b", "email")], Envelope("gw-1", None, "b1"))
    batch = parse_batch(parquet(table), "b1", "detections", "hz-demo", "gw-1")
    assert row_keys(batch) == ["flow:a", "flow:a", "flow:b"]


def test_a_replayed_flow_is_stored_once_and_a_retried_batch_is_acknowledged(tmp_path) -> None:
    wh = Warehouse(tmp_path)

    def upload(ids: tuple[str, ...], batch_id: str):
        body = parquet(flows_table(ids=ids))
        return wh.store_batch(parse_batch(body, batch_id, "flows", "hz-demo", "gw-1"), "t")

    try:
        first = upload(("a", "b"), "b1")
        retry = upload(("a", "b"), "b1")
        replay = upload(("b", "c"), "b2")
        assert (first.created, first.stored_rows) == (True, 2)
        assert (retry.created, retry.stored_rows) == (False, 2)
        assert (replay.created, replay.rows, replay.stored_rows) == (True, 2, 1)
        assert wh.counts() == {"flows": 3}
        files = wh.record_files("hz-demo")["flows"]
        assert [p.name for p in files] == ["b1.parquet", "b2.parquet"]
        assert "enterprise_id=hz-demo" in str(files[0]) and "/date=" in str(files[0])
        assert pq.read_table(files[1]).column("flow_id").to_pylist() == ["c"]
        with pytest.raises(BatchConflict, match="other content"):
            upload(("z",), "b1")
    finally:
        wh.close()


def test_a_file_written_but_never_recorded_is_removed_on_open(tmp_path) -> None:
    orphan = tmp_path / "records" / "flows" / "enterprise_id=x" / "date=2026-01-01" / "lost.parquet"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(parquet(flows_table()))
    Warehouse(tmp_path).close()
    assert not orphan.exists()


def test_documents_get_a_new_version_only_when_they_change(tmp_path) -> None:
    wh = Warehouse(tmp_path)
    try:
        v1 = wh.put_document("filing", "F1", {"a": 1}, "e", "hangzhou", "t")
        same = wh.put_document("filing", "F1", {"a": 1}, "e", "hangzhou", "t")
        v2 = wh.put_document("filing", "F1", {"a": 2}, "e", "hangzhou", "t")
        assert (v1.version, v1.created, same.version, same.created, v2.version) == (1, True, 1, False, 2)
        assert wh.get_document("filing", "F1", 1).body == {"a": 1}
        assert wh.get_document("filing", "F1").body == {"a": 2}
        assert wh.get_document("filing", "F2") is None
    finally:
        wh.close()


def test_key_paths_holding_values_are_redacted_on_ingest_whatever_the_agent_sent() -> None:
    raw = ["$.byPhone.138-1234-5678.idNo", "$.张三.mobile", "$.cards['6222 0212 3456 7890'].xm",
           "$.orders[*].receiver.idNo"]
    row = dataclasses.replace(detection("a", "resident_id_cn"), key_paths=tuple(raw))
    table = to_table("detections", [row], Envelope("gw-1", None, "b1"))
    batch = parse_batch(parquet(table), "b1", "detections", "hz-demo", "gw-1")
    (stored,) = batch.table.column("key_paths").to_pylist()
    assert stored == ["$.byPhone.<value>.idNo", "$.<value>.mobile", "$.cards.<value>.xm",
                      "$.orders[*].receiver.idNo"]


def test_rows_without_a_flow_are_kept_once_by_their_content() -> None:
    from agent.records import AnomalyRecord, CaptureStatsRecord

    anomalies = [AnomalyRecord(None, "link", "truncated_capture", "at 120"),
                 AnomalyRecord(None, "link", "truncated_capture", "at 121"),
                 AnomalyRecord("f1", "http", "bad_header", "digits(11)")]
    batch = parse_batch(parquet(to_table("anomalies", anomalies, Envelope("gw-1", None, "b1"))), "b1",
                        "anomalies", "hz-demo", "gw-1")
    keys = row_keys(batch)
    assert keys[2] == "flow:f1" and keys[0].startswith("row:") and keys[0] != keys[1]
    again = parse_batch(parquet(to_table("anomalies", anomalies, Envelope("gw-1", None, "b2"))), "b2",
                        "anomalies", "hz-demo", "gw-1")
    assert row_keys(again) == keys            # the batch id is not part of a row's identity
    from datetime import UTC, datetime

    fields = {f.name: 0 for f in dataclasses.fields(CaptureStatsRecord)}
    stats = [CaptureStatsRecord(**{**fields, "ts": datetime(2026, 3, 1, tzinfo=UTC), "source": "eth1"})]
    (key,) = row_keys(parse_batch(parquet(to_table("capture_stats", stats, Envelope("gw-1", None, "b3"))),
                                  "b3", "capture_stats", "hz-demo", "gw-1"))
    assert key.startswith("row:")
