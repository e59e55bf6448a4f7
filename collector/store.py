"""The collector's DuckDB database: views over the agent's Parquet records and the filing as tables.

Layout read (docs/internals.md "Spool"): `DIR/<record_type>/*.parquet`, one folder per record type of
DESIGN §3. A record type without files becomes an empty table with the agent's schema, so every check can
run against every view. `flow_recipients` (which declared recipient, and so which scenario, a flow went
to) is computed here in Python once: domain matching is simple string work and CIDR matching uses
`ipaddress`, because DuckDB's inet extension would have to be downloaded.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, time, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from agent.records import ADDED_COLUMNS, RECORD_TYPES
from collector.models import Filing, field_type_catalog
from collector.negative_lists import NegativeList, entries_table
from collector.persons import CST

log = logging.getLogger(__name__)

__all__ = ["DESTINATIONS_SQL", "FLOW_RECIPIENTS_SQL", "SCENARIO_FLOWS_SQL", "SMALL_TABLES", "RecordsError",
           "Store", "destination_matches", "field_types_table", "match_recipients", "record_files_in",
           "record_select"]

# The tables the filing, the lists and the catalog make (the same on every engine; spark_store.py ships
# them).
SMALL_TABLES = ("filing", "recipients", "recipient_endpoints", "scenarios", "scenario_recipients",
                "catalog_items", "negative_list_entries", "field_types")

# flow_recipients from the flows and `_dest_matches` (destination_matches): Store._refresh_flow_recipients.
FLOW_RECIPIENTS_SQL = """
CREATE TABLE flow_recipients AS
    SELECT DISTINCT f.flow_id, m.recipient_id, sr.scenario_id
    FROM flows f
    JOIN _dest_matches m
      ON f.server_name IS NOT DISTINCT FROM m.server_name AND f.dst_ip = m.dst_ip
     AND f.initiator = m.initiator
    LEFT JOIN scenario_recipients sr ON sr.recipient_id = m.recipient_id
"""

# The checks' common scope: cross-border flows that reached a scenario's recipients. One view here instead of
# the same join in every check file; checks add their period filter.
SCENARIO_FLOWS_SQL = """
CREATE OR REPLACE VIEW scenario_flows AS
    SELECT DISTINCT fr.scenario_id, f.flow_id, f.ts_start, f.ts_end, f.bytes_out
    FROM flows f
    JOIN flow_recipients fr ON fr.flow_id = f.flow_id
    WHERE fr.scenario_id IS NOT NULL AND f.cross_border
"""

DESTINATIONS_SQL = "SELECT DISTINCT server_name, dst_ip, initiator FROM flows"


class RecordsError(ValueError):
    """The records directory cannot be read; `str()` is one line naming the directory or file."""


def _unreadable(files: list[Path], e: duckdb.Error) -> RecordsError:
    return RecordsError(f"{files[0].parent}: unreadable Parquet: {str(e).splitlines()[0]}")


def _sql_str(s: str) -> str:
    # Views cannot take prepared parameters, so file paths are written as quoted literals.
    return "'" + s.replace("'", "''") + "'"


def _domain_matches(pattern: str, name: str) -> bool:
    """Exact match, or `*.example.com` matching any name below example.com (not example.com itself)."""
    if pattern.startswith("*."):
        return name.endswith(pattern[1:])
    return name == pattern


def match_recipients(
    filing: Filing, server_name: str | None, dst_ip: str | None
) -> list[str]:
    """Recipient ids whose declared endpoints cover a destination (server name or IP)."""
    name = server_name.rstrip(".").lower() if server_name else None
    try:
        ip = ipaddress.ip_address(dst_ip) if dst_ip else None
    except ValueError:
        ip = None
    out = []
    for r in filing.recipients:
        ep = r.declared_endpoints
        if (name and any(_domain_matches(p, name) for p in ep.domains)) or (
            ip is not None and any(ip in ipaddress.ip_network(c) for c in ep.ip_cidrs)
        ):
            out.append(r.recipient_id)
    return out


def destination_matches(filing: Filing, pairs: Iterable[tuple[str | None, str | None, str | None]]
                        ) -> pa.Table:
    """`_dest_matches(server_name, dst_ip, initiator, recipient_id)` for the distinct destinations of the
    flows (DESTINATIONS_SQL). A flow an overseas client initiated (`initiator = external`, a pull) goes to
    that client, dst_ip: it matches by the recipients' declared `ip_cidrs` only, since its server_name names
    the internal server it pulled from (DESIGN §3)."""
    pairs = list(pairs)
    matches = [(sn, ip, initiator, rid) for sn, ip, initiator in pairs
               for rid in match_recipients(filing, None if initiator == "external" else sn, ip)]
    log.debug("%d destinations, %d matched to declared recipients", len(pairs), len(matches))
    return _rows_table(["server_name", "dst_ip", "initiator", "recipient_id"], matches, [pa.string()] * 4)


def field_types_table() -> pa.Table:
    """`field_types(id, pi, sensitive, identifier, name_zh)` from the catalog, for checks to read."""
    cat = field_type_catalog()
    return pa.table({
        "id": list(cat),
        "pi": [v["pi"] for v in cat.values()],
        "sensitive": [v["sensitive"] for v in cat.values()],
        "identifier": [v["identifier"] for v in cat.values()],
        "name_zh": [v["name_zh"] for v in cat.values()],
    })


def record_files_in(records_dir: Path) -> dict[str, list[Path]]:
    """A spool's Parquet files per record type (`DIR/<record_type>/*.parquet`); RecordsError when none."""
    records_dir = Path(records_dir)
    if not records_dir.is_dir():
        raise RecordsError(f"{records_dir}: not a directory of records")
    files = {t: sorted(p for p in (records_dir / t).glob("*.parquet") if p.is_file()) for t in RECORD_TYPES}
    if not any(files.values()):
        raise RecordsError(f"{records_dir}: no records found (expected {records_dir}/flows/*.parquet)")
    return files


def record_select(record_type: str, columns: Sequence[str], where: Path) -> str:
    """The SELECT list of a record view over files with `columns` (in file order): columns added after
    version 1 take their documented value in older files (DESIGN §3), the expression over the row's own
    columns, for every row older than the column; RecordsError naming `where` when a column is missing."""
    schema = RECORD_TYPES[record_type][1]
    added = ADDED_COLUMNS.get(record_type, {})
    missing = [f.name for f in schema if f.name not in columns and f.name not in added]
    if missing:
        raise RecordsError(f"{where}: missing column(s) {', '.join(missing)}")
    select = [f"CASE WHEN schema_version < {added[c][0]} THEN {added[c][1]} ELSE {c} END AS {c}"
              if c in added else c for c in columns]
    select += [f"{d} AS {c}" for c, (_, d) in added.items() if c not in columns]
    return "SELECT " + ", ".join(select)


class Store:
    """An embedded DuckDB database holding one enterprise's records and its filing."""

    def __init__(self, db_path: str | Path = ":memory:") -> None:
        # Nothing may be downloaded: no extension autoinstall.
        self.con = duckdb.connect(str(db_path), config={"autoinstall_known_extensions": False})
        self.filing: Filing | None = None
        self.negative_lists: tuple[NegativeList, ...] = ()
        self.records_dir: Path | None = None
        self._records_loaded = False

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- records ------------------------------------------------------------------------------------

    def load_records(self, records_dir: Path) -> dict[str, int]:
        """Create one view per record type over `records_dir`; returns the number of files per type."""
        records_dir = Path(records_dir)
        files = record_files_in(records_dir)
        self.load_record_files(files)
        self.records_dir = records_dir
        return {t: len(f) for t, f in files.items()}

    def load_record_files(self, files: Mapping[str, Sequence[Path]]) -> None:
        """One view per record type over the given files (the collector service's warehouse); a type
        without files is an empty table, so an enterprise with no records yet is checked, not refused."""
        for record_type, (_, schema) in RECORD_TYPES.items():
            self.con.execute(f"DROP VIEW IF EXISTS {record_type}")
            self.con.execute(f"DROP TABLE IF EXISTS {record_type}")
            if files.get(record_type):
                self._parquet_view(record_type, list(files[record_type]), schema)
            else:
                self._empty_table(record_type, schema)
        self._records_loaded = True
        self._refresh_field_types()
        if self.filing is not None:
            self._refresh_flow_recipients()

    def _parquet_view(self, record_type: str, files: list[Path], schema: pa.Schema) -> None:
        paths = ", ".join(_sql_str(str(p)) for p in files)
        # Matching columns by name across files makes every query bind read every file's footer (twice
        # the time of a spot check over a year of day-partitioned files); only files of different schema
        # versions need it.
        union = str(not _same_schema(files)).lower()
        source = f"read_parquet([{paths}], union_by_name = {union}, hive_partitioning = false)"
        try:
            columns = [row[0] for row in self.con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()]
        except duckdb.Error as e:
            raise _unreadable(files, e) from None
        select = record_select(record_type, columns, files[0].parent)
        try:
            self.con.execute(f"CREATE VIEW {record_type} AS {select} FROM {source}")
        except duckdb.Error as e:
            raise _unreadable(files, e) from None

    def _empty_table(self, record_type: str, schema: pa.Schema) -> None:
        self._replace_table(record_type, schema.empty_table())

    def _refresh_field_types(self) -> None:
        """`field_types(id, pi, sensitive, identifier, name_zh)` from the catalog, for checks to read."""
        self._replace_table("field_types", field_types_table())

    # --- filing -------------------------------------------------------------------------------------

    def load_filing(self, filing: Filing) -> None:
        """Create the filing tables, `negative_list_entries` (empty until lists are loaded) and, when
        records are loaded, `flow_recipients`."""
        self.filing = filing
        tol = filing.tolerances
        industry = filing.processor.industry
        # Validity as instants: valid_from 00:00 CST up to (excluding) the day after valid_until, 00:00 CST.
        valid_from_at = datetime.combine(filing.valid_from, time(0), CST)
        valid_until_end = datetime.combine(filing.valid_until + timedelta(days=1), time(0), CST)
        self._replace_table("filing", pa.table({
            "filing_id": [filing.filing_id],
            "ftz_area": [str(filing.ftz_area)],
            "status": [str(filing.status)],
            "valid_from": pa.array([filing.valid_from], pa.date32()),
            "valid_until": pa.array([filing.valid_until], pa.date32()),
            "valid_from_at": pa.array([valid_from_at], pa.timestamp("us", tz="UTC")),
            "valid_until_end": pa.array([valid_until_end], pa.timestamp("us", tz="UTC")),
            "enterprise_id": [filing.processor.id],
            "industry": pa.array([industry.gbt4754 if industry else None], pa.string()),
            "is_ciio": [filing.processor.is_ciio],
            "volume_increase_major_pct": pa.array([float(tol.volume_increase_major_pct)], pa.float64()),
        }))
        rs = filing.recipients
        self._replace_table("recipients", pa.table({
            "recipient_id": pa.array([r.recipient_id for r in rs], pa.string()),
            "name": pa.array([r.name for r in rs], pa.string()),
            "country_region": pa.array([r.country_region for r in rs], pa.string()),
        }))
        endpoints = [(r.recipient_id, "domain", d) for r in rs for d in r.declared_endpoints.domains]
        endpoints += [(r.recipient_id, "cidr", c) for r in rs for c in r.declared_endpoints.ip_cidrs]
        self._replace_table("recipient_endpoints", _rows_table(
            ["recipient_id", "kind", "value"], endpoints, [pa.string()] * 3))
        ss = filing.scenarios
        subcategories = [s.negative_list_match.subcategory for s in ss]
        self._replace_table("scenarios", pa.table({
            "scenario_id": pa.array([s.scenario_id for s in ss], pa.string()),
            "name": pa.array([s.name for s in ss], pa.string()),
            "route": pa.array([str(s.route) for s in ss], pa.string()),
            "scale_window": pa.array([s.scale.window for s in ss], pa.string()),
            "persons_nonsensitive": pa.array([s.scale.persons_nonsensitive for s in ss], pa.int64()),
            "persons_sensitive": pa.array([s.scale.persons_sensitive for s in ss], pa.int64()),
            "negative_list_subcategory": pa.array(subcategories, pa.string()),
            "negative_list_entry_ids": pa.array([s.negative_list_match.entry_ids for s in ss],
                                                pa.list_(pa.string())),
        }))
        self._replace_table("scenario_recipients", _rows_table(
            ["scenario_id", "recipient_id"],
            [(s.scenario_id, rid) for s in ss for rid in s.recipients], [pa.string()] * 2))
        self._replace_table("catalog_items", _rows_table(
            ["scenario_id", "item_id", "name_cn", "field_type"],
            [(s.scenario_id, i.item_id, i.name_cn, i.field_type) for s in ss for i in s.data_catalog],
            [pa.string()] * 4))
        self._refresh_negative_list_entries()
        if self._records_loaded:
            self._refresh_flow_recipients()

    def load_negative_lists(self, lists: Sequence[NegativeList]) -> int:
        """`negative_list_entries`: the entries of `lists` whose sector applies to the filing's processor
        industry, one row per (entry, field type); returns the number of rows. Lists loaded before the
        filing are kept and filtered when it arrives."""
        self.negative_lists = tuple(lists)
        return self._refresh_negative_list_entries()

    def _refresh_negative_list_entries(self) -> int:
        industry = self.filing.processor.industry if self.filing is not None else None
        table = entries_table(self.negative_lists, industry.gbt4754 if industry else None)
        self._replace_table("negative_list_entries", table)
        return table.num_rows

    def _refresh_flow_recipients(self) -> None:
        """`flow_recipients(flow_id, recipient_id, scenario_id)`: one row per (flow, recipient, scenario);
        scenario_id is NULL for a declared recipient no scenario names. A flow an overseas client initiated
        (`initiator = external`, a pull) goes to that client, dst_ip: it matches by the recipients' declared
        `ip_cidrs` only, since its server_name names the internal server it pulled from (DESIGN §3); the
        peer's country is then checked against the recipient's like any other (recipient_country_mismatch)."""
        assert self.filing is not None
        pairs = self.con.execute(DESTINATIONS_SQL).fetchall()
        self.con.register("_dest_matches", destination_matches(self.filing, pairs))
        self.con.execute("DROP TABLE IF EXISTS flow_recipients")
        try:
            self.con.execute(FLOW_RECIPIENTS_SQL)
        finally:
            self.con.unregister("_dest_matches")
        self.con.execute(SCENARIO_FLOWS_SQL)

    # --- helpers ------------------------------------------------------------------------------------

    def _replace_table(self, name: str, table: pa.Table) -> None:
        self.con.execute(f"DROP TABLE IF EXISTS {name}")
        self.con.register("_incoming", table)
        try:
            self.con.execute(f"CREATE TABLE {name} AS SELECT * FROM _incoming")
        finally:
            self.con.unregister("_incoming")

    def replace_table(self, name: str, table: pa.Table) -> None:
        """Create or replace a table from Arrow data (persons.py adds `record_persons` this way)."""
        self._replace_table(name, table)


def _same_schema(files: Sequence[Path]) -> bool:
    """Whether every file has the first one's columns in the same order with the same types (footers
    only; an unreadable file answers False, and the view's own read names it)."""
    try:
        first = pq.read_schema(files[0])
        return all(pq.read_schema(f).equals(first, check_metadata=False) for f in files[1:])
    except (OSError, pa.ArrowException):
        return False


def _rows_table(names: list[str], rows: Iterable[tuple], types: list[pa.DataType]) -> pa.Table:
    cols = list(zip(*rows, strict=False)) or [() for _ in names]
    return pa.table({n: pa.array(list(c), t) for n, c, t in zip(names, cols, types, strict=True)})
