"""The warehouse's DuckDB schema and its migrations, run once when the service opens `data_dir`.

Version 1 (before tenancy, issue 9) kept batches by `batch_id` alone and row identities by
(record_type, agent_id, row_key): batch ids were global across tenants, and one agent could pre-register
another's flow ids. Version 2 scopes both by enterprise: batches by (enterprise_id, batch_id), row
identities by (enterprise_id, record_type, agent_id, row_key), and adds the audit log. A version-1
warehouse is rewritten in one transaction: every batch keeps its enterprise, every row key takes the
enterprise of the batch that stored it. Version 3 adds the flow-day index (collector/flow_days.py), filled
from the stored flows files when an older warehouse is opened. Version 4 adds the `files` index
(collector/dataset.py): an older warehouse's batch files stay where they are, each indexed under the day
folder it arrived in and flagged as an arrival day, so compaction moves its rows to their flow days.
Version 5 finds row identities by hash (below) and keeps the person index's tables
(collector/person_index.py), built from the stored flows and pi_values files when first opened.
"""

from __future__ import annotations

import logging
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from collector.audit import AUDIT_SCHEMA
from collector.dataset import FILES_SCHEMA
from collector.flow_days import FLOW_DAYS_SCHEMA, record_flow_days
from collector.person_index import PERSON_INDEX_SCHEMA

log = logging.getLogger(__name__)

# What one stored row identity costs in collector.duckdb (scope columns and hash) besides twice its key's
# own bytes, charged against an enterprise's quota beside its Parquet bytes: an outside review measured
# ≈ 210 bytes on disk per 35-byte key when row identities had an index.
ROW_KEY_BYTES = 140

__all__ = ["ROW_KEY_BYTES", "SCHEMA_VERSION", "migrate"]

SCHEMA_VERSION = 5

_BATCHES = """
CREATE TABLE {name} (
    batch_id VARCHAR, record_type VARCHAR, agent_id VARCHAR, enterprise_id VARCHAR,
    rows BIGINT, stored_rows BIGINT, sha256 VARCHAR, path VARCHAR, received_at TIMESTAMPTZ, token VARCHAR,
    bytes BIGINT DEFAULT 0, PRIMARY KEY (enterprise_id, batch_id));
"""
_ROW_KEYS = """
CREATE TABLE {name} (
    enterprise_id VARCHAR, record_type VARCHAR, agent_id VARCHAR, row_key VARCHAR, batch_id VARCHAR,
    PRIMARY KEY (enterprise_id, record_type, agent_id, row_key));
"""
_COMMON = """
CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR);
CREATE TABLE IF NOT EXISTS documents (
    kind VARCHAR, doc_id VARCHAR, version INTEGER, enterprise_id VARCHAR, ftz_area VARCHAR,
    sha256 VARCHAR, body VARCHAR, stored_at TIMESTAMPTZ, stored_by VARCHAR,
    PRIMARY KEY (kind, doc_id, version));
CREATE TABLE IF NOT EXISTS reports (
    report_id VARCHAR PRIMARY KEY, filing_id VARCHAR, filing_version INTEGER, enterprise_id VARCHAR,
    ftz_area VARCHAR, generated_at TIMESTAMPTZ, period_from TIMESTAMPTZ, period_to TIMESTAMPTZ,
    verdict VARCHAR, findings INTEGER, complete BOOLEAN, trigger VARCHAR, body VARCHAR);
""" + AUDIT_SCHEMA


def _tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {r[0] for r in con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'").fetchall()}


def _version(con: duckdb.DuckDBPyConnection, tables: set[str]) -> int:
    if "meta" in tables:
        row = con.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        if row is not None:
            return int(row[0])
    return 1 if "batches" in tables else 0


def migrate(con: duckdb.DuckDBPyConnection, root: Path) -> int:
    """Bring the database to SCHEMA_VERSION; returns the version it found (0: a new warehouse). `root` is
    the data dir the batches' paths are relative to."""
    tables = _tables(con)
    found = _version(con, tables)
    if found > SCHEMA_VERSION:
        raise RuntimeError(f"the warehouse has schema version {found}; this collector knows up to "
                           f"{SCHEMA_VERSION} (upgrade egresswatch)")
    if found == SCHEMA_VERSION:
        con.execute(_COMMON)      # tables added within a version (IF NOT EXISTS)
        return found
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(_COMMON)
        if found == 0:
            con.execute(_BATCHES.format(name="batches"))
            con.execute(_ROW_KEYS.format(name="row_keys"))
        elif found == 1:
            _from_v1(con, root)
        con.execute(FLOW_DAYS_SCHEMA)
        if found in (1, 2):
            _flow_days(con, root)
        if found < 4:
            _files_index(con, found)
        if found < 5:
            _hashed_row_keys(con)
        con.execute(PERSON_INDEX_SCHEMA)   # filled by person_index.ensure_person_index when opened
        con.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", [str(SCHEMA_VERSION)])
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    return found


def _from_v1(con: duckdb.DuckDBPyConnection, root: Path) -> None:
    con.execute(_BATCHES.format(name="batches_v2"))
    con.execute("INSERT INTO batches_v2 SELECT batch_id, record_type, agent_id, enterprise_id, rows, "
                "stored_rows, sha256, path, received_at, token, 0 FROM batches")
    _sizes(con, root)
    con.execute(_ROW_KEYS.format(name="row_keys_v2"))
    # A key of version 1 belonged to (record_type, agent_id) across enterprises; its batch says whose it is.
    con.execute("INSERT INTO row_keys_v2 SELECT b.enterprise_id, r.record_type, r.agent_id, r.row_key, "
                "r.batch_id FROM row_keys r JOIN batches b ON b.batch_id = r.batch_id")
    batches, keys = con.execute("SELECT (SELECT count(*) FROM batches_v2), "
                                "(SELECT count(*) FROM row_keys_v2)").fetchone() or (0, 0)
    con.execute("DROP TABLE row_keys")
    con.execute("DROP TABLE batches")
    con.execute("ALTER TABLE batches_v2 RENAME TO batches")
    con.execute("ALTER TABLE row_keys_v2 RENAME TO row_keys")
    log.warning("warehouse migrated from schema 1 to %d: %d batches and %d row identities re-scoped by "
                "enterprise", SCHEMA_VERSION, batches, keys)


def _flow_days(con: duckdb.DuckDBPyConnection, root: Path) -> None:
    """Version 3: index the day of every stored flow from its batch's file. A file that cannot be read
    (removed by hand) leaves its flows without a day, as if they had not arrived yet."""
    batches = con.execute("SELECT enterprise_id, agent_id, batch_id, path FROM batches "
                          "WHERE record_type = 'flows' AND path <> ''").fetchall()
    flows = 0
    for enterprise_id, agent_id, batch_id, path in batches:
        try:
            table: pa.Table = pq.read_table(root / path, columns=["flow_id", "ts_start"])
        except (OSError, pa.ArrowException) as e:
            log.warning("%s: flows not indexed by day (%s)", path, str(e).splitlines()[0] if str(e) else e)
            continue
        flows += record_flow_days(con, enterprise_id, agent_id, batch_id, table)
    log.warning("warehouse migrated to schema %d: %d flows of %d batches indexed by day", SCHEMA_VERSION,
                flows, len(batches))


def _files_index(con: duckdb.DuckDBPyConnection, found: int) -> None:
    """Version 4: the `files` index. Every stored batch file of an older warehouse is one entry: its day
    is the `date=` folder it arrived in (its received day, UTC, if the path has none), flagged as an
    arrival day, holding that batch's rows."""
    con.execute(FILES_SCHEMA)
    if found == 0:
        return
    con.execute(r"""
        INSERT OR IGNORE INTO files
        SELECT path, enterprise_id, record_type,
               coalesce(TRY_CAST(nullif(regexp_extract(path, '/date=(\d{4}-\d{2}-\d{2})/', 1), '') AS DATE),
                        CAST(timezone('UTC', received_at) AS DATE)),
               false, stored_rows, bytes, [batch_id], received_at
        FROM batches WHERE path <> ''""")
    row = con.execute("SELECT count(*) FROM files").fetchone()
    log.warning("warehouse migrated to schema %d: %d batch files indexed under their arrival day",
                SCHEMA_VERSION, row[0] if row else 0)


# Version 5: row identities found by a 128-bit hash of the key, without an index (see collector/flow_days.py
# for why), and each batch's charge for its row identities kept with the batch, so the quota is a sum over
# batches instead of over every row identity of the enterprise (which took 150 ms per upload at 3·10^6).
_HASHED_ROW_KEYS = """
CREATE TABLE row_keys_v5 (
    enterprise_id VARCHAR, record_type VARCHAR, agent_id VARCHAR, row_key VARCHAR, batch_id VARCHAR,
    key_hash UHUGEINT);
INSERT INTO row_keys_v5 SELECT enterprise_id, record_type, agent_id, row_key, batch_id, md5_number(row_key)
FROM row_keys;
DROP TABLE row_keys;
ALTER TABLE row_keys_v5 RENAME TO row_keys;
ALTER TABLE batches ADD COLUMN key_bytes BIGINT DEFAULT 0;
UPDATE batches SET key_bytes = k.charge
FROM (SELECT enterprise_id, batch_id, sum({per_key} + 2 * length(row_key)) AS charge FROM row_keys
      GROUP BY ALL) k
WHERE k.enterprise_id = batches.enterprise_id AND k.batch_id = batches.batch_id;
"""


def _hashed_row_keys(con: duckdb.DuckDBPyConnection) -> None:
    if "key_hash" in {r[0] for r in con.execute("DESCRIBE row_keys").fetchall()}:
        return        # already in this form (a warehouse whose version mark was set back by hand)
    for stmt in _HASHED_ROW_KEYS.format(per_key=ROW_KEY_BYTES).split(";"):
        if stmt.strip():
            con.execute(stmt)


def _sizes(con: duckdb.DuckDBPyConnection, root: Path) -> None:
    """Version 1 did not record file sizes; the quota needs them (a missing file counts 0)."""
    for (path,) in con.execute("SELECT path FROM batches_v2 WHERE path <> ''").fetchall():
        try:
            size = (root / path).stat().st_size
        except OSError:
            size = 0
        con.execute("UPDATE batches_v2 SET bytes = ? WHERE path = ?", [size, path])
