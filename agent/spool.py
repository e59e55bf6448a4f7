"""Parquet spool on local disk (DESIGN §3, §8): one file per batch, one folder per record type.

A batch is written to a hidden temporary name and renamed into place only when complete, so a reader (the
shipper, `selfcheck --records`) never sees a half-written file. A run can also stage all its batches and
publish them at the end (`Spool.staged`): a run that fails on bad input leaves nothing behind in `--out`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pyarrow.parquet as pq

from agent.records import RECORD_TYPES, Envelope, to_table

log = logging.getLogger(__name__)


def new_batch_id() -> str:
    """Batch ids are unique per file; the collector deduplicates uploads by them."""
    return uuid.uuid4().hex


DROPPED_FILE = ".dropped"   # one line per dropped batch: "<record_type> <rows>", appended by any process


class Spool:
    """Writes record batches under `out_dir/<record_type>/<batch_id>.parquet`.

    With `max_bytes`, a batch that would take the spool past it is not written: the loss is logged as an
    error and appended to `out_dir/.dropped` (detector workers write batches too, from their own
    processes; an O_APPEND line is their shared counter), and capture_stats reports it."""

    def __init__(self, out_dir: Path, agent_id: str, enterprise_id: str | None,
                 max_bytes: int | None = None) -> None:
        self.out_dir = Path(out_dir)
        self.agent_id = agent_id
        self.enterprise_id = enterprise_id
        self.max_bytes = max_bytes
        self.written: list[Path] = []

    def write(self, record_type: str, rows: Sequence[object]) -> Path | None:
        """Write one batch; returns its path, or None when there is nothing to write."""
        if record_type not in RECORD_TYPES:
            raise ValueError(f"unknown record type {record_type!r}")
        if not rows:
            return None
        batch_id = new_batch_id()
        table = to_table(record_type, rows, Envelope(self.agent_id, self.enterprise_id, batch_id))
        folder = self.out_dir / record_type
        folder.mkdir(parents=True, exist_ok=True)
        final = folder / f"{batch_id}.parquet"
        tmp = folder / f".{batch_id}.parquet.tmp"
        pq.write_table(table, tmp, compression="zstd")
        if self.max_bytes is not None and self.size_bytes() > self.max_bytes:
            tmp.unlink(missing_ok=True)
            self._dropped(record_type, len(rows))
            return None
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())   # a crash after the rename must not leave a file of zeros behind
        os.replace(tmp, final)  # atomic on POSIX: readers see all of the file or none of it
        self.written.append(final)
        log.debug("spooled %d %s rows to %s", len(rows), record_type, final)
        return final

    def remove_partial(self) -> int:
        """Delete batch files a killed process left half-written (`.<batch>.parquet.tmp`): never complete,
        never shipped. Only for a spool one agent owns, at its start."""
        removed = 0
        for path in self.out_dir.glob("*/.*.parquet.tmp"):
            path.unlink(missing_ok=True)
            removed += 1
        if removed:
            log.warning("removed %d half-written batch file(s) of an earlier run from %s", removed,
                        self.out_dir)
        return removed

    def size_bytes(self) -> int:
        """Bytes of every batch file under the spool, complete or being written."""
        total = 0
        for path in self.out_dir.glob("*/*.parquet*"):
            with contextlib.suppress(FileNotFoundError):   # shipped meanwhile
                total += path.stat().st_size
        return total

    def _dropped(self, record_type: str, rows: int) -> None:
        log.error("spool %s is full (spool_max_bytes %d): %d %s rows NOT written", self.out_dir,
                  self.max_bytes, rows, record_type)
        fd = os.open(self.out_dir / DROPPED_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, f"{record_type} {rows}\n".encode())
        finally:
            os.close(fd)

    def dropped_rows(self) -> int:
        """Rows dropped so far for a full spool, by this process and the detector workers."""
        try:
            lines = (self.out_dir / DROPPED_FILE).read_text().splitlines()
        except FileNotFoundError:
            return 0
        return sum(int(line.split()[1]) for line in lines if len(line.split()) == 2)

    @contextmanager
    def staged(self) -> Iterator[Spool]:
        """A spool writing into a staging folder that is published into `out_dir` only on success."""
        stage = self.out_dir / f".staging-{uuid.uuid4().hex[:12]}"
        inner = Spool(stage, self.agent_id, self.enterprise_id, self.max_bytes)
        try:
            yield inner
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise
        # Every complete batch in the stage, including those a detector worker process wrote there.
        for path in sorted(stage.glob("*/[!.]*.parquet")):
            dest = self.out_dir / path.parent.name / path.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, dest)
            self.written.append(dest)
        shutil.rmtree(stage, ignore_errors=True)


def spool_files(records_dir: Path, record_type: str) -> list[Path]:
    """The complete batch files of one record type (temporary and staged files are not listed)."""
    return sorted((Path(records_dir) / record_type).glob("[!.]*.parquet"))
