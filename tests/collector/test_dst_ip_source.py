"""Records schema 4: `flows.dst_ip_source` says where a flow's dst_ip came from (the wire, a proxy, a
browser's HAR, the agent's own resolving). Batches and spools of earlier agents read as `wire`; a value
outside the vocabulary is refused naming the column."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from agent.records import DST_IP_SOURCES, Envelope, to_table
from collector.ingest import BatchError, parse_batch
from collector.store import Store

from .builders import flow


def _parquet(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def _version_3(table: pa.Table) -> pa.Table:
    table = table.drop_columns(["dst_ip_source"])
    i = table.schema.get_field_index("schema_version")
    return table.set_column(i, table.schema.field(i), pa.array([3] * table.num_rows, pa.int32()))


def _flows(*sources: str) -> pa.Table:
    rows = [dataclasses.replace(flow(f"f{n}"), dst_ip_source=s) for n, s in enumerate(sources)]
    return to_table("flows", rows, Envelope("gw-1", "hz-demo", "b1"))


def test_every_source_of_the_vocabulary_is_stored_as_sent() -> None:
    batch = parse_batch(_parquet(_flows(*DST_IP_SOURCES)), "b1", "flows", "hz-demo", "gw-1")
    assert batch.table.column("dst_ip_source").to_pylist() == list(DST_IP_SOURCES)


def test_an_upload_from_an_agent_before_the_column_reads_as_wire() -> None:
    batch = parse_batch(_parquet(_version_3(_flows("wire", "wire"))), "b1", "flows", "hz-demo", "gw-1")
    assert batch.table.column("dst_ip_source").to_pylist() == ["wire", "wire"]


@pytest.mark.parametrize("mutate", [
    lambda t: t.set_column(t.schema.get_field_index("dst_ip_source"), "dst_ip_source",
                           pa.array(["guessed", "wire"])),
    lambda t: t.drop_columns(["dst_ip_source"]),      # a version-4 batch must carry it
])
def test_a_bad_or_missing_source_is_refused_naming_the_column(mutate) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(BatchError) as err:
        parse_batch(_parquet(mutate(_flows("proxy", "wire"))), "b1", "flows", "hz-demo", "gw-1")
    assert (err.value.status, err.value.field) == (422, "column dst_ip_source")


def test_a_spool_with_old_and_new_files_reads_both(tmp_path: Path) -> None:
    (tmp_path / "flows").mkdir()
    pq.write_table(_version_3(_flows("wire")), tmp_path / "flows" / "old.parquet")
    new = to_table("flows", [dataclasses.replace(flow("n"), dst_ip_source="resolved")],
                   Envelope("gw-1", "hz-demo", "b2"))
    pq.write_table(new, tmp_path / "flows" / "new.parquet")
    with Store() as store:
        store.load_records(tmp_path)
        rows = store.con.execute("SELECT flow_id, dst_ip_source FROM flows ORDER BY 1").fetchall()
    assert rows == [("f0", "wire"), ("n", "resolved")]
