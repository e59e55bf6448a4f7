"""Compaction of the warehouse's dataset (DESIGN §9 "Storage"): fewer, larger files per enterprise, record
type and day, and every row under its flow day once the flow is known.

One pass (`compact`, also what the service's background thread runs every `storage.compact_interval_s`):
1. arrival-day files (rows whose flow had not arrived when they were stored, collector/dataset.py) are
   read per (enterprise, record type, arrival day); rows whose flow day the flow-day index now knows are
   written to their flow-day partitions, the rest to one arrival-day file;
2. per (enterprise, record type, day), when at least `compact_min_files` files are smaller than
   `target_file_bytes`, they are merged into files of about that size.

Each replacement is an atomic swap: the new files are written under temporary names and renamed, one
transaction replaces the old entries of the `files` index by the new ones (`Warehouse.swap_files`, which
gives up when a batch removal changed one of the old files meanwhile), and the old files are retired:
deleted once no reader that listed them holds its lease. The pass holds a lease itself while it reads, so
a batch removed meanwhile cannot delete a file under it. Rows keep their `batch_id` (the collector's), so
removing a batch later still removes exactly its rows; `row_keys` is not touched, so replays stay
deduplicated. A crash leaves unrecorded new files or retired old ones, both removed at the next open.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from collector.dataset import SELECT_FILES, DataFile, partition, read_file, row_days, write_new

if TYPE_CHECKING:
    from collector.config import Storage
    from collector.warehouse import Warehouse

log = logging.getLogger(__name__)

__all__ = ["CompactionResult", "Compactor", "compact"]


@dataclass(frozen=True, slots=True)
class CompactionResult:
    files_replaced: int
    files_written: int
    rows_moved: int          # arrival-day rows now under their flow day
    swaps_abandoned: int     # a batch was removed while its file was being merged: next pass


def compact(warehouse: Warehouse, *, min_files: int = 8, target_bytes: int = 64 << 20,
            enterprise_id: str | None = None, stop: Callable[[], bool] = lambda: False) -> CompactionResult:
    """One pass over the dataset (or one enterprise's part of it); `stop` is asked between groups."""
    counts = _Counts()
    for group in _groups(warehouse, "NOT flow_day", enterprise_id):
        if stop():
            break
        with warehouse.leases.lease():
            _move(warehouse, group, min_files, counts)
    for group in _groups(warehouse, f"flow_day AND bytes < {int(target_bytes)}", enterprise_id):
        if stop():
            break
        if len(group) >= min_files:
            for chunk in _chunks(group, target_bytes):
                with warehouse.leases.lease():
                    _merge(warehouse, chunk, counts)
    result = CompactionResult(counts.replaced, counts.written, counts.moved, counts.abandoned)
    if counts.replaced:
        log.info("compaction: %d files replaced by %d, %d rows moved to their flow day, %d swaps abandoned",
                 result.files_replaced, result.files_written, result.rows_moved, result.swaps_abandoned)
    return result


@dataclass(slots=True)
class _Counts:
    replaced: int = 0
    written: int = 0
    moved: int = 0
    abandoned: int = 0

    def swapped(self, ok: bool, old: list[DataFile], new: list[DataFile]) -> None:
        if ok:
            self.replaced += len(old)
            self.written += len(new)
        else:
            self.abandoned += 1


def _groups(warehouse: Warehouse, where: str, enterprise_id: str | None) -> list[list[DataFile]]:
    """The index's files matching `where` (a fixed condition, never user text), per (enterprise, record
    type, day), oldest first."""
    sql = f"{SELECT_FILES} WHERE {where}" + (" AND enterprise_id = ?" if enterprise_id else "")
    with warehouse.cursor() as cur:
        rows = cur.execute(sql + " ORDER BY enterprise_id, record_type, day, stored_at, path",
                           [enterprise_id] if enterprise_id else []).fetchall()
    files = [DataFile(r[0], r[1], r[2], r[3], r[4], r[5], r[6], tuple(r[7])) for r in rows]
    by_day = itertools.groupby(files, key=lambda f: (f.enterprise_id, f.record_type, f.day))
    return [list(g) for _, g in by_day]


def _chunks(group: list[DataFile], target_bytes: int) -> Iterable[list[DataFile]]:
    """Consecutive runs of the group of about `target_bytes` together; a run of one is left alone."""
    chunk: list[DataFile] = []
    size = 0
    for f in group:
        if chunk and size + f.bytes > target_bytes:
            if len(chunk) > 1:
                yield chunk
            chunk, size = [], 0
        chunk.append(f)
        size += f.bytes
    if len(chunk) > 1:
        yield chunk


def _read(warehouse: Warehouse, files: list[DataFile], what: str) -> pa.Table | None:
    """The files' rows, or None with a warning (`what` was not done) when one cannot be read."""
    try:
        tables = [read_file(warehouse.data_dir, f) for f in files]
    except (OSError, pa.ArrowException) as e:
        log.warning("compaction: %s: %s (%s)", files[0].path, what, str(e).splitlines()[0] if str(e) else e)
        return None
    return pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]


def _move(warehouse: Warehouse, group: list[DataFile], min_files: int, counts: _Counts) -> None:
    """One arrival day's files: rows of a known flow day to that day, the rest to one arrival file."""
    first = group[0]
    if (table := _read(warehouse, group, "not read")) is None:
        return
    days = row_days(first.record_type, table,
                    lambda agent, ids: warehouse.flow_days(first.enterprise_id, agent, ids))
    known = len(days) - days.null_count
    if not known and len(group) < min_files:
        return                         # nothing to move, nothing worth merging
    new = _write(warehouse, first, partition(table, days, first.day))
    if new is None:
        return
    ok = warehouse.swap_files(group, new)
    counts.swapped(ok, group, new)
    counts.moved += known if ok else 0


def _merge(warehouse: Warehouse, chunk: list[DataFile], counts: _Counts) -> None:
    first = chunk[0]
    if (table := _read(warehouse, chunk, "not merged")) is None:
        return
    # Rows of one flow together: pi_values of a record sit next to each other for the readers' joins.
    if "flow_id" in table.column_names:
        table = table.take(pc.sort_indices(table, [("flow_id", "ascending")]))
    new = _write(warehouse, first, [(first.day, True, table)])
    if new is None:
        return
    counts.swapped(warehouse.swap_files(chunk, new), chunk, new)


def _write(warehouse: Warehouse, like: DataFile, parts: list[tuple[date, bool, pa.Table]]
           ) -> list[DataFile] | None:
    """The parts as new files, or None (none left behind) when one cannot be written (a full disk)."""
    new: list[DataFile] = []
    try:
        for day, own, rows in parts:
            new.append(write_new(warehouse.data_dir, like, day, own, rows))
    except (OSError, pa.ArrowException) as e:
        for f in new:
            (warehouse.data_dir / f.path).unlink(missing_ok=True)
        log.warning("compaction: %s: not written (%s)", like.path, str(e).splitlines()[0] if str(e) else e)
        return None
    return new


class Compactor:
    """The service's background compaction: a thread running `compact` every `interval_s`, stopped (and
    joined, between two groups) at shutdown."""

    def __init__(self, warehouse: Warehouse, storage: Storage) -> None:
        self.warehouse = warehouse
        self.storage = storage
        self.passes = 0                     # completed passes, for tests
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="compaction", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def run_once(self) -> CompactionResult:
        # The person index's queued rows first (collector/person_index.py): a spot check then has little
        # left to fold.
        folded = self.warehouse.fold_persons(stop=self._stop.is_set)
        if folded:
            log.info("person index: %d queued rows folded in", folded)
        return compact(self.warehouse, min_files=self.storage.compact_min_files,
                       target_bytes=self.storage.target_file_bytes, stop=self._stop.is_set)

    def _loop(self) -> None:
        while not self._stop.wait(self.storage.compact_interval_s):
            try:
                self.run_once()
            except Exception:       # a failed pass (a full disk: StorageError) is retried next time
                log.exception("compaction pass failed")
            self.passes += 1
