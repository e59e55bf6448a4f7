"""Parquet spool on local disk (DESIGN §3, §8): one file per batch, one folder per record type.

A batch is written to a hidden temporary name and renamed into place only when complete, so a reader (the
shipper, `selfcheck --records`) never sees a half-written file. A run can also stage all its batches and
publish them at the end (`Spool.staged`): a run that fails on bad input leaves nothing behind in `--out`.
"""

from __future__ import annotations

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


class Spool:
    """Writes record batches under `out_dir/<record_type>/<batch_id>.parquet`."""

    def __init__(self, out_dir: Path, agent_id: str, enterprise_id: str | None) -> None:
        self.out_dir = Path(out_dir)
        self.agent_id = agent_id
        self.enterprise_id = enterprise_id
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
        os.replace(tmp, final)  # atomic on POSIX: readers see all of the file or none of it
        self.written.append(final)
        log.debug("spooled %d %s rows to %s", len(rows), record_type, final)
        return final

    @contextmanager
    def staged(self) -> Iterator[Spool]:
        """A spool writing into a staging folder that is published into `out_dir` only on success."""
        stage = self.out_dir / f".staging-{uuid.uuid4().hex[:12]}"
        inner = Spool(stage, self.agent_id, self.enterprise_id)
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
