"""Decode an uploaded Parquet batch where a hostile one cannot hurt the service (DESIGN §9 "Hostile input").

The uploader writes the file, footer sizes included: 37 KB can hold a 1 GiB string (zstd), a 4 MB dictionary
value referenced by 1,000 rows decodes to 4 GB, a page header can ask for 2 GB. No check on decoded batches
precedes the first allocation, so the decode runs in a worker process with a capped data segment
(RLIMIT_DATA = idle size + decode_memory_bytes: a failed allocation is a MemoryError there, at worst that
process dies) and a capped wall time (setitimer; SIGALRM's default action kills only the worker). Per record
batch it counts rows, the longest string and the decoded size, reading BYTE_ARRAY columns as dictionaries so
a repeated huge value is measured by reference before it is decoded. Callers get one `RequestProblem` (413 a
cap, 422 unreadable) or the table `pq.read_table` would give, as Arrow IPC (never a pickle from a process
that parsed hostile bytes). Workers are `python -c` children on a socketpair (multiprocessing's spawn re-runs
the service's main script; fork is unsafe in a threaded server): at most max_concurrent_uploads, kept between
batches, replaced after a failure, gone when their socket closes or their parent dies.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import resource
import select
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from collector.errors import RequestProblem

if TYPE_CHECKING:
    from collector.config import Limits

__all__ = ["BATCH_ROWS", "read_batch_table", "shutdown", "worker_pids"]

log = logging.getLogger(__name__)

# Rows per checked record batch. Strings stay dictionary-encoded until checked, so a batch's size before the
# checks is its indices and each dictionary; every batch copies its dictionaries, so fewer are faster
# (50,000 flows: 23 ms at 65,536, 34 ms at 8,192).
BATCH_ROWS = 65_536
MAX_COLUMNS = 1000          # no record type comes close; bounds what a footer can make the parent hold
STARTUP_TIMEOUT_S = 60.0    # a worker importing pyarrow on a loaded machine
GRACE_S = 2.0               # parent's deadline beyond the worker's own timer
_LINE_MAX = 64 * 1024
_MEM, _TIME = "decode_memory_bytes", "decode_timeout_s"
_CAPS = ("max_decoded_bytes", "max_rows", "max_string_bytes", _MEM, _TIME)
_BOOT = "import sys; from collector.batchread import _worker_main; _worker_main(int(sys.argv[1]))"
_CRASH = {-signal.SIGSEGV, -signal.SIGBUS, -signal.SIGILL, -signal.SIGFPE}


def _memory(caps: dict[str, Any]) -> RequestProblem:
    return RequestProblem(413, "body", f"body: decoding needs more than decode_memory_bytes {caps[_MEM]}")


def _timeout(caps: dict[str, Any]) -> RequestProblem:
    return RequestProblem(413, "body", f"body: decoding takes longer than decode_timeout_s {caps[_TIME]}")


def _unreadable(why: str) -> RequestProblem:
    return RequestProblem(422, "body", f"body: not a readable Parquet file ({why[:300]})")


# ---- in the worker: checks while decoding ------------------------------------------------------------------

def _binary_like(t: pa.DataType) -> bool:
    return any(f(t) for f in (pa.types.is_string, pa.types.is_large_string, pa.types.is_binary,
                              pa.types.is_large_binary))


def _nested(t: pa.DataType) -> bool:   # one child array of values: flatten() respects slicing and nulls
    return any(f(t) for f in (pa.types.is_list, pa.types.is_large_list, pa.types.is_fixed_size_list,
                              pa.types.is_map))


def _longest(arr: pa.Array) -> int:
    """Bytes of the longest string or binary value anywhere in `arr` (a dictionary's values all count)."""
    t = arr.type
    if pa.types.is_dictionary(t):
        return _longest(arr.dictionary)
    if _binary_like(t):
        return int(pc.max(pc.binary_length(arr)).as_py() or 0) if len(arr) else 0
    if pa.types.is_fixed_size_binary(t):
        return int(t.byte_width)
    if _nested(t):
        return _longest(arr.flatten())
    if pa.types.is_struct(t):
        return max((_longest(child) for child in arr.flatten()), default=0)
    return 0


def _decoded_nbytes(arr: pa.Array) -> int:
    """Bytes `arr` takes once its dictionaries are decoded, computed without decoding them."""
    t, n = arr.type, len(arr)
    if pa.types.is_dictionary(t) and _binary_like(t.value_type):
        referenced = pc.sum(pc.take(pc.binary_length(arr.dictionary), arr.indices)).as_py() or 0
        return int(referenced) + 8 * (n + 1) + n // 8 + 1
    if _nested(t):
        return 8 * (n + 1) + n // 8 + 1 + _decoded_nbytes(arr.flatten())
    if pa.types.is_struct(t):
        return n // 8 + 1 + sum(_decoded_nbytes(child) for child in arr.flatten())
    return int(arr.nbytes)


def _too_long(name: str, what: str, cap: int) -> RequestProblem:
    where = f"column {name}" if name.isprintable() and len(name) <= 100 else f"column {name[:100]!r}"
    return RequestProblem(413, where, f"{where}: {what} max_string_bytes {cap}")


def _decode(body: pa.Buffer, caps: dict[str, Any]) -> tuple[pa.Schema, list[pa.RecordBatch]]:
    """The file's record batches in its own Arrow types, or the first cap it exceeds."""
    meta = pq.ParquetFile(pa.BufferReader(body)).metadata
    if meta.num_columns > MAX_COLUMNS:
        raise RequestProblem(413, "body", f"body: {meta.num_columns} columns exceed the cap of {MAX_COLUMNS}")
    plain = pq.ParquetFile(pa.BufferReader(body), metadata=meta)
    target, leaves = plain.schema_arrow, [plain.schema.column(i) for i in range(meta.num_columns)]
    string_cap = caps["max_string_bytes"]
    for leaf in leaves:
        if leaf.physical_type == "FIXED_LEN_BYTE_ARRAY" and leaf.length > string_cap:
            raise _too_long(leaf.path, f"values of {leaf.length} bytes exceed", string_cap)
    reader = pq.ParquetFile(pa.BufferReader(body), metadata=meta,
                            read_dictionary=[c.path for c in leaves if c.physical_type == "BYTE_ARRAY"])
    rows = decoded = 0
    out: list[pa.RecordBatch] = []
    for batch in reader.iter_batches(batch_size=BATCH_ROWS, use_threads=False):
        rows += batch.num_rows
        if rows > caps["max_rows"]:
            raise RequestProblem(413, "body", f"body: more than max_rows {caps['max_rows']} rows")
        columns = []
        for field, arr in zip(target, batch.columns, strict=True):
            longest = _longest(arr)
            if longest > string_cap:
                raise _too_long(field.name, f"a value of {longest} bytes exceeds", string_cap)
            # A column the file's schema keeps as a dictionary stays one: count what is held, copies and all.
            decoded += int(arr.nbytes) if pa.types.is_dictionary(field.type) else _decoded_nbytes(arr)
            if decoded > caps["max_decoded_bytes"]:
                raise RequestProblem(413, "body", f"body: decodes to more than max_decoded_bytes "
                               f"{caps['max_decoded_bytes']}")
            columns.append(arr if arr.type.equals(field.type) else arr.cast(field.type))
        out.append(pa.RecordBatch.from_arrays(columns, schema=target))
    return target, out


def _vm_data() -> int:
    """This process's data segment now, which RLIMIT_DATA counts (0 where /proc is missing)."""
    with contextlib.suppress(OSError), open("/proc/self/status") as f:
        return next((int(ln.split()[1]) * 1024 for ln in f if ln.startswith("VmData:")), 0)
    return 0


def _send_line(wfile: BinaryIO, message: dict[str, Any]) -> None:
    wfile.write(json.dumps(message).encode() + b"\n")
    wfile.flush()


def _serve_one(rfile: BinaryIO, wfile: BinaryIO, caps: dict[str, Any], size: int) -> bool:
    """One batch: read it, check it, answer. False when this worker must not take another one."""
    retire = False
    try:
        body = rfile.read(size)      # a buffered reader returns `size` bytes unless the socket closed
        if len(body) != size:
            return False
        schema, batches = _decode(pa.py_buffer(body), caps)
    except RequestProblem as e:
        problem = e
    except (MemoryError, pa.ArrowMemoryError):
        problem, retire = _memory(caps), True      # a heap that ran out once is not trusted again
    except Exception as e:   # anything else the decoder says about a hostile file: it is not readable
        problem = _unreadable((str(e).splitlines() or [type(e).__name__])[0])
    else:
        del body
        _send_line(wfile, {"status": 200})
        with pa.ipc.new_stream(pa.PythonFile(wfile, mode="w"), schema) as w:
            for b in batches:
                w.write_batch(b)
        wfile.flush()
        return True
    _send_line(wfile, {"status": problem.status, "field": problem.field, "message": str(problem),
                       "retire": retire})
    return not retire


def _worker_main(fd: int) -> None:
    """Serve batches on socket `fd` until it closes or the parent is gone."""
    # The service decides when its workers stop (Ctrl-C and systemd reach the whole group).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    # malloc, not mimalloc: mimalloc reserves a 1 GiB arena on first use, which either exceeds the cap
    # (every allocation fails) or, counted as idle, lets a batch use a GiB beyond it unseen.
    pa.set_memory_pool(pa.system_memory_pool())
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    sock, parent = socket.socket(fileno=fd), os.getppid()
    rfile, wfile = sock.makefile("rb"), sock.makefile("wb")
    idle = _vm_data()
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):   # the service went away mid-answer
        _send_line(wfile, {"ready": os.getpid()})
    waiting = select.poll()     # not select(): the inherited fd's number can be above FD_SETSIZE
    waiting.register(sock, select.POLLIN)
    while True:
        while not waiting.poll(1000):
            if os.getppid() != parent:
                return
        line = rfile.readline(_LINE_MAX)
        if not line:
            return
        job = json.loads(line)
        caps = job["caps"]
        cap = idle + caps[_MEM]
        resource.setrlimit(resource.RLIMIT_DATA, (cap if hard == resource.RLIM_INFINITY else min(cap, hard),
                                                  hard))
        signal.setitimer(signal.ITIMER_REAL, caps[_TIME])
        again = False
        try:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                again = _serve_one(rfile, wfile, caps, job["size"])
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            pa.default_memory_pool().release_unused()
            resource.setrlimit(resource.RLIMIT_DATA, (hard, hard))
        if not again:
            return


# ---- in the service: a small pool of workers ---------------------------------------------------------------

class _Lost(Exception):
    """The worker stopped answering (died, timed out, or was shut down)."""


class _Worker:
    def __init__(self) -> None:
        ours, theirs = socket.socketpair()
        env = dict(os.environ, ARROW_DEFAULT_MEMORY_POOL="system")      # see _worker_main
        root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        try:
            self.proc = subprocess.Popen([sys.executable, "-c", _BOOT, str(theirs.fileno())],
                                         pass_fds=(theirs.fileno(),), env=env, stdin=subprocess.DEVNULL)
        finally:
            theirs.close()
        self.sock = ours
        self.rfile, self.wfile = ours.makefile("rb"), ours.makefile("wb")
        self.ready, self.usable = False, True
        log.info("batch decoder %d started", self.proc.pid)

    def _line(self, timeout: float) -> dict[str, Any]:
        self.sock.settimeout(timeout)
        try:
            line = self.rfile.readline(_LINE_MAX)
        except (OSError, ValueError) as e:   # TimeoutError is an OSError; ValueError: closed by shutdown()
            raise _Lost(type(e).__name__) from None
        if not line.endswith(b"\n"):
            raise _Lost("closed")
        return dict(json.loads(line))

    def run(self, body: bytes, caps: dict[str, Any]) -> pa.Table:
        if not self.ready:
            try:
                self._line(STARTUP_TIMEOUT_S)
            except _Lost:
                self.usable = False
                raise RuntimeError(f"the batch decoder did not start (exit {self.stop(wait=2.0)}); "
                                   "the service's log has its error") from None
            self.ready = True
        deadline = caps[_TIME] + GRACE_S
        try:
            self.sock.settimeout(deadline)
            self.wfile.write(json.dumps({"size": len(body), "caps": caps}).encode() + b"\n")
            self.wfile.write(body)
            self.wfile.flush()
        except (OSError, ValueError) as e:
            raise _Lost(type(e).__name__) from None
        reply = self._line(deadline)
        if reply["status"] != 200:
            self.usable = not reply.get("retire")
            raise RequestProblem(reply["status"], reply.get("field"), reply["message"])
        try:
            return pa.ipc.open_stream(pa.PythonFile(self.rfile, mode="r")).read_all()
        except (OSError, ValueError, pa.ArrowException) as e:
            raise _Lost(type(e).__name__) from None

    def stop(self, *, wait: float = 0.0) -> int | None:
        """Close the socket (an idle worker exits on EOF), then kill what is still there; the exit code."""
        self.usable = False
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        for f in (self.rfile, self.wfile, self.sock):
            with contextlib.suppress(OSError):
                f.close()
        try:
            return self.proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


class _Pool:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._idle: list[_Worker] = []
        self._all: set[_Worker] = set()
        self._busy = self._epoch = 0

    def _spawn(self, *, idle: bool = False) -> _Worker:
        w = _Worker()
        with self._cond:
            self._all.add(w)
            if idle:
                self._idle.append(w)
        return w

    def run(self, body: bytes, caps: dict[str, Any], slots: int) -> pa.Table:
        with self._cond:
            while self._busy >= slots:
                self._cond.wait()
            self._busy += 1
            epoch = self._epoch
            worker = self._idle.pop() if self._idle else None
        try:
            worker = worker or self._spawn()
            try:
                return worker.run(body, caps)
            except _Lost as e:
                raise self._lost(worker, caps, str(e), epoch) from None
        finally:
            self._release(worker, epoch)

    def _lost(self, worker: _Worker, caps: dict[str, Any], why: str, epoch: int) -> Exception:
        if epoch != self._epoch:
            return RequestProblem(503, None, "the collector is shutting down; send the batch again")
        timed_out = why == "TimeoutError"
        code = worker.stop(wait=0.0 if timed_out else 2.0)
        log.warning("batch decoder %d stopped (%s, exit %s); starting another", worker.proc.pid, why, code)
        if timed_out or code == -signal.SIGALRM:
            return _timeout(caps)
        if code is None or code >= 0:      # exited on its own: a bug in the worker, not the batch's doing
            return RuntimeError(f"the batch decoder failed (exit {code}); the service's log has its error")
        # Killed: SIGSEGV and kin on a file it cannot parse; SIGKILL (OOM killer), SIGABRT (bad_alloc).
        return _unreadable("the decoder crashed on it") if code in _CRASH else _memory(caps)

    def _release(self, worker: _Worker | None, epoch: int) -> None:
        keep = replace = False
        with self._cond:
            self._busy -= 1
            if worker is not None:
                keep = worker.usable and epoch == self._epoch
                if keep:
                    self._idle.append(worker)
                else:
                    self._all.discard(worker)
                    replace = epoch == self._epoch and worker.ready
            self._cond.notify()
        if worker is not None and not keep:
            worker.stop(wait=2.0)
        if replace:
            self._spawn(idle=True)     # starts importing now, so the next batch does not wait for it

    def shutdown(self) -> None:
        with self._cond:
            workers, self._all, self._idle = list(self._all), set(), []
            self._epoch += 1
            self._cond.notify_all()
        codes = {w.proc.pid: w.stop(wait=2.0) for w in workers}
        log.info("batch decoders stopped (pid: exit code): %s", codes)

    def pids(self) -> list[int]:
        with self._cond:
            return sorted(w.proc.pid for w in self._all)


_POOL = _Pool()
atexit.register(_POOL.shutdown)


def read_batch_table(body: bytes, limits: Limits) -> pa.Table:
    """The uploaded Parquet file as an Arrow table (as `pq.read_table` reads it), decoded in a worker
    within `limits`; raises `RequestProblem` 413 (a cap, its name and value in the message) or 422."""
    caps = {name: getattr(limits, name) for name in _CAPS}
    return _POOL.run(body, caps, limits.max_concurrent_uploads)


def shutdown() -> None:
    """Stop every worker (the service's lifespan calls this); later batches start new ones."""
    _POOL.shutdown()


def worker_pids() -> list[int]:
    """Process ids of the current workers (for tests and diagnostics)."""
    return _POOL.pids()
