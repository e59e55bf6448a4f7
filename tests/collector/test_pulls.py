"""Pulls count (rules.md): a flow an overseas client initiated to an internal server (`initiator =
external`) goes to that client. Its recipient is matched by the filing's declared `ip_cidrs` (and then its
country), never by its server_name, which names the internal server; batches and spools of agents from
before the column read as `internal`."""

from __future__ import annotations

import io
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from agent.records import SCHEMA_VERSION, Envelope, to_table
from collector.ingest import BatchError, parse_batch
from collector.store import Store

from .builders import (
    BOOKING_HOST,
    CREW_IP,
    check_spool,
    detection,
    findings_of,
    flow,
    make_filing,
    write_records,
)

PEER_UNDECLARED = "8.8.4.77"          # US: no recipient declares it
PEER_CREW_OTHER_COUNTRY = "203.116.40.9"   # inside R2's declared 203.116.40.0/24


def _parquet(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def _version_1(table: pa.Table) -> pa.Table:
    """A flows table as an agent of schema version 1 wrote it: no initiator (nor version 3's columns)."""
    table = table.drop_columns(["initiator", "visibility", "alpn", "uninspected_reason"])
    i = table.schema.get_field_index("schema_version")
    return table.set_column(i, table.schema.field(i), pa.array([1] * table.num_rows, pa.int32()))


@pytest.mark.parametrize(("name", "server_name", "dst_ip", "initiator", "recipients"), [
    ("push to a declared domain", BOOKING_HOST, "198.51.100.10", "internal", ["R1"]),
    ("push to a declared CIDR", None, CREW_IP, "internal", ["R2"]),
    ("pull by a client in a declared CIDR", None, CREW_IP, "external", ["R2"]),
    ("pull from a server whose name is a declared domain", BOOKING_HOST, "198.51.100.10", "external", []),
    ("pull by a declared CIDR from a server named like a declared domain", BOOKING_HOST, CREW_IP, "external",
     ["R2"]),
    ("pull by an undeclared client", "hr-api.corp.example", PEER_UNDECLARED, "external", []),
])
def test_a_pull_is_matched_to_its_client_by_the_declared_cidrs_never_by_server_name(
        tmp_path: Path, name: str, server_name: str | None, dst_ip: str, initiator: str,
        recipients: list[str]) -> None:
    write_records(tmp_path, [flow("a", server_name=server_name, dst_ip=dst_ip, initiator=initiator)])
    with Store() as store:
        store.load_records(tmp_path)
        store.load_filing(make_filing())
        rows = store.con.execute("SELECT recipient_id FROM flow_recipients ORDER BY 1").fetchall()
    got = [r[0] for r in rows]
    assert got == recipients, name


def test_a_pull_of_personal_information_by_an_undeclared_client_is_undeclared(tmp_path: Path) -> None:
    flows = [flow("pull", server_name=None, dst_ip=PEER_UNDECLARED, country="US", initiator="external"),
             flow("declared", server_name=None, dst_ip=CREW_IP, country="SG", initiator="external")]
    write_records(tmp_path, flows, [detection("pull", "mobile_cn"), detection("declared", "mobile_cn")])
    results = check_spool(tmp_path)
    assert findings_of(results, "undeclared_recipient") == [(None, PEER_UNDECLARED, "high")]
    finding = results["undeclared_recipient"].findings[0]
    assert finding.evidence["dst_ips"] == [PEER_UNDECLARED]
    assert finding.evidence["example_flow_ids"] == ["pull"]


def test_a_pull_named_after_a_declared_internal_domain_is_still_undeclared(tmp_path: Path) -> None:
    write_records(tmp_path, [flow("pull", server_name=BOOKING_HOST, dst_ip=PEER_UNDECLARED, country="US",
                                  initiator="external")], [detection("pull", "id_card_cn", sensitive=True)])
    results = check_spool(tmp_path)
    findings = results["undeclared_recipient"].findings
    assert len(findings) == 1 and findings[0].evidence["dst_ips"] == [PEER_UNDECLARED]


def test_a_pull_finding_names_the_peer_not_the_internal_server(tmp_path: Path) -> None:
    write_records(tmp_path, [flow("pull", server_name=BOOKING_HOST, dst_ip=PEER_UNDECLARED, country="US",
                                  initiator="external")], [detection("pull", "mobile_cn")])
    assert findings_of(check_spool(tmp_path), "undeclared_recipient") == [(None, PEER_UNDECLARED, "high")]


def test_a_pull_by_a_declared_cidr_from_another_country_is_a_country_mismatch(tmp_path: Path) -> None:
    write_records(tmp_path, [flow("pull", server_name=None, dst_ip=PEER_CREW_OTHER_COUNTRY, country="US",
                                  initiator="external")], [detection("pull", "mobile_cn")])
    results = check_spool(tmp_path)
    assert findings_of(results, "undeclared_recipient") == []
    assert findings_of(results, "recipient_country_mismatch") == [("crew-management", "R2", "high")]


def test_a_spool_of_an_agent_from_before_the_column_reads_as_pushes(tmp_path: Path) -> None:
    env = Envelope("test-agent", "nb-shipping-demo", "old")
    (tmp_path / "flows").mkdir()
    pq.write_table(_version_1(to_table("flows", [flow("old", server_name=None, dst_ip=CREW_IP)], env)),
                   tmp_path / "flows" / "old.parquet")
    with Store() as store:
        store.load_records(tmp_path)
        store.load_filing(make_filing())
        assert store.con.execute("SELECT flow_id, initiator FROM flows").fetchall() == [("old", "internal")]
        assert store.con.execute("SELECT recipient_id FROM flow_recipients").fetchall() == [("R2",)]
    # An old file beside a new one: the old rows take the default, the new keep their value.
    pq.write_table(to_table("flows", [flow("new", initiator="external")], Envelope("a", "e", "new")),
                   tmp_path / "flows" / "new.parquet")
    with Store() as store:
        store.load_records(tmp_path)
        rows = store.con.execute("SELECT flow_id, initiator FROM flows ORDER BY 1").fetchall()
    assert rows == [("new", "external"), ("old", "internal")]


def test_an_upload_from_an_agent_before_the_column_is_stored_as_pushes() -> None:
    table = _version_1(to_table("flows", [flow("a"), flow("b")], Envelope("gw-1", "hz-demo", "b1")))
    batch = parse_batch(_parquet(table), "b1", "flows", "hz-demo", "gw-1")
    assert batch.table.column("initiator").to_pylist() == ["internal", "internal"]
    assert set(batch.table.column("schema_version").to_pylist()) == {1}


@pytest.mark.parametrize(("mutate", "field"), [
    # A batch that says it is version 2 must have the column: no default hides a broken agent.
    (lambda t: t.drop_columns(["initiator"]), "column initiator"),
    (lambda t: t.set_column(t.schema.get_field_index("initiator"), "initiator",
                            pa.array(["sideways", "internal"])), "column initiator"),
    (lambda t: t.set_column(t.schema.get_field_index("schema_version"), "schema_version",
                            pa.array([SCHEMA_VERSION + 1] * 2, pa.int32())), "column schema_version"),
    # A version that is no number: refused by the schema check, not a crash while filling defaults.
    (lambda t: _version_1(t).set_column(t.schema.get_field_index("schema_version"), "schema_version",
                                        pa.array(["1", "1"])), "column schema_version"),
])
def test_an_upload_with_a_bad_initiator_is_refused_naming_the_column(mutate, field: str) -> None:
    table = mutate(to_table("flows", [flow("a"), flow("b")], Envelope("gw-1", "hz-demo", "b1")))
    with pytest.raises(BatchError) as err:
        parse_batch(_parquet(table), "b1", "flows", "hz-demo", "gw-1")
    assert (err.value.status, err.value.field) == (422, field)
