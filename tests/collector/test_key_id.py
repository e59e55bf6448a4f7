"""Records schema 5: `pi_values.key_id` names the deployment key that hashed a row's value (DESIGN §3).
Batches and spools of earlier agents carry no key_id and read as NULL (one unnamed key); a value that is not
8 lower hex digits — a longer digest, the key itself — is refused naming the column."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from agent.records import Envelope, to_table
from collector.ingest import BatchError, parse_batch
from collector.store import Store
from collector.warehouse import Warehouse

from .builders import pi

KEY = b"collector-key-id-test-key-000000"
KEY_ID = hashlib.sha256(KEY).hexdigest()[:8]


def _parquet(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def _pi_values(key_id: str | None, batch: str = "b1", flow_id: str = "f1") -> pa.Table:
    rows = [pi(flow_id, 1, "mobile_cn", 11, identifier=True, key_id=key_id),
            pi(flow_id, 1, "person_name", 12, key_id=key_id)]
    return to_table("pi_values", rows, Envelope("gw-1", "hz-demo", batch))


def _version_4(table: pa.Table) -> pa.Table:
    table = table.drop_columns(["key_id"])
    i = table.schema.get_field_index("schema_version")
    return table.set_column(i, table.schema.field(i), pa.array([4] * table.num_rows, pa.int32()))


def _key_ids(table: pa.Table) -> list[str | None]:
    return table.column("key_id").to_pylist()


def test_a_key_id_is_stored_as_sent() -> None:
    batch = parse_batch(_parquet(_pi_values(KEY_ID)), "b1", "pi_values", "hz-demo", "gw-1")
    assert _key_ids(batch.table) == [KEY_ID, KEY_ID]


def test_an_upload_from_an_agent_before_the_column_reads_as_no_known_key() -> None:
    batch = parse_batch(_parquet(_version_4(_pi_values(None))), "b1", "pi_values", "hz-demo", "gw-1")
    assert _key_ids(batch.table) == [None, None]
    assert batch.table.schema.names == to_table("pi_values", [], Envelope("a", None, "b")).schema.names


@pytest.mark.parametrize("mutate", [
    lambda t: t.set_column(t.schema.get_field_index("key_id"), "key_id",
                           pa.array([hashlib.sha256(KEY).hexdigest()] * 2)),     # the whole digest
    lambda t: t.set_column(t.schema.get_field_index("key_id"), "key_id", pa.array([KEY.decode()] * 2)),
    lambda t: t.set_column(t.schema.get_field_index("key_id"), "key_id", pa.array([KEY_ID.upper()] * 2)),
    lambda t: t.drop_columns(["key_id"]),      # a version-5 batch must carry it
])
def test_a_bad_or_missing_key_id_is_refused_naming_the_column(mutate) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(BatchError) as err:
        parse_batch(_parquet(mutate(_pi_values(KEY_ID))), "b1", "pi_values", "hz-demo", "gw-1")
    assert (err.value.status, err.value.field) == (422, "column key_id")
    assert KEY.decode() not in str(err.value)


def test_a_spool_with_old_and_new_files_reads_both(tmp_path: Path) -> None:
    (tmp_path / "pi_values").mkdir()
    pq.write_table(_version_4(_pi_values(None, "old")), tmp_path / "pi_values" / "old.parquet")
    pq.write_table(_pi_values(KEY_ID, "new", "f2"), tmp_path / "pi_values" / "new.parquet")
    (tmp_path / "flows").mkdir()         # the store wants a spool with flows
    empty = to_table("flows", [], Envelope("gw-1", "hz-demo", "b0"))
    pq.write_table(empty, tmp_path / "flows" / "b0.parquet")
    with Store() as store:
        store.load_records(tmp_path)
        rows = store.con.execute("SELECT DISTINCT flow_id, key_id FROM pi_values ORDER BY 1").fetchall()
    assert rows == [("f1", None), ("f2", KEY_ID)]


def test_old_and_new_uploads_stored_by_the_warehouse_load_in_the_store(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path / "wh")
    try:
        # Rows are stored once per flow (a replayed flow is the same rows): the batches name two flows.
        for batch_id, table in (("old", _version_4(_pi_values(None, "old"))),
                                ("new", _pi_values(KEY_ID, "new", "f2"))):
            wh.store_batch(parse_batch(_parquet(table), batch_id, "pi_values", "hz-demo", "gw-1"), "t")
        files = wh.record_files("hz-demo")
    finally:
        wh.close()
    with Store() as store:
        store.load_record_files(files)
        rows = store.con.execute("SELECT key_id, count(*) FROM pi_values GROUP BY 1 ORDER BY 1").fetchall()
    assert rows == [(KEY_ID, 2), (None, 2)]
