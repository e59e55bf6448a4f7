"""Coverage (DESIGN §3, §7): the report's `observed.coverage` over a constructed set of flows, exact to the
byte; its rendering (table, HTML with the small-share warning); and records of agents before schema 3
(uploads and stored files, beside version-3 ones) read with the coverage columns derived from the old ones."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rich.console import Console

from agent.records import Envelope, FlowRecord, to_table
from collector.coverage import coverage
from collector.ingest import BatchError, parse_batch
from collector.inspection import run_inspection
from collector.reports import render_html, summary_table
from collector.store import Store

from .builders import BOOKING_HOST, PERIOD, UNDECLARED_HOST, flow, make_filing, write_records

TLS_HOST = "cdn.tls-only.example"
H2_HOST = "api.h2.example"
BARE_IP = "203.0.113.9"


def _flows() -> list[FlowRecord]:
    return [
        flow("p1", bytes_out=1000),                                                   # inspected plaintext
        flow("p2", bytes_out=300, inspected=False, reason="not_sampled", sample_weight=4.0),
        flow("e1", server_name=TLS_HOST, country="JP", encrypted=True, inspected=False, bytes_out=4000),
        flow("e2", server_name=TLS_HOST, country="JP", encrypted=True, inspected=False, bytes_out=500,
             reason="unsupported_cipher"),
        flow("d1", server_name=H2_HOST, country="US", encrypted=True, visibility="decrypted", alpn="h2",
             bytes_out=2000),                                                        # opened and inspected
        flow("n1", server_name=None, dst_ip=BARE_IP, country="US", visibility="none", inspected=False,
             reason="unknown_protocol", bytes_out=200),
        flow("g1", server_name=UNDECLARED_HOST, country="US", inspected=False, reason="capture_gap",
             bytes_out=100),
        flow("z1", server_name=UNDECLARED_HOST, country="US", visibility="none", inspected=False,
             bytes_out=0),                                                   # no content: no reason
        # Not counted: a domestic flow, and one before the period.
        flow("dom", server_name="intranet.example", country="CN", cross_border=False, bytes_out=999),
        flow("old", ts=datetime(2025, 12, 31, 12, 0, tzinfo=UTC), inspected=False, bytes_out=7777),
    ]


@pytest.fixture
def records(tmp_path: Path) -> Path:
    return write_records(tmp_path / "records", _flows())


def test_coverage_counts_cross_border_bytes_out_by_visibility_and_reason(records: Path) -> None:
    report = run_inspection(records, make_filing(), period=PERIOD).report
    assert report is not None and report.observed.coverage is not None
    c = report.observed.coverage
    assert c.bytes_out == 8100 == report.observed.bytes_out
    assert c.by_visibility == {"plaintext": 1400, "decrypted": 2000, "proxy": 0, "har": 0, "encrypted": 4500,
                               "none": 200}
    assert c.inspected_bytes_out == 3000
    assert c.inspected_share == pytest.approx(3000 / 8100)
    assert (c.small_share, c.small_share_threshold) == (True, 0.5)
    assert [(r.reason, r.flows, r.bytes_out) for r in c.uninspected_by_reason] == [
        ("no_secrets", 1, 4000), ("unsupported_cipher", 1, 500), ("not_sampled", 1, 300),
        ("unknown_protocol", 1, 200), ("capture_gap", 1, 100), (None, 1, 0)]
    # Per destination (server name, else the IP), largest first; a flow that sent nothing is not listed.
    assert [(d.destination, d.country, d.flows, d.bytes_out, [(r.reason, r.bytes_out) for r in d.reasons])
            for d in c.uninspected_destinations] == [
        (TLS_HOST, "JP", 2, 4500, [("no_secrets", 4000), ("unsupported_cipher", 500)]),
        (BOOKING_HOST, "DE", 1, 300, [("not_sampled", 300)]),
        (BARE_IP, "US", 1, 200, [("unknown_protocol", 200)]),
        (UNDECLARED_HOST, "US", 1, 100, [("capture_gap", 100)]),
    ]
    assert c.uninspected_destinations_omitted == 0


def test_the_uninspected_destinations_are_bounded(records: Path) -> None:
    with Store() as store:
        store.load_records(records)
        c = coverage(store.con, PERIOD, top=2)
    assert [d.destination for d in c.uninspected_destinations] == [TLS_HOST, BOOKING_HOST]
    assert c.uninspected_destinations_omitted == 2
    assert c.bytes_out == 8100          # the totals do not depend on the bound


def test_a_mostly_inspected_period_has_no_warning_and_an_empty_one_no_share(tmp_path: Path) -> None:
    rich = write_records(tmp_path / "a", [flow("p1", bytes_out=900),
                                          flow("e1", encrypted=True, inspected=False, bytes_out=100)])
    report = run_inspection(rich, make_filing(), period=PERIOD).report
    assert report is not None and report.observed.coverage is not None
    assert report.observed.coverage.inspected_share == pytest.approx(0.9)
    assert not report.observed.coverage.small_share
    page = render_html(report)
    assert 'id="coverage"' in page and "90 %" in page and 'class="warning"' not in page
    empty = write_records(tmp_path / "b", [flow("dom", cross_border=False, country="CN")])
    report = run_inspection(empty, make_filing(), period=PERIOD).report
    assert report is not None and report.observed.coverage is not None
    c = report.observed.coverage
    assert (c.bytes_out, c.inspected_share, c.small_share) == (0, None, False)
    assert "No cross-border bytes out" in render_html(report)


def test_the_table_and_the_page_say_when_the_verdict_rests_on_a_small_share(records: Path) -> None:
    report = run_inspection(records, make_filing(), period=PERIOD).report
    assert report is not None
    console = Console(width=200, record=True)
    console.print(summary_table(report))
    text = " ".join(console.export_text().split())     # the caption wraps at the table's width
    assert ("Coverage: 37 % of cross-border bytes out inspected (3,000 of 8,100; plaintext 1,400, "
            "decrypted 2,000, encrypted 4,500, none 200).") in text
    assert "Warning: the verdict rests on 37 % of the cross-border traffic (under 50 % inspected)" in text
    assert (f"Largest uninspected destinations: {TLS_HOST} (no_secrets 4,000, unsupported_cipher 500), "
            f"{BOOKING_HOST} (not_sampled 300), {BARE_IP} (unknown_protocol 200)") in text
    page = render_html(report)
    head, _, rest = page.partition("<h2>")     # the coverage block sits above the first section
    assert 'id="coverage"' in head and 'class="warning"' in head and "37 %" in head
    assert "Why traffic was not inspected" in rest and TLS_HOST in rest


def test_a_report_stored_before_coverage_still_renders(records: Path) -> None:
    report = run_inspection(records, make_filing(), period=PERIOD).report
    assert report is not None
    old = report.model_copy(update={"observed": report.observed.model_copy(update={"coverage": None})})
    page = render_html(old)
    assert 'id="coverage"' not in page and "Destinations" in page


# --- records of agents before schema 3 -------------------------------------------------------------

V3_COLUMNS = ["visibility", "alpn", "uninspected_reason"]


def _version_2(table: pa.Table) -> pa.Table:
    """A flows table as an agent of schema version 2 wrote it: no coverage columns."""
    table = table.drop_columns(V3_COLUMNS)
    i = table.schema.get_field_index("schema_version")
    return table.set_column(i, table.schema.field(i), pa.array([2] * table.num_rows, pa.int32()))


def _parquet(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def _legacy_flows() -> list[FlowRecord]:
    return [
        flow("inspected", bytes_out=1000),
        flow("tls", encrypted=True, inspected=False, bytes_out=4000),
        flow("domestic", cross_border=False, country="CN", inspected=False, bytes_out=10),
        flow("unsampled", inspected=False, sample_weight=4.0, bytes_out=300),   # sampled out or no body?
        flow("nobody", inspected=False, bytes_out=50),                          # every flow was sampled
        FlowRecord(**{**_as_dict(flow("opaque", inspected=False, bytes_out=70)), "app": "unknown"}),
    ]


def _as_dict(r: FlowRecord) -> dict:
    return {name: getattr(r, name) for name in FlowRecord.__slots__}


EXPECTED_LEGACY = {
    "inspected": ("plaintext", None, None),
    "tls": ("encrypted", None, "no_secrets"),
    "domestic": ("plaintext", None, None),
    "unsampled": ("plaintext", None, None),        # the old columns do not tell: unknown
    "nobody": ("plaintext", None, None),
    "opaque": ("none", None, "unknown_protocol"),
}


def test_an_upload_of_schema_2_gets_the_coverage_columns_derived() -> None:
    table = _version_2(to_table("flows", _legacy_flows(), Envelope("gw-1", "hz-demo", "b2")))
    batch = parse_batch(_parquet(table), "b2", "flows", "hz-demo", "gw-1")
    got = {r["flow_id"]: (r["visibility"], r["alpn"], r["uninspected_reason"])
           for r in batch.table.to_pylist()}
    assert got == EXPECTED_LEGACY
    assert set(batch.table.column("schema_version").to_pylist()) == {2}


@pytest.mark.parametrize(("mutate", "field"), [
    # A version-3 batch must carry the columns: no derivation hides a broken agent.
    (lambda t: t.drop_columns(["visibility"]), "column visibility"),
    (lambda t: t.set_column(t.schema.get_field_index("visibility"), "visibility",
                            pa.array(["clear", "none"])), "column visibility"),
    (lambda t: t.set_column(t.schema.get_field_index("uninspected_reason"), "uninspected_reason",
                            pa.array(["because", None])), "column uninspected_reason"),
    # A reason on an inspected flow contradicts it.
    (lambda t: t.set_column(t.schema.get_field_index("uninspected_reason"), "uninspected_reason",
                            pa.array(["not_sampled", "not_sampled"])), "column uninspected_reason"),
    (lambda t: t.set_column(t.schema.get_field_index("alpn"), "alpn", pa.array(["h2 \u5f20\u4e09", None])),
     "column alpn"),
])
def test_an_upload_with_bad_coverage_columns_is_refused_naming_the_column(mutate, field: str) -> None:
    rows = [flow("a"), flow("b", inspected=False)]
    table = mutate(to_table("flows", rows, Envelope("gw-1", "hz-demo", "b")))
    with pytest.raises(BatchError) as err:
        parse_batch(_parquet(table), "b", "flows", "hz-demo", "gw-1")
    assert (err.value.status, err.value.field) == (422, field)


def test_stored_files_of_schema_2_beside_schema_3_read_with_the_same_values(tmp_path: Path) -> None:
    (tmp_path / "flows").mkdir()
    pq.write_table(_version_2(to_table("flows", _legacy_flows(), Envelope("gw-1", "hz-demo", "old"))),
                   tmp_path / "flows" / "old.parquet")
    pq.write_table(to_table("flows", [flow("new", encrypted=True, visibility="decrypted", alpn="h2",
                                           bytes_out=500)], Envelope("gw-1", "hz-demo", "new")),
                   tmp_path / "flows" / "new.parquet")
    with Store() as store:
        store.load_records(tmp_path)
        rows = store.con.execute("SELECT flow_id, visibility, alpn, uninspected_reason FROM flows").fetchall()
        c = coverage(store.con, PERIOD)
    assert {r[0]: r[1:] for r in rows} == {**EXPECTED_LEGACY, "new": ("decrypted", "h2", None)}
    # Both versions count: 1000 + 500 inspected of 1000 + 4000 + 300 + 50 + 70 + 500 cross-border bytes out.
    assert (c.bytes_out, c.inspected_bytes_out) == (5920, 1500)
    assert c.by_visibility["encrypted"] == 4000 and c.by_visibility["decrypted"] == 500
    assert [(r.reason, r.bytes_out) for r in c.uninspected_by_reason] == [
        ("no_secrets", 4000), (None, 350), ("unknown_protocol", 70)]
