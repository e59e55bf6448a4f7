"""Child processes for bench/collector_scale.py: start one in its own process group, sample the resident
memory of its whole tree (the service's decoder workers, Spark's JVM) from /proc, and reap it with
os.wait4 so its own ru_maxrss is known. Whatever happens to the bench, the group is ended on the way out:
no process is left behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger(__name__)

__all__ = ["Finished", "Tracked", "run_measured", "tracked"]

_PAGE = os.sysconf("SC_PAGE_SIZE")


def _children() -> dict[int, list[int]]:
    """ppid -> pids, from /proc/*/stat."""
    out: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
            ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
            out.setdefault(ppid, []).append(int(entry.name))
    return out


def tree_rss(pid: int) -> int:
    """Bytes resident in `pid` and all its descendants now."""
    children, total, todo = _children(), 0, [pid]
    while todo:
        p = todo.pop()
        with contextlib.suppress(OSError, ValueError, IndexError), open(f"/proc/{p}/statm", "rb") as f:
            total += int(f.read().split()[1]) * _PAGE
        todo.extend(children.get(p, ()))
    return total


@dataclass(frozen=True, slots=True)
class Finished:
    returncode: int
    wall_s: float
    maxrss_bytes: int          # the child's own peak (wait4's ru_maxrss)
    tree_peak_bytes: int       # peak of the sampled sum over the child and its descendants


class Tracked:
    """A started child; `stop()` or `wait()` reaps it with wait4."""

    def __init__(self, argv: Sequence[str], *, env: dict[str, str] | None = None, stdout: Path | None = None,
                 interval_s: float = 0.2) -> None:
        self._out: BinaryIO | None = open(stdout, "wb") if stdout else None     # noqa: SIM115 - closed in _reap
        self.argv = list(argv)
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(self.argv, env=env, stdout=self._out or subprocess.DEVNULL,
                                     stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        self.peak = 0
        self._done = threading.Event()
        self._sampler = threading.Thread(target=self._sample, args=(interval_s,), daemon=True)
        self._sampler.start()

    def _sample(self, interval_s: float) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, tree_rss(self.proc.pid))
            self._done.wait(interval_s)

    def wait(self, timeout: float | None = None) -> Finished:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(self.proc.pid, os.WNOHANG)
            if pid:
                return self._reap(status, usage.ru_maxrss * 1024)
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{self.argv[:3]} still running after {timeout} s")
            time.sleep(0.05)

    def _reap(self, status: int, maxrss: int) -> Finished:
        wall = time.perf_counter() - self.started
        self._done.set()
        self._sampler.join()
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        self._end_group()
        if self._out is not None:
            self._out.close()
        return Finished(self.proc.returncode, wall, maxrss, max(self.peak, maxrss))

    def stop(self, timeout: float = 30.0) -> Finished:
        """SIGTERM (the service shuts down gracefully), then SIGKILL after `timeout`."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            return self.wait(timeout)
        except TimeoutError:
            log.warning("%s did not stop on SIGTERM; killing its group", self.proc.pid)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            return self.wait()

    def _end_group(self) -> None:
        # Grandchildren the child did not take with it (decoder workers exit when their socket closes).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def running(self) -> bool:
        return self.proc.returncode is None


@contextlib.contextmanager
def tracked(argv: Sequence[str], **kw: object) -> Iterator[Tracked]:
    """A Tracked child that is stopped (and its group ended) when the block is left in any way."""
    t = Tracked(argv, **kw)      # type: ignore[arg-type]
    try:
        yield t
    finally:
        if t.running():
            t.stop()


def run_measured(argv: Sequence[str], *, env: dict[str, str] | None = None, stdout: Path | None = None,
                 timeout: float = 3600.0) -> Finished:
    """Run to completion; wall time and peak memory."""
    with tracked(argv, env=env, stdout=stdout) as t:
        return t.wait(timeout)
