"""Where a run over capture files is: bytes read of the files' total, packets, MB/s and the time left.

    with watching(paths, stderr_console):          # the command line
        run_capture_stats(paths, ...)              # agent/capture.py reports to it while it reads

The reading layer (agent/capture.py) reports the position of the file on disk every `EVERY` packets — one
`tell()`, no system call per packet — so a gzip'd capture advances by compressed bytes of its compressed
size, and several files add up to one total. On a terminal the report is a rich progress bar on stderr; when
stderr is not a terminal (CI, journald, a pipe) it is a log line (`agent.progress`, INFO) at every tenth of
the way and at least every `LOG_EVERY_S` seconds, and one at the end — once the run has read `EVERY`
packets: a small run stays quiet, so its output (and a bad file's one-line error) is what it was.

The reporter in use is found through a context variable, so the pipeline between the command line and the
reader does not carry it: nothing is reported (and nothing costs) outside `watching`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["EVERY", "CaptureProgress", "LogReporter", "RichReporter", "Snapshot", "current", "watching"]

log = logging.getLogger(__name__)

EVERY = 4096            # packets between two looks at the file position (a power of two: a mask test)
LOG_EVERY_S = 30.0      # without a terminal: a line at least this often while the run advances
MB = 1_000_000
LABEL = "正在分析抓包"


@dataclass(frozen=True, slots=True)
class Snapshot:
    done: int            # bytes read of the files on disk (compressed bytes for a gzip'd file)
    total: int           # the files' sizes on disk
    packets: int
    elapsed_s: float
    file_no: int         # 1-based
    files: int
    name: str

    @property
    def fraction(self) -> float | None:
        return min(self.done / self.total, 1.0) if self.total > 0 else None

    @property
    def rate(self) -> float | None:
        """Bytes per second so far."""
        return self.done / self.elapsed_s if self.elapsed_s > 0 and self.done else None

    @property
    def eta_s(self) -> float | None:
        rate = self.rate
        return max(self.total - self.done, 0) / rate if rate and self.total else None


class Reporter(Protocol):
    def show(self, snap: Snapshot) -> None: ...
    def close(self, snap: Snapshot) -> None: ...     # the run read every file
    def stop(self) -> None: ...                       # the run ended early (an error follows)


def _clock_text(seconds: float | None) -> str:
    if seconds is None:
        return "-:--:--"
    s = int(seconds + 0.5)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class LogReporter:
    """Log lines: one per tenth of the way (and at least every `every_s` seconds), one at the end."""

    def __init__(self, logger: logging.Logger = log, every_s: float = LOG_EVERY_S, steps: int = 10,
                 quiet_packets: int | None = None) -> None:
        self.logger, self.every_s, self.steps = logger, every_s, steps
        self.quiet_packets = EVERY if quiet_packets is None else quiet_packets
        self._next_step = 1
        self._last_s = 0.0
        self._logged = False

    def show(self, snap: Snapshot) -> None:
        if snap.packets < self.quiet_packets:
            return
        fraction = snap.fraction
        step = int(fraction * self.steps) if fraction is not None else 0
        if step < self._next_step and snap.elapsed_s - self._last_s < self.every_s:
            return
        self._next_step = max(step + 1, self._next_step)
        self._last_s = snap.elapsed_s
        self._logged = True
        rate = snap.rate
        self.logger.info("%s (file %d of %d): %s of %s MB, %d packets, %s MB/s, ETA %s",
                         snap.name, snap.file_no, snap.files,
                         f"{fraction:.0%}" if fraction is not None else "?",
                         f"{snap.total / MB:.1f}", snap.packets,
                         f"{rate / MB:.1f}" if rate else "-", _clock_text(snap.eta_s))

    def stop(self) -> None:
        pass

    def close(self, snap: Snapshot) -> None:
        if not self._logged:
            return
        rate = snap.rate
        self.logger.info("read %d capture file(s): %.1f MB, %d packets in %s (%s MB/s)", snap.files,
                         snap.done / MB, snap.packets, _clock_text(snap.elapsed_s),
                         f"{rate / MB:.1f}" if rate else "-")


class RichReporter:
    """A progress bar on a terminal: file, bar, MB of MB, packets, MB/s, time left."""

    def __init__(self, console: Console, get_time: Callable[[], float] | None = None) -> None:
        # rich.progress is imported here, not at the top: agent/capture.py imports this module on every
        # run, live ones included, and only a terminal needs the bar.
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
            TextColumn("{task.fields[packets]:,} packets"), TransferSpeedColumn(), TimeRemainingColumn(),
            console=console, transient=False, get_time=get_time)
        self.task = self.progress.add_task(LABEL, total=None, packets=0)
        self.progress.start()

    def show(self, snap: Snapshot) -> None:
        self.progress.update(self.task, completed=snap.done, total=snap.total or None, packets=snap.packets,
                             description=f"{snap.name} ({snap.file_no}/{snap.files}) {LABEL}")

    def close(self, snap: Snapshot) -> None:
        self.show(snap)
        self.progress.refresh()
        self.progress.stop()

    def stop(self) -> None:
        self.progress.stop()


class CaptureProgress:
    """Bytes read across `paths` (sizes on disk, taken once at the start) and packets; the reader calls
    `file_started`, `advance` and `file_done` (agent/capture.py)."""

    def __init__(self, paths: Sequence[Path], reporter: Reporter,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.paths = [Path(p) for p in paths]
        self.sizes = [_size(p) for p in self.paths]
        self.total = sum(self.sizes)
        self.reporter, self.clock = reporter, clock
        self.start = clock()
        self._index = -1
        self._base = 0           # bytes of the files before the current one
        self._packets_before = 0
        self._done = 0
        self._packets = 0

    @property
    def started(self) -> bool:
        return self._index >= 0

    def file_started(self, path: Path) -> None:
        if self.started:
            self.file_done(self._packets - self._packets_before)
        path = Path(path)
        # The files are read in the order given; a file given twice is read twice.
        nxt = next((i for i in range(self._index + 1, len(self.paths)) if self.paths[i] == path), None)
        if nxt is None:      # not one of the files announced: count it as it comes
            self.paths.append(path)
            self.sizes.append(_size(path))
            self.total += self.sizes[-1]
            nxt = len(self.paths) - 1
        if not self.started:
            self.start = self.clock()    # the rate is the reading's: engine start-up is not counted
        self._base = sum(self.sizes[:nxt])
        self._index = nxt
        self._packets_before = self._packets
        self._done = self._base
        self.reporter.show(self.snapshot())

    def advance(self, position: int, packets: int) -> None:
        """`position`: bytes of the current file read so far; `packets`: its packets so far."""
        self._done = self._base + min(position, self.sizes[self._index])
        self._packets = self._packets_before + packets
        self.reporter.show(self.snapshot())

    def file_done(self, packets: int) -> None:
        """The current file is read (to its end, or to a cut or corrupt record: the rest is not read)."""
        self.advance(self.sizes[self._index], packets)

    def close(self) -> None:
        self.reporter.close(self.snapshot())

    def snapshot(self) -> Snapshot:
        i = max(self._index, 0)
        name = self.paths[i].name if self.paths else ""
        return Snapshot(self._done, self.total, self._packets, self.clock() - self.start, i + 1,
                        len(self.paths), name)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


_CURRENT: ContextVar[CaptureProgress | None] = ContextVar("capture_progress", default=None)


def current() -> CaptureProgress | None:
    """The progress the reading layer reports to, if a command line is watching."""
    return _CURRENT.get()


@contextlib.contextmanager
def watching(paths: Sequence[Path], console: Console | None = None, *,
             reporter: Reporter | None = None) -> Iterator[CaptureProgress]:
    """Report the reading of `paths`: a bar on `console` when it is a terminal, else log lines (made
    visible at INFO whatever the command's log level: they are the run's only sign of life)."""
    if console is None:
        from rich.console import Console

        console = Console(stderr=True)
    logger = logging.getLogger(__name__)
    level = logger.level
    if reporter is None:
        if console.is_terminal:
            reporter = RichReporter(console)
        else:
            reporter = LogReporter(logger)
            if logger.getEffectiveLevel() > logging.INFO:
                logger.setLevel(logging.INFO)
    progress = CaptureProgress(paths, reporter)
    token = _CURRENT.set(progress)
    try:
        yield progress
    except BaseException:
        reporter.stop()       # the bar ends where it was; the caller's one-line error follows it
        raise
    else:
        if progress.started:
            progress.close()
        else:
            reporter.stop()
    finally:
        _CURRENT.reset(token)
        logger.setLevel(level)

