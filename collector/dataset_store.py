"""The warehouse's storage plumbing (collector/warehouse.py builds on it): the DuckDB connection with one
writer at a time and its reopening after a failed write, the transaction that removes unrecorded files
on failure (507), and the Parquet dataset's files (collector/dataset.py): a batch's files written per day,
the index listed for checks, files swapped by compaction (collector/compaction.py) or by removing a batch,
and readers' leases.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from collector.dataset import (
    DataFile,
    FileLeases,
    batch_file,
    insert_files,
    list_files,
    partition,
    read_file,
    remove_orphans,
    row_days,
    stamp_batch,
    write_new,
    write_parquet,
)
from collector.errors import RequestProblem
from collector.flow_days import lookup_flow_days
from collector.ingest import Batch, BatchError
from collector.migrations import migrate

log = logging.getLogger(__name__)

__all__ = ["MAX_DAYS_PER_BATCH", "DatasetStore", "StorageError", "first_line"]

# Days one batch's rows may fall on (a file each). An agent's batch covers minutes to days; a year and a
# day of slack still bounds what one hostile upload can make.
MAX_DAYS_PER_BATCH = 367


class StorageError(RequestProblem):
    """The collector could not store what it was given (507): nothing was recorded, retry later."""

    def __init__(self, message: str) -> None:
        super().__init__(507, None, message)


class DatasetStore:
    """`data_dir`'s database and dataset; the warehouse's operations are in its subclass."""

    def __init__(self, data_dir: Path | str) -> None:
        self.data_dir = Path(data_dir)
        self.records_dir = self.data_dir / "records"
        self.records_dir.mkdir(parents=True, exist_ok=True)
        self.con = self._connect()
        migrate(self.con, self.data_dir)
        # One writer at a time: DuckDB serialises commits anyway, and a batch's file rename plus its
        # metadata must not interleave with another upload of the same batch id.
        self._lock = threading.RLock()
        # DuckDB invalidates a database after a failed write of its WAL (a full disk): every later call
        # fails until it is opened again. Then the next use reopens it (committed work is in the WAL).
        self._invalid = False
        self.leases = FileLeases(self.data_dir)
        remove_orphans(self.con, self.data_dir)

    def _connect(self) -> duckdb.DuckDBPyConnection:
        return duckdb.connect(str(self.data_dir / "collector.duckdb"),
                              config={"autoinstall_known_extensions": False})

    def _reopen(self) -> None:
        with contextlib.suppress(Exception):
            self.con.close()
        try:
            self.con = self._connect()
        except Exception as e:
            raise StorageError(f"the collector's database cannot be opened again ({first_line(e)}); "
                               "free space under data_dir") from None
        self._invalid = False
        log.warning("database reopened after a failed write")

    def close(self) -> None:
        with self._lock:
            self.con.close()

    @contextlib.contextmanager
    def cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._lock:
            if self._invalid:
                self._reopen()
            cur = self.con.cursor()
            try:
                yield cur
            except duckdb.FatalException as e:
                self._invalid = True
                raise StorageError(f"the collector's database failed to write ({first_line(e)})") from None
            finally:
                with contextlib.suppress(Exception):
                    cur.close()

    def _unlink(self, rels: Sequence[str]) -> None:
        for rel in rels:
            (self.data_dir / rel).unlink(missing_ok=True)

    @contextlib.contextmanager
    def _transaction(self, cur: duckdb.DuckDBPyConnection, what: str, rels: Sequence[str] = ()
                     ) -> Iterator[None]:
        """One transaction around the block. On any failure: ROLLBACK — one that fails too (the
        transaction is already gone, the database cannot write) must not hide the first error — the files
        `rels` that were never recorded removed, the database marked for reopening if it is unusable, and a
        StorageError (507) `what (first line of the cause)`."""
        cur.execute("BEGIN TRANSACTION")
        try:
            yield
            cur.execute("COMMIT")
        except Exception as e:
            try:
                cur.execute("ROLLBACK")
            except Exception as again:
                log.warning("rollback after a failed commit: %s", first_line(again))
            if not self._usable(cur):
                self._invalid = True
            self._unlink(rels)
            raise StorageError(f"{what} ({first_line(e)}); retry later") from None

    @staticmethod
    def _usable(cur: duckdb.DuckDBPyConnection) -> bool:
        try:
            cur.execute("SELECT 1").fetchone()
            return True
        except duckdb.Error:
            return False

    def _write_parts(self, cur: duckdb.DuckDBPyConnection, batch: Batch, table: pa.Table) -> list[DataFile]:
        """The batch's new rows as one file per (day, flow day known) (collector/dataset.py); on failure
        none is left (507)."""
        table = stamp_batch(table, batch.batch_id)
        days = row_days(batch.record_type, table,
                        lambda agent, ids: lookup_flow_days(cur, batch.enterprise_id, agent, ids))
        spread = len(pc.unique(days))
        if spread > MAX_DAYS_PER_BATCH:      # a file per day: one upload must not make thousands
            column = {"flows": "ts_start", "capture_stats": "ts"}.get(batch.record_type, "flow_id")
            raise BatchError(422, f"column {column}", f"column {column}: the rows fall on {spread} days; at "
                             f"most {MAX_DAYS_PER_BATCH} in one batch")
        written: list[DataFile] = []
        try:
            for n, (day, own, rows) in enumerate(partition(table, days, datetime.now(UTC).date())):
                rel = batch_file(self.data_dir, batch.record_type, batch.enterprise_id, day, batch.batch_id,
                                 n)
                size = write_parquet(self.data_dir / rel, rows)
                written.append(DataFile(rel, batch.enterprise_id, batch.record_type, day, own, rows.num_rows,
                                        size, (batch.batch_id,)))
        except (OSError, pa.ArrowException) as e:      # the mkdir can hit a full disk too
            self._unlink([f.path for f in written])
            raise StorageError(f"batch {batch.batch_id}: not stored, writing its file failed "
                               f"({first_line(e)}); retry later") from None
        return written

    def _without(self, held: list[DataFile], batch_id: str) -> list[DataFile]:
        """New files for the merged files of `held` without `batch_id`'s rows (written, not recorded)."""
        kept: list[DataFile] = []
        try:
            for f in held:
                if f.batch_ids != (batch_id,):
                    table = read_file(self.data_dir, f)
                    rest = table.filter(pc.not_equal(table.column("batch_id"), batch_id))
                    if rest.num_rows:
                        kept.append(write_new(self.data_dir, f, f.day, f.flow_day, rest))
        except (OSError, pa.ArrowException) as e:
            self._unlink([f.path for f in kept])
            raise StorageError(f"batch {batch_id}: not removed, rewriting a merged file failed "
                               f"({first_line(e)}); retry later") from None
        return kept

    def swap_files(self, old: Sequence[DataFile], new: Sequence[DataFile]) -> bool:
        """Replace `old` by `new` (written, not recorded) in the index, in one transaction; the old files
        are retired. False, with the new files removed, when one of `old` is no longer listed (a batch
        was removed meanwhile): the caller plans again."""
        paths, rels = [f.path for f in old], [f.path for f in new]
        with self.cursor() as cur:
            row = cur.execute("SELECT count(*) FROM files WHERE list_contains(?, path)", [paths]).fetchone()
            if not row or row[0] != len(set(paths)):
                self._unlink(rels)
                return False
            with self._transaction(cur, "files not swapped", rels):
                cur.execute("DELETE FROM files WHERE list_contains(?, path)", [paths])
                insert_files(cur, new, datetime.now(UTC))
        self.leases.retire(paths)
        return True

    def record_files(self, enterprise_id: str, period: tuple[datetime, datetime] | None = None
                     ) -> dict[str, list[Path]]:
        """The stored Parquet files of one enterprise, per record type, by day then storage time; with a
        `period` only those that can hold its flows' rows (collector/dataset.py `list_files`). The paths
        stay readable until the next swap: hold `reading` to read them later."""
        with self.cursor() as cur:
            rows = list_files(cur, enterprise_id, period)
        out: dict[str, list[Path]] = {}
        for record_type, rel in rows:
            out.setdefault(record_type, []).append(self.data_dir / rel)
        return out

    @contextlib.contextmanager
    def reading(self, enterprise_id: str, period: tuple[datetime, datetime] | None = None
                ) -> Iterator[dict[str, list[Path]]]:
        """`record_files` under a lease: no file listed is deleted before the block ends."""
        with self.leases.lease():
            yield self.record_files(enterprise_id, period)


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
