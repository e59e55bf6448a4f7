"""The warehouse's Parquet dataset: where a row is stored, the `files` index, and when a file may go.

    data_dir/records/<record_type>/enterprise_id=<E>/date=<YYYY-MM-DD>/<name>.parquet

`date` is the row's flow day in China Standard Time (DESIGN §9): flows by their `ts_start`,
`capture_stats` by their `ts`, `pi_values`, `detections` and `anomalies` by the day of their flow as the
flow-day index knows it (collector/flow_days.py; an anomaly without a known flow by its own `ts`). A row
whose flow has not arrived yet is stored under its arrival day (UTC, as before) in a file flagged
`flow_day = false`, until compaction (collector/compaction.py) finds the flow and moves it. A batch writes
one file per day it touches: `<batch_id>.parquet`, `<batch_id>-1.parquet`, …; compaction writes
`c-<random>.parquet`.

The `files` table is what the checks list (never a directory walk): per file its enterprise, record type,
day, whether the day is the rows' own, its rows and bytes (what the quota counts), and the batches whose
rows it holds (every row's `batch_id` column is the collector's batch id, stamped at ingest, so a batch can
be removed from a merged file). A file on disk that the index does not list was written but never
recorded (a crash) and is removed when the warehouse opens.

Files a swap replaced (compaction, a removed batch) are retired, not deleted at once: a reader that listed
them before the swap holds a lease (`FileLeases.lease`) and may still be reading; a retired file is deleted
when no lease older than its retirement is left, or at the next open.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from collector.flow_days import cst_days

log = logging.getLogger(__name__)

__all__ = ["FILES_SCHEMA", "SELECT_FILES", "DataFile", "FileLeases", "Lookup", "batch_file", "day_range",
           "files_of_batch", "insert_files", "list_files", "partition", "read_file", "remove_orphans",
           "row_days", "stamp_batch", "stored_bytes", "write_new", "write_parquet"]

FILES_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    path VARCHAR PRIMARY KEY, enterprise_id VARCHAR, record_type VARCHAR, day DATE, flow_day BOOLEAN,
    rows BIGINT, bytes BIGINT, batch_ids VARCHAR[], stored_at TIMESTAMPTZ);
"""

# (agent_id, flow ids) -> (flow_id, flow_day) of the flows the index knows (Warehouse.flow_days).
Lookup = Callable[[str, pa.Array], pa.Table]


@dataclass(frozen=True, slots=True)
class DataFile:
    path: str                    # relative to data_dir
    enterprise_id: str
    record_type: str
    day: date
    flow_day: bool               # False: an arrival day, rows whose flow day was unknown when written
    rows: int
    bytes: int
    batch_ids: tuple[str, ...]


def folder(record_type: str, enterprise_id: str, day: date) -> str:
    return f"records/{record_type}/enterprise_id={enterprise_id}/date={day.isoformat()}"


def new_name(record_type: str, enterprise_id: str, day: date) -> str:
    """A fresh relative path for a file compaction writes."""
    return f"{folder(record_type, enterprise_id, day)}/c-{uuid.uuid4().hex[:16]}.parquet"


def batch_file(data_dir: Path, record_type: str, enterprise_id: str, day: date, batch_id: str, n: int) -> str:
    """The relative path of part `n` of a batch: `<batch_id>[-n].parquet`, unless a file of that name is
    still there (retired but leased, or another batch's `b-1`): a path is never written over."""
    rel = f"{folder(record_type, enterprise_id, day)}/{batch_id}{f'-{n}' if n else ''}.parquet"
    if (data_dir / rel).exists():
        rel = f"{folder(record_type, enterprise_id, day)}/{batch_id}-{uuid.uuid4().hex[:8]}.parquet"
    return rel


def row_days(record_type: str, table: pa.Table, lookup: Lookup) -> pa.Array:
    """The CST day (date32) of each row; null where it is not known yet (a flow that has not arrived)."""
    if record_type == "flows":
        return cst_days(table.column("ts_start"))
    if record_type == "capture_stats":
        return cst_days(table.column("ts"))
    days: pa.Array = pa.nulls(table.num_rows, pa.date32())
    if table.num_rows:
        agents, flow_ids = table.column("agent_id"), table.column("flow_id")
        found = []
        for agent in pc.unique(agents).to_pylist():
            ids = pc.drop_null(flow_ids.filter(pc.equal(agents, agent)))
            known = lookup(agent, ids.combine_chunks())
            found.append(pa.table({"k": pc.binary_join_element_wise(agent, known.column("flow_id"), "\x1f"),
                                   "day": known.column("flow_day").cast(pa.date32())}))
        known_all = pa.concat_tables(found) if found else pa.table({"k": pa.array([], pa.string()),
                                                                     "day": pa.array([], pa.date32())})
        keys = pc.binary_join_element_wise(agents, flow_ids, "\x1f")
        days = pc.take(known_all.column("day"), pc.index_in(keys, value_set=known_all.column("k")))
        if isinstance(days, pa.ChunkedArray):
            days = days.combine_chunks()
    if record_type == "anomalies":     # an anomaly of no known flow: the day it happened
        days = pc.coalesce(days, cst_days(table.column("ts")))
    return days


def partition(table: pa.Table, days: pa.Array, arrival: date) -> list[tuple[date, bool, pa.Table]]:
    """`table`'s rows per (day, flow_day): rows of an unknown day go to `arrival`, flagged False. Days in
    order, the arrival part last."""
    out = [(d, True, table.filter(pc.equal(days, pa.scalar(d, pa.date32()))))
           for d in sorted(pc.unique(pc.drop_null(days)).to_pylist())]
    if days.null_count:
        out.append((arrival, False, table.filter(pc.is_null(days))))
    return out


def stamp_batch(table: pa.Table, batch_id: str) -> pa.Table:
    """The rows with `batch_id` = the collector's batch id (an agent's own id may differ, and a row must
    say which stored batch it came with once files are merged)."""
    i = table.schema.get_field_index("batch_id")
    return table.set_column(i, table.schema.field(i), pa.array([batch_id] * table.num_rows, pa.string()))


def write_parquet(final: Path, table: pa.Table) -> int:
    """Write under a temporary name, fsync, rename into place; returns the size. The temporary file is
    gone on failure (OSError or ArrowException raised)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp"
    try:
        pq.write_table(table, tmp, compression="zstd")
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return final.stat().st_size


def insert_files(cur: duckdb.DuckDBPyConnection, files: Sequence[DataFile], stored_at: datetime) -> None:
    for f in files:
        cur.execute("INSERT INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [f.path, f.enterprise_id, f.record_type, f.day, f.flow_day, f.rows, f.bytes,
                     list(f.batch_ids), stored_at])


def _data_file(row: tuple) -> DataFile:
    return DataFile(row[0], row[1], row[2], row[3], row[4], row[5], row[6], tuple(row[7]))


SELECT_FILES = "SELECT path, enterprise_id, record_type, day, flow_day, rows, bytes, batch_ids FROM files"


def files_of_batch(cur: duckdb.DuckDBPyConnection, enterprise_id: str, batch_id: str) -> list[DataFile]:
    return [_data_file(r) for r in cur.execute(
        f"{SELECT_FILES} WHERE enterprise_id = ? AND list_contains(batch_ids, ?) ORDER BY path",
        [enterprise_id, batch_id]).fetchall()]


def day_range(period: tuple[datetime, datetime]) -> tuple[date, date]:
    """The CST days a half-open period of instants touches."""
    first, last = cst_days(pa.array([period[0], period[1] - timedelta(microseconds=1)],
                                    pa.timestamp("us", tz="UTC"))).to_pylist()
    return first, last


def list_files(cur: duckdb.DuckDBPyConnection, enterprise_id: str,
               period: tuple[datetime, datetime] | None = None) -> list[tuple[str, str]]:
    """(record_type, path) of one enterprise's files, by day then storage time; with a period only the
    files of its days and the arrival-day files (their rows' days were unknown when written)."""
    sql = "SELECT record_type, path FROM files WHERE enterprise_id = ?"
    params: list[object] = [enterprise_id]
    if period is not None:
        sql += " AND (NOT flow_day OR day BETWEEN ? AND ?)"
        params += list(day_range(period))
    return [(r[0], r[1]) for r in cur.execute(sql + " ORDER BY day, stored_at, path", params).fetchall()]


def stored_bytes(cur: duckdb.DuckDBPyConnection, enterprise_id: str) -> int:
    row = cur.execute("SELECT coalesce(sum(bytes), 0) FROM files WHERE enterprise_id = ?",
                      [enterprise_id]).fetchone()
    return int(row[0]) if row else 0


def remove_orphans(cur: duckdb.DuckDBPyConnection, data_dir: Path) -> int:
    """Delete every file under records/ the index does not list: temporary files, files written but never
    recorded, files retired by a swap before a restart. A directory walk, once per open."""
    known = {r[0] for r in cur.execute("SELECT path FROM files").fetchall()}
    removed = 0
    for path in (data_dir / "records").rglob("*.parquet*"):
        if str(path.relative_to(data_dir)) not in known:
            log.warning("removing %s: not in the file index (a crash, or replaced before the restart)",
                        path.relative_to(data_dir))
            path.unlink(missing_ok=True)
            removed += 1
    return removed


class FileLeases:
    """Readers' leases on the files they listed, and the files retired by swaps, deleted once no reader
    that could have listed them is left. Generation g: the swaps made so far; a lease taken at g may use
    the files of state g; a file retired by swap r (generation r after it) waits for every lease < r."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._lock = threading.Lock()
        self._generation = 0
        self._active: Counter[int] = Counter()
        self._retired: list[tuple[int, str]] = []

    @contextlib.contextmanager
    def lease(self) -> Iterator[None]:
        with self._lock:
            taken = self._generation
            self._active[taken] += 1
        try:
            yield
        finally:
            with self._lock:
                self._active[taken] -= 1
                if not self._active[taken]:
                    del self._active[taken]
            self.purge()

    def retire(self, paths: Sequence[str]) -> None:
        """Files no longer in the index (the swap has committed); deleted now if no reader may use them."""
        with self._lock:
            self._generation += 1
            self._retired += [(self._generation, p) for p in paths]
        self.purge()

    def pending(self) -> list[str]:
        with self._lock:
            return [p for _, p in self._retired]

    def purge(self) -> None:
        with self._lock:
            oldest = min(self._active, default=self._generation)
            due = [p for r, p in self._retired if r <= oldest]
            self._retired = [(r, p) for r, p in self._retired if r > oldest]
        for rel in due:
            with contextlib.suppress(OSError):    # a failure leaves an orphan, removed at the next open
                (self.data_dir / rel).unlink(missing_ok=True)


def read_file(data_dir: Path, f: DataFile) -> pa.Table:
    """A stored file's rows; those of a file that holds one batch carry that batch's id (a file written
    before ingest stamped the id holds the agent's own)."""
    table = pq.read_table(data_dir / f.path)
    return stamp_batch(table, f.batch_ids[0]) if len(f.batch_ids) == 1 else table


def write_new(data_dir: Path, like: DataFile, day: date, flow_day: bool, table: pa.Table) -> DataFile:
    """Write `table` as a new file of `like`'s enterprise and record type under `day`."""
    rel = new_name(like.record_type, like.enterprise_id, day)
    size = write_parquet(data_dir / rel, table)
    batch_ids = tuple(sorted(pc.unique(table.column("batch_id")).to_pylist()))
    return DataFile(rel, like.enterprise_id, like.record_type, day, flow_day, table.num_rows, size, batch_ids)
