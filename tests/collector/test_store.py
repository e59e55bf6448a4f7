"""The store: views over the spool, empty typed tables for absent record types, recipient matching."""

from __future__ import annotations

from pathlib import Path

import pytest

from collector.store import RecordsError, Store, match_recipients

from .builders import CREW_IP, flow, make_filing, write_records


@pytest.mark.parametrize(("server_name", "dst_ip", "expected"), [
    ("booking.gfb-freight.example", "198.51.100.1", ["R1"]),
    ("BOOKING.gfb-freight.example.", "198.51.100.1", ["R1"]),
    ("a.b.edi.gfb-freight.example", "198.51.100.1", ["R1"]),
    ("edi.gfb-freight.example", "198.51.100.1", []),
    ("xedi.gfb-freight.example", "198.51.100.1", []),
    (None, CREW_IP, ["R2"]),
    ("booking.gfb-freight.example", CREW_IP, ["R1", "R2"]),
    (None, "not-an-ip", []),
])
def test_match_recipients(server_name, dst_ip, expected) -> None:
    assert match_recipients(make_filing(), server_name, dst_ip) == expected


def test_absent_record_types_are_empty_typed_tables(tmp_path: Path) -> None:
    write_records(tmp_path, [flow("a")])
    with Store() as store:
        counts = store.load_records(tmp_path)
        assert counts == {"flows": 1, "detections": 0, "pi_values": 0, "anomalies": 0, "capture_stats": 0}
        assert store.con.execute("SELECT count(*) FROM detections").fetchall() == [(0,)]
        types = {r[0]: r[1] for r in store.con.execute("DESCRIBE pi_values").fetchall()}
        assert types["value_key"] == "BIGINT" and types["identifier"] == "BOOLEAN"


def test_filing_tables_and_flow_recipients(tmp_path: Path) -> None:
    flows = [flow("a"), flow("b", server_name=None, dst_ip=CREW_IP), flow("c", server_name="x.example")]
    write_records(tmp_path, flows)
    with Store() as store:
        store.load_filing(make_filing())          # before the records: flow_recipients follows later
        store.load_records(tmp_path)
        rows = store.con.execute("SELECT * FROM flow_recipients ORDER BY flow_id").fetchall()
        assert rows == [("a", "R1", "booking"), ("b", "R2", "crew-management")]
        assert store.con.execute("SELECT count(*) FROM catalog_items").fetchall() == [(9,)]
        assert store.con.execute("SELECT enterprise_id FROM filing").fetchall() == [("nb-shipping-demo",)]


def test_missing_columns_are_a_records_error(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "flows").mkdir()
    pq.write_table(pa.table({"flow_id": ["a"]}), tmp_path / "flows" / "b.parquet")
    with Store() as store, pytest.raises(RecordsError, match="missing column"):
        store.load_records(tmp_path)
