"""The enterprise self-check: an agent's records + the enterprise's filing -> the §7 report, on one machine.

inspection.run_inspection (records, filing and any negative lists into an in-memory DuckDB -> link persons
-> run every check -> assemble the report) -> write `report.json` and `report.html`. Both files are written
to temporary names in the output directory and renamed into place, so a crash never leaves a half-written
report behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from collector.inspection import report_period, run_inspection
from collector.models import Filing, Report
from collector.negative_lists import NegativeList
from collector.reports import render_html, render_json

log = logging.getLogger(__name__)

__all__ = ["report_period", "run_selfcheck", "write_reports"]


def run_selfcheck(
    records_dir: Path,
    filing: Filing,
    out_dir: Path | None,
    *,
    year: int | None = None,
    generated_at: datetime | None = None,
    negative_lists: Sequence[NegativeList] = (),
) -> Report:
    """Check `records_dir` (an agent spool) against `filing`; write the report files when `out_dir` is set.

    The checks run as of min(end of the period, `generated_at` or now) (inspection.run_inspection).
    Raises `store.RecordsError` for an unusable records directory and `OSError` when the output
    directory cannot be written.
    """
    report = run_inspection(Path(records_dir), filing, negative_lists=negative_lists, year=year,
                            now=generated_at).report
    assert report is not None
    if out_dir is not None:
        write_reports(report, filing, Path(out_dir))
    return report


def write_reports(report: Report, filing: Filing | None, out_dir: Path) -> dict[str, Path]:
    """Write report.json and report.html atomically (temp file + rename); returns the final paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    contents = {"report.json": render_json(report), "report.html": render_html(report, filing)}
    staged: dict[str, str] = {}
    try:
        for name, text in contents.items():
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=out_dir)
            staged[name] = tmp
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
        for name, tmp in staged.items():
            os.replace(tmp, out_dir / name)
    finally:
        for tmp in staged.values():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    return {name: out_dir / name for name in contents}
