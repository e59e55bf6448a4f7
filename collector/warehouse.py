"""The collector's persistent store under `data_dir` (DESIGN §9).

    data_dir/collector.duckdb    batches, stored row keys, the file index, filing and negative-list versions,
                                 reports
    data_dir/records/<record_type>/enterprise_id=<E>/date=<flow day, CST>/<batch_id>[-n].parquet

Records stay Parquet in a Hive layout (partitioned by record type, enterprise and flow day: see
collector/dataset.py) so Spark, Trino or another DuckDB can read them; the DuckDB file holds what must be
transactional. A batch's files (one per day its rows fall on) are written under temporary names, renamed
into place, and only then recorded in one transaction with its row keys: a crash in between leaves
unrecorded files, which `open` deletes, never a recorded batch without its files. Compaction
(collector/compaction.py) replaces files through `swap_files`; readers hold a lease (`reading`).

Every filing and negative-list upload that changes the content is a new version; reports record the
versions they used, so a verdict can be reproduced later.

Tenancy: batch ids and row identities are scoped by enterprise (one tenant can neither take another's
batch id nor shadow its rows), and the agent id of a row identity is the uploading token's. Changes made
by people (document versions, removed batches) write an audit row in the same transaction.

Storage failures (a full disk, a failed commit) are `StorageError`s (507): the files written are removed
at once and the batch is not recorded, so the agent's retry stores it once space is back.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from collector.audit import AuditEntry, list_audit, write_audit
from collector.dataset import files_of_batch, insert_files, stored_bytes
from collector.dataset_store import DatasetStore, StorageError
from collector.errors import RequestProblem
from collector.flow_days import lookup_flow_days, record_flow_days
from collector.ingest import Batch
from collector.migrations import ROW_KEY_BYTES
from collector.person_index import ensure_person_index, fold_pending, foldable, index_batch, unindex_batch
from collector.persons import DEFAULT_MAX_RECORDS_PER_KEY

log = logging.getLogger(__name__)

__all__ = ["BatchConflict", "StorageError", "StoredBatch", "Version", "Warehouse"]


class BatchConflict(RequestProblem):
    """The same batch id of the same enterprise was stored before with other content (409)."""

    def __init__(self, message: str) -> None:
        super().__init__(409, "header X-Batch-Id", message)




@dataclass(frozen=True, slots=True)
class StoredBatch:
    batch_id: str
    record_type: str
    rows: int
    stored_rows: int
    created: bool        # False: the same batch was already stored (an agent's retry)


@dataclass(frozen=True, slots=True)
class Version:
    kind: str            # filing | negative_list
    doc_id: str
    version: int
    enterprise_id: str | None
    ftz_area: str | None
    sha256: str
    body: dict[str, Any]
    stored_at: datetime
    created: bool = False


class Warehouse(DatasetStore):
    def __init__(self, data_dir: Path | str, *,
                 max_records_per_key: int = DEFAULT_MAX_RECORDS_PER_KEY) -> None:
        self.max_records_per_key = max_records_per_key   # config persons: what spot checks and the index use
        super().__init__(data_dir)
        ensure_person_index(self.con, self.data_dir, max_records_per_key)

    # --- batches ------------------------------------------------------------------------------------

    def over_quota(self, enterprise_id: str, quota: int) -> int | None:
        """What `enterprise_id` uses when it is already at or past `quota` (None otherwise): checked
        before an upload is decoded, so an enterprise over its quota costs no decoding."""
        with self.cursor() as cur:
            used = _used(cur, enterprise_id)
        return used if used >= quota else None

    def store_batch(self, batch: Batch, token_name: str, *, quota: int | None = None) -> StoredBatch:
        """Store the rows no earlier batch of the same enterprise and agent stored; `quota` bounds what one
        enterprise may keep (Parquet bytes plus ROW_KEY_BYTES per row identity): past it, 507."""
        with self.cursor() as cur:
            prior = cur.execute("SELECT sha256, record_type, rows, stored_rows FROM batches "
                                "WHERE enterprise_id = ? AND batch_id = ?",
                                [batch.enterprise_id, batch.batch_id]).fetchone()
            if prior is not None:
                if prior[0] != batch.sha256:
                    raise BatchConflict(f"batch {batch.batch_id} was stored before with other content")
                return StoredBatch(batch.batch_id, prior[1], prior[2], prior[3], created=False)
            distinct = pc.unique(batch.keys)
            cur.register("_keys", pa.table({"row_key": distinct}))
            try:
                # By hash (migrations.py, version 5): the scan reads one fixed-width column.
                seen = cur.sql(
                    "SELECT k.row_key FROM (SELECT row_key, md5_number(row_key) AS h FROM _keys) k "
                    "JOIN row_keys r ON r.key_hash = k.h "
                    "AND r.enterprise_id = ? AND r.record_type = ? AND r.agent_id = ?",
                    params=[batch.enterprise_id, batch.record_type, batch.agent_id]
                ).to_arrow_table().column("row_key").combine_chunks().cast(pa.string())
            finally:
                cur.unregister("_keys")
            table, fresh = batch.table, distinct
            if len(seen):
                table = table.filter(pc.invert(pc.is_in(batch.keys, value_set=seen)))
                fresh = distinct.filter(pc.invert(pc.is_in(distinct, value_set=seen)))
            written = self._write_parts(cur, batch, table) if table.num_rows else []
            rels = [f.path for f in written]
            size = sum(f.bytes for f in written)
            key_bytes = ROW_KEY_BYTES * len(fresh) + 2 * int(pc.sum(pc.binary_length(fresh)).as_py() or 0)
            if quota is not None:
                try:
                    self._check_quota(cur, batch, size + key_bytes, quota)
                except StorageError:
                    self._unlink(rels)
                    raise
            now = datetime.now(UTC)
            with self._transaction(cur, f"batch {batch.batch_id}: not stored, the commit failed", rels):
                # `path`: the batch's first file as written (compaction may move its rows; `files` knows).
                cur.execute("INSERT INTO batches VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            [batch.batch_id, batch.record_type, batch.agent_id, batch.enterprise_id,
                             batch.table.num_rows, table.num_rows, batch.sha256, rels[0] if rels else "", now,
                             token_name, size, key_bytes])
                insert_files(cur, written, now)
                if len(fresh):
                    cur.register("_fresh", pa.table({"row_key": fresh}))
                    cur.execute("INSERT INTO row_keys SELECT ?, ?, ?, row_key, ?, md5_number(row_key) "
                                "FROM _fresh",
                                [batch.enterprise_id, batch.record_type, batch.agent_id, batch.batch_id])
                    cur.unregister("_fresh")
                if batch.record_type == "flows":
                    record_flow_days(cur, batch.enterprise_id, batch.agent_id, batch.batch_id, table)
                # Queued only: relinking is the background's and the spot check's (fold_persons).
                index_batch(cur, batch.enterprise_id, batch.agent_id, batch.batch_id, batch.record_type,
                            table, self.max_records_per_key, fold=False)
        log.info("batch %s of %s: %d %s rows from %s, %d new", batch.batch_id, batch.enterprise_id,
                 batch.table.num_rows, batch.record_type, batch.agent_id, table.num_rows)
        return StoredBatch(batch.batch_id, batch.record_type, batch.table.num_rows, table.num_rows, True)

    @staticmethod
    def _check_quota(cur: duckdb.DuckDBPyConnection, batch: Batch, charge: int, quota: int) -> None:
        if not charge:
            return
        used = _used(cur, batch.enterprise_id)
        if used + charge > quota:
            raise StorageError(f"batch {batch.batch_id}: enterprise {batch.enterprise_id} has used {used} "
                               f"of its limits.max_enterprise_bytes {quota}; nothing stored (a regulator can "
                               "remove batches)")

    def delete_batch(self, enterprise_id: str, batch_id: str, audit: AuditEntry) -> dict[str, Any] | None:
        """Remove a stored batch, its row identities (so the rows may be uploaded again) and its rows: its
        own files go, a merged file holding other batches' rows too is rewritten without them. None when
        the enterprise has no such batch. The audit row commits with the removal."""
        with self.cursor() as cur:
            row = cur.execute("SELECT record_type, agent_id, rows, stored_rows FROM batches "
                              "WHERE enterprise_id = ? AND batch_id = ?",
                              [enterprise_id, batch_id]).fetchone()
            if row is None:
                return None
            record_type, agent_id, rows, stored_rows = row
            held = files_of_batch(cur, enterprise_id, batch_id)
            kept = self._without(held, batch_id)
            with self._transaction(cur, f"batch {batch_id}: not removed", [f.path for f in kept]):
                unindex_batch(cur, enterprise_id, batch_id, record_type, self.max_records_per_key)
                for index in ("row_keys", "flow_days"):
                    cur.execute(f"DELETE FROM {index} WHERE enterprise_id = ? AND batch_id = ?",
                                [enterprise_id, batch_id])
                cur.execute("DELETE FROM batches WHERE enterprise_id = ? AND batch_id = ?",
                            [enterprise_id, batch_id])
                cur.execute("DELETE FROM files WHERE list_contains(?, path)", [[f.path for f in held]])
                insert_files(cur, kept, datetime.now(UTC))
                write_audit(cur, audit)
        # After the commit (a crash between the two leaves unrecorded files, which open() removes), and
        # once no reader that listed them is left.
        self.leases.retire([f.path for f in held])
        log.info("batch %s of %s removed by %s", batch_id, enterprise_id, audit.actor)
        return {"enterprise_id": enterprise_id, "batch_id": batch_id, "record_type": record_type,
                "agent_id": agent_id, "rows": rows, "stored_rows": stored_rows}

    def fold_persons(self, enterprise_id: str | None = None, *, stop: Callable[[], bool] = lambda: False
                     ) -> int:
        """Fold the queued pi_values rows whose flows have arrived into the person index, one batch per
        transaction (uploads go on in between), oldest first; returns the rows folded."""
        with self.cursor() as cur:
            todo = foldable(cur, enterprise_id)
        folded = 0
        for enterprise, agent, batch_id, rows in todo:
            if stop():
                break
            with self.cursor() as cur, self._transaction(cur, f"person index: batch {batch_id} not folded"):
                fold_pending(cur, enterprise, agent, batch_id, self.max_records_per_key)
            folded += rows
        return folded

    def persons_pending(self, enterprise_id: str, *, at_most: int | None = None) -> int:
        """Queued pi_values rows of an enterprise whose flows have arrived (what a fold would take in). With
        `at_most`: a queue longer than that is answered by its length alone, without the join that tells
        which flows arrived (over a bulk load's 10^7 queued rows that join alone costs a GB)."""
        with self.cursor() as cur:
            if at_most is not None:
                row = cur.execute("SELECT count(*) FROM person_pending WHERE enterprise_id = ?",
                                  [enterprise_id]).fetchone()
                if row and row[0] > at_most:
                    return int(row[0])
            return sum(rows for *_, rows in foldable(cur, enterprise_id))

    def flow_days(self, enterprise_id: str, agent_id: str, flow_ids: pa.Array | pa.ChunkedArray) -> pa.Table:
        """`(flow_id, flow_day)`: the CST day of each stored flow of one agent (collector/flow_days.py)."""
        with self.cursor() as cur:
            return lookup_flow_days(cur, enterprise_id, agent_id, flow_ids)

    def enterprises_with_records(self) -> list[str]:
        with self.cursor() as cur:
            return [r[0] for r in cur.execute(
                "SELECT DISTINCT enterprise_id FROM batches WHERE stored_rows > 0 ORDER BY 1").fetchall()]

    # --- filings and negative lists -----------------------------------------------------------------

    def put_document(self, kind: str, doc_id: str, body: dict[str, Any], enterprise_id: str | None,
                     ftz_area: str | None, stored_by: str, audit: AuditEntry | None = None) -> Version:
        """Store `body` as the next version unless it equals the latest one (then `created` is False).
        `audit` (its from/to filled in here) commits with the new version."""
        text = json.dumps(body, sort_keys=True, ensure_ascii=False, default=str)
        digest = _sha256(text)
        with self.cursor() as cur:
            latest = self.get_document(kind, doc_id)
            if latest is not None and latest.sha256 == digest:
                return latest
            version = (latest.version if latest else 0) + 1
            now = datetime.now(UTC)
            with self._transaction(cur, f"{kind} {doc_id}: not stored"):
                cur.execute("INSERT INTO documents VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            [kind, doc_id, version, enterprise_id, ftz_area, digest, text, now, stored_by])
                if audit is not None:
                    write_audit(cur, dataclasses.replace(
                        audit, action="update" if latest else "create",
                        from_=f"v{latest.version}" if latest else None, to=f"v{version}"), now)
        log.info("%s %s version %d stored by %s", kind, doc_id, version, stored_by)
        return Version(kind, doc_id, version, enterprise_id, ftz_area, digest, json.loads(text), now, True)

    def get_document(self, kind: str, doc_id: str, version: int | None = None) -> Version | None:
        sql = ("SELECT kind, doc_id, version, enterprise_id, ftz_area, sha256, body, stored_at "
               "FROM documents WHERE kind = ? AND doc_id = ?")
        params: list[Any] = [kind, doc_id]
        if version is not None:
            sql += " AND version = ?"
            params.append(version)
        with self.cursor() as cur:
            row = cur.execute(sql + " ORDER BY version DESC LIMIT 1", params).fetchone()
        if row is None:
            return None
        return Version(row[0], row[1], row[2], row[3], row[4], row[5], json.loads(row[6]), row[7])

    def latest_documents(self, kind: str, *, area: str | None = None) -> list[Version]:
        """The latest version of every document of `kind` (of one FTZ area, or with no area, when
        `area` is given), bodies parsed: for a check, not for listing (see `document_owners`)."""
        sql = ("SELECT kind, doc_id, version, enterprise_id, ftz_area, sha256, body, stored_at "
               "FROM documents d WHERE kind = ? AND version = (SELECT max(version) FROM documents e "
               "WHERE e.kind = d.kind AND e.doc_id = d.doc_id)")
        params: list[Any] = [kind]
        if area is not None:
            sql += " AND (ftz_area = ? OR ftz_area IS NULL)"
            params.append(area)
        with self.cursor() as cur:
            rows = cur.execute(sql + " ORDER BY doc_id", params).fetchall()
        return [Version(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6]), r[7]) for r in rows]

    def document_owners(self, kind: str) -> list[tuple[str, str | None]]:
        """(doc_id, enterprise_id) of every document of `kind`, without reading a body: what access
        filtering needs, at a cost that does not grow with what other tenants uploaded."""
        with self.cursor() as cur:
            return [(r[0], r[1]) for r in cur.execute(
                "SELECT doc_id, any_value(enterprise_id) FROM documents WHERE kind = ? GROUP BY doc_id "
                "ORDER BY doc_id", [kind]).fetchall()]

    # --- reports ------------------------------------------------------------------------------------

    def store_report(self, report: Any, body: str, ftz_area: str, trigger: str) -> str:
        """Insert a report row; returns its id (the report's own, else a new one)."""
        report_id = report.report_id or uuid.uuid4().hex
        with self.cursor() as cur:
            cur.execute("INSERT INTO reports VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [report_id, report.filing_id, report.filing_version, report.enterprise_id, ftz_area,
                         report.generated_at, report.period.from_, report.period.to, report.verdict,
                         len(report.findings), report.complete, trigger, body])
        return report_id

    def list_reports(self, filing_ids: list[str] | None = None) -> list[dict[str, Any]]:
        sql = ("SELECT report_id, filing_id, filing_version, enterprise_id, ftz_area, generated_at, "
               "period_from, period_to, verdict, findings, complete, trigger FROM reports")
        params: list[Any] = []
        if filing_ids is not None:
            if not filing_ids:
                return []
            sql += f" WHERE filing_id IN ({', '.join('?' for _ in filing_ids)})"
            params = list(filing_ids)
        with self.cursor() as cur:
            result = cur.execute(sql + " ORDER BY generated_at DESC, report_id DESC", params)
            names = [d[0] for d in result.description]
            return [dict(zip(names, row, strict=True)) for row in result.fetchall()]

    def get_report(self, report_id: str) -> tuple[dict[str, Any], str] | None:
        """(the report's list entry, its JSON body) or None."""
        with self.cursor() as cur:
            row = cur.execute("SELECT filing_id, filing_version, enterprise_id, ftz_area, body FROM reports "
                              "WHERE report_id = ?", [report_id]).fetchone()
        if row is None:
            return None
        meta = {"filing_id": row[0], "filing_version": row[1], "enterprise_id": row[2], "ftz_area": row[3]}
        return meta, row[4]

    def audit_rows(self, ftz_area: str, *, limit: int = 100, before: int | None = None
                   ) -> list[dict[str, Any]]:
        with self.cursor() as cur:
            return list_audit(cur, ftz_area, limit=limit, before=before)

    def counts(self) -> dict[str, int]:
        """Stored rows per record type (for tests and /healthz)."""
        with self.cursor() as cur:
            rows = cur.execute("SELECT record_type, sum(stored_rows) FROM batches GROUP BY 1").fetchall()
        return {r[0]: int(r[1]) for r in rows}


def _used(cur: duckdb.DuckDBPyConnection, enterprise_id: str) -> int:
    """What one enterprise keeps, as its quota counts it: Parquet bytes plus its row identities."""
    row = cur.execute("SELECT coalesce(sum(key_bytes), 0) FROM batches WHERE enterprise_id = ?",
                      [enterprise_id]).fetchone()
    return stored_bytes(cur, enterprise_id) + (int(row[0]) if row else 0)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
