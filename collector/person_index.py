"""The warehouse's person index: each enterprise's persons per deployment key and CST year, kept up to date
as batches land, so a spot check over a calendar year counts without relinking (DESIGN §5, issue 13).

Tables (schema 4, collector/migrations.py), every row scoped by (enterprise_id, key_id, year):
    person_records(rid, enterprise_id, agent_id, batch_id, flow_id, record_key, key_id, year, sensitive,
                   nonsensitive, person)   one row per PI record; person = the smallest rid of its component
                                           (NULL: no person key)
    person_values(rid, enterprise_id, key_id, year, field_type, value_key, identifier)   the values keys
                                           are made of (identifiers, names, dates of birth, addresses)
    person_key_counts(enterprise_id, key_id, year, kind, t1, t2, v1, v2, records)   records per key, as
                                           persons.build_record_persons counts them (max_records_per_key)
    person_merges(enterprise_id, key_id, year, batch_id, merged_at, person, merged)   a batch that linked
                                           components: `merged` (an earlier person) became part of `person`
    person_pending(enterprise_id, agent_id, batch_id, flow_id, record_key, key_id, field_type, value_key,
                   identifier, sensitive, nonsensitive)   pi_values rows whose flows batch has not arrived
    person_index_state(max_records_per_key)   the limit the index was built with: another one rebuilds it

The rules are those of persons.py; the work of a batch is its records and the components its keys touch
(person_relink.py). A record is (agent, pi_values batch, flow_id, record_key): an agent writes a record's
values in one batch.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from collector.dataset import files_of_batch, read_file
from collector.person_relink import relink
from collector.persons import DEFAULT_MAX_RECORDS_PER_KEY
from collector.persons_sql import COMBINATIONS

log = logging.getLogger(__name__)

__all__ = ["PERSON_INDEX_SCHEMA", "ensure_person_index", "fold_pending", "foldable", "index_batch",
           "index_max_records", "rebuild_person_index", "unindex_batch"]

PERSON_INDEX_SCHEMA = """
CREATE SEQUENCE IF NOT EXISTS person_rid;
CREATE TABLE IF NOT EXISTS person_records (
    rid BIGINT, enterprise_id VARCHAR, agent_id VARCHAR, batch_id VARCHAR, flow_id VARCHAR, record_key BIGINT,
    key_id VARCHAR, year INTEGER, sensitive BOOLEAN, nonsensitive BOOLEAN, person BIGINT);
CREATE TABLE IF NOT EXISTS person_values (
    rid BIGINT, enterprise_id VARCHAR, key_id VARCHAR, year INTEGER, field_type VARCHAR, value_key BIGINT,
    identifier BOOLEAN);
CREATE TABLE IF NOT EXISTS person_key_counts (
    enterprise_id VARCHAR, key_id VARCHAR, year INTEGER, kind VARCHAR, t1 VARCHAR, t2 VARCHAR, v1 BIGINT,
    v2 BIGINT, records BIGINT);
CREATE TABLE IF NOT EXISTS person_merges (
    enterprise_id VARCHAR, key_id VARCHAR, year INTEGER, batch_id VARCHAR, merged_at TIMESTAMPTZ,
    person BIGINT, merged BIGINT);
CREATE TABLE IF NOT EXISTS person_index_state (max_records_per_key BIGINT);
CREATE TABLE IF NOT EXISTS person_pending (
    enterprise_id VARCHAR, agent_id VARCHAR, batch_id VARCHAR, flow_id VARCHAR, record_key BIGINT,
    key_id VARCHAR, field_type VARCHAR, value_key BIGINT, identifier BOOLEAN, sensitive BOOLEAN,
    nonsensitive BOOLEAN);
"""

_LINK_TYPES = ", ".join(f"'{t}'" for t in sorted({t for pair in COMBINATIONS for t in pair}))


def index_batch(cur: duckdb.DuckDBPyConnection, enterprise_id: str, agent_id: str, batch_id: str,
                record_type: str, table: pa.Table, max_records: int, *, fold: bool = True) -> None:
    """Take a stored batch's fresh rows into the index (inside the transaction that records the batch): its
    pi_values rows are queued in person_pending. With `fold`, rows of flows with a known day become records
    at once (a rebuild); the service folds later instead (`fold_pending`, in the background and before a
    spot check), so an upload costs an append, not the relinking of the components it touches."""
    if record_type == "pi_values" and table.num_rows:
        cols = {c: table.column(c) for c in ("flow_id", "record_key", "field_type", "value_key", "identifier",
                                              "sensitive")}
        cols["key_id"] = (table.column("key_id") if "key_id" in table.column_names
                          else pa.nulls(table.num_rows, pa.string()))
        cur.register("_pix_in", pa.table(cols))
        try:
            cur.execute("INSERT INTO person_pending SELECT ?, ?, ?, flow_id, record_key, "
                        "coalesce(key_id, ''), field_type, value_key, coalesce(identifier, false), "
                        "coalesce(sensitive, false), NOT coalesce(sensitive, false) FROM _pix_in",
                        [enterprise_id, agent_id, batch_id])
        finally:
            cur.unregister("_pix_in")
        if fold:
            _fold_pending(cur, enterprise_id, agent_id, "batch_id = ?", [batch_id], batch_id, max_records)
    elif fold and record_type == "flows" and table.num_rows:
        cur.register("_pix_flows", pa.table({"flow_id": table.column("flow_id")}))
        try:
            _fold_pending(cur, enterprise_id, agent_id, "flow_id IN (SELECT flow_id FROM _pix_flows)", [],
                          batch_id, max_records)
        finally:
            cur.unregister("_pix_flows")


def foldable(cur: duckdb.DuckDBPyConnection, enterprise_id: str | None = None
             ) -> list[tuple[str, str, str, int]]:
    """(enterprise_id, agent_id, batch_id, rows) of the pending pi_values rows whose flow day is known, per
    batch in the order the batches arrived: what `fold_pending` would take in."""
    where, params = ("WHERE p.enterprise_id = ?", [enterprise_id]) if enterprise_id else ("", [])
    return [(r[0], r[1], r[2], int(r[3])) for r in cur.execute(f"""
        SELECT p.enterprise_id, p.agent_id, p.batch_id, count(*) FROM person_pending p
        JOIN flow_days d ON d.enterprise_id = p.enterprise_id AND d.agent_id = p.agent_id
             AND d.flow_hash = md5_number(p.flow_id)
        JOIN batches b ON b.enterprise_id = p.enterprise_id AND b.batch_id = p.batch_id
        {where}
        GROUP BY p.enterprise_id, p.agent_id, p.batch_id ORDER BY min(b.received_at), p.batch_id""",
        params).fetchall()]


def fold_pending(cur: duckdb.DuckDBPyConnection, enterprise_id: str, agent_id: str, batch_id: str,
                 max_records: int) -> None:
    """Fold one batch's pending rows whose flow day is known into the index (in the caller's transaction);
    merges are recorded under that batch."""
    _fold_pending(cur, enterprise_id, agent_id, "batch_id = ?", [batch_id], batch_id, max_records)


def _fold_pending(cur: duckdb.DuckDBPyConnection, enterprise_id: str, agent_id: str, where: str,
                  params: list[object], batch_id: str, max_records: int) -> None:
    """Move the pending rows (of this agent, matching `where`) whose flow day is known into the index."""
    scope = f"p.enterprise_id = ? AND p.agent_id = ? AND p.{where}"
    cur.execute(f"""
        CREATE OR REPLACE TEMP TABLE _pix_rows AS
        SELECT p.*, CAST(year(d.flow_day) AS INTEGER) AS year FROM person_pending p
        JOIN flow_days d ON d.enterprise_id = p.enterprise_id AND d.agent_id = p.agent_id
             AND d.flow_hash = md5_number(p.flow_id)
        WHERE {scope}""", [enterprise_id, agent_id, *params])
    (n,) = cur.execute("SELECT count(*) FROM _pix_rows").fetchone() or (0,)
    if not n:
        cur.execute("DROP TABLE _pix_rows")
        return
    cur.execute(f"DELETE FROM person_pending p WHERE {scope} AND EXISTS (SELECT 1 FROM _pix_rows r "
                "WHERE r.flow_id = p.flow_id AND r.batch_id = p.batch_id)",
                [enterprise_id, agent_id, *params])
    cur.execute("""
        CREATE OR REPLACE TEMP TABLE _pix_new AS
        SELECT nextval('person_rid') AS rid, * FROM (
            SELECT enterprise_id, agent_id, batch_id, flow_id, record_key, key_id, year,
                   bool_or(sensitive) AS sensitive, bool_or(nonsensitive) AS nonsensitive
            FROM _pix_rows GROUP BY ALL) t""")
    cur.execute("INSERT INTO person_records SELECT rid, enterprise_id, agent_id, batch_id, flow_id, "
                "record_key, key_id, year, sensitive, nonsensitive, NULL FROM _pix_new")
    cur.execute(f"""
        INSERT INTO person_values
        SELECT DISTINCT n.rid, n.enterprise_id, n.key_id, n.year, r.field_type, r.value_key, r.identifier
        FROM _pix_rows r JOIN _pix_new n ON n.batch_id = r.batch_id AND n.flow_id = r.flow_id
             AND n.record_key = r.record_key AND n.key_id = r.key_id
        WHERE r.identifier OR r.field_type IN ({_LINK_TYPES})""")
    cur.execute("CREATE OR REPLACE TEMP TABLE _pix_changed AS SELECT rid FROM _pix_new")
    relink(cur, batch_id, max_records, removed_persons=[], now=datetime.now(UTC))
    for t in ("_pix_rows", "_pix_new", "_pix_changed"):
        cur.execute(f"DROP TABLE IF EXISTS {t}")
    log.info("person index: %d records of %s folded in (batch %s)", n, enterprise_id, batch_id)


def unindex_batch(cur: duckdb.DuckDBPyConnection, enterprise_id: str, batch_id: str, record_type: str,
                  max_records: int) -> None:
    """Take a batch out of the index (inside the transaction that removes it; before flow_days loses its
    rows): a pi_values batch's records and pending rows go; a flows batch's records go back to pending
    (they return when the flows do). The components they were part of are linked again."""
    if record_type == "pi_values":
        cur.execute("DELETE FROM person_pending WHERE enterprise_id = ? AND batch_id = ?",
                    [enterprise_id, batch_id])
        cur.execute("CREATE OR REPLACE TEMP TABLE _pix_gone AS SELECT rid, person FROM person_records "
                    "WHERE enterprise_id = ? AND batch_id = ?", [enterprise_id, batch_id])
    elif record_type == "flows":
        cur.execute("""
            CREATE OR REPLACE TEMP TABLE _pix_gone AS SELECT r.rid, r.person FROM person_records r
            JOIN flow_days d ON d.enterprise_id = r.enterprise_id AND d.agent_id = r.agent_id
                 AND d.flow_hash = md5_number(r.flow_id)
            WHERE d.enterprise_id = ? AND d.batch_id = ?""", [enterprise_id, batch_id])
        # Back to pending: the record's flags on a row of their own, its linking values on theirs.
        cur.execute("""
            INSERT INTO person_pending
            SELECT r.enterprise_id, r.agent_id, r.batch_id, r.flow_id, r.record_key, r.key_id, NULL, NULL,
                   false, r.sensitive, r.nonsensitive
            FROM person_records r JOIN _pix_gone g ON g.rid = r.rid
            UNION ALL
            SELECT r.enterprise_id, r.agent_id, r.batch_id, r.flow_id, r.record_key, r.key_id, v.field_type,
                   v.value_key, v.identifier, false, false
            FROM person_records r JOIN _pix_gone g ON g.rid = r.rid JOIN person_values v ON v.rid = r.rid""")
    else:
        return
    (n,) = cur.execute("SELECT count(*) FROM _pix_gone").fetchone() or (0,)
    if n:
        persons = [r[0] for r in cur.execute(
            "SELECT DISTINCT person FROM _pix_gone WHERE person IS NOT NULL").fetchall()]
        relink(cur, batch_id, max_records, removed_persons=persons, now=datetime.now(UTC), removing=True)
    cur.execute("DROP TABLE IF EXISTS _pix_gone")
    log.info("person index: %d records of %s taken out (batch %s)", n, enterprise_id, batch_id)


def index_max_records(cur: duckdb.DuckDBPyConnection) -> int | None:
    """The persons.max_records_per_key the index was built with (None: not built)."""
    row = cur.execute("SELECT max(max_records_per_key) FROM person_index_state").fetchone()
    return int(row[0]) if row and row[0] is not None else None


def ensure_person_index(cur: duckdb.DuckDBPyConnection, root: Path, max_records: int) -> None:
    """Build the index when the warehouse has none yet or it was built with another max_records_per_key."""
    cur.execute(PERSON_INDEX_SCHEMA)   # IF NOT EXISTS: tables added within schema 4
    if index_max_records(cur) == max_records:
        return
    cur.execute("BEGIN TRANSACTION")
    try:
        rebuild_person_index(cur, root, max_records)
        cur.execute("COMMIT")
    except Exception:
        cur.execute("ROLLBACK")
        raise


def rebuild_person_index(cur: duckdb.DuckDBPyConnection, root: Path,
                         max_records: int = DEFAULT_MAX_RECORDS_PER_KEY) -> None:
    """Build the index afresh from the stored flows and pi_values files (a warehouse from before the index,
    or one whose persons.max_records_per_key changed), batch by batch as they arrived. A file that cannot
    be read leaves its rows out, as if never stored."""
    cur.execute(PERSON_INDEX_SCHEMA)
    for table in ("person_records", "person_values", "person_key_counts", "person_merges", "person_pending"):
        cur.execute(f"DELETE FROM {table}")
    batches = cur.execute("SELECT enterprise_id, agent_id, batch_id, record_type FROM batches "
                          "WHERE record_type IN ('flows', 'pi_values') AND stored_rows > 0 "
                          "ORDER BY received_at, batch_id").fetchall()
    for enterprise_id, agent_id, batch_id, record_type in batches:
        parts = []
        for f in files_of_batch(cur, enterprise_id, batch_id):   # its rows, wherever compaction put them
            try:
                table = read_file(root, f)
            except (OSError, pa.ArrowException) as e:
                why = str(e).splitlines()[0] if str(e) else type(e).__name__
                log.warning("%s: not in the person index (%s)", f.path, why)
                continue
            parts.append(table.filter(pc.equal(table.column("batch_id"), batch_id)))
        if parts:
            index_batch(cur, enterprise_id, agent_id, batch_id, record_type,
                        pa.concat_tables(parts, promote_options="default"), max_records)
    cur.execute("DELETE FROM person_index_state")
    cur.execute("INSERT INTO person_index_state VALUES (?)", [max_records])
    log.warning("person index built from %d stored batches (max_records_per_key %d)", len(batches),
                max_records)
