"""collector/batchread.py: each cap of `Limits` on what a Parquet batch decodes to, checked in a worker
process, whatever the file's own metadata claims; and the worker pool surviving what kills a worker."""

from __future__ import annotations

import dataclasses
import io
import logging
import signal
import subprocess
import sys
import textwrap
import time
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from agent.records import Envelope, to_table
from collector import batchread
from collector.config import Limits
from collector.errors import RequestProblem
from collector.ingest import BatchError, parse_batch
from tests.collector.builders import detection, flow
from tests.conftest import ROOT
from tests.security.test_parquet_bombs import alive, dictionary_bomb, long_value_file, one_flow_table

MIB = 1024 * 1024


def parquet(table: pa.Table, **write: Any) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd", **write)
    return buf.getvalue()


def flows_table(n: int, **changes: Any) -> pa.Table:
    rows = [flow(f"br-{i:06d}", src_port=1024 + i % 60000, bytes_out=i, **changes) for i in range(n)]
    return to_table("flows", rows, Envelope("gw-hz-01", "hz-demo", "br"))


def refused(body: bytes, limits: Limits) -> RequestProblem:
    with pytest.raises(RequestProblem) as err:
        batchread.read_batch_table(body, limits)
    assert "\n" not in str(err.value)
    return err.value


@pytest.fixture(scope="module")
def normal() -> tuple[bytes, pa.Table]:
    """The agent's usual batch: 10,000 flows as its spool writes them."""
    body = parquet(flows_table(10_000))
    return body, pq.read_table(pa.BufferReader(body))


def test_a_normal_batch_round_trips_identical(normal: tuple[bytes, pa.Table]) -> None:
    body, expected = normal
    table = batchread.read_batch_table(body, Limits())
    assert table.equals(expected) and table.schema.equals(expected.schema)
    dets = to_table("detections", [detection(f"d{i}", "mobile_cn") for i in range(3000)],
                    Envelope("gw-hz-01", "hz-demo", "br"))
    got = batchread.read_batch_table(parquet(dets), Limits())
    assert got.equals(pq.read_table(pa.BufferReader(parquet(dets))))
    assert got.schema.field("key_paths").type == pa.list_(pa.string())


def test_rows_over_max_rows() -> None:
    err = refused(parquet(flows_table(2001)), Limits(max_rows=2000))
    assert (err.status, err.field, str(err)) == (413, "body", "body: more than max_rows 2000 rows")
    assert batchread.read_batch_table(parquet(flows_table(2000)), Limits(max_rows=2000)).num_rows == 2000


@pytest.mark.parametrize("use_dictionary", [True, False], ids=["dictionary-encoded", "plain"])
def test_a_string_over_max_string_bytes_names_its_column(use_dictionary: bool) -> None:
    body = parquet(flows_table(3, server_name="s" * 1001), use_dictionary=use_dictionary)
    err = refused(body, Limits(max_string_bytes=1000))
    assert (err.status, err.field) == (413, "column server_name")
    assert str(err) == "column server_name: a value of 1001 bytes exceeds max_string_bytes 1000"
    assert batchread.read_batch_table(body, Limits(max_string_bytes=1001)).num_rows == 3


@pytest.mark.parametrize("column", ["key_paths", "masked_samples"])
def test_list_of_string_columns_are_checked_too(column: str) -> None:
    row = dataclasses.replace(detection("d1", "mobile_cn"), **{column: ("short", "x" * 5000)})
    body = parquet(to_table("detections", [row], Envelope("gw-hz-01", "hz-demo", "br")))
    err = refused(body, Limits(max_string_bytes=4096))
    assert (err.status, err.field) == (413, f"column {column}") and "max_string_bytes 4096" in str(err)


def test_a_dictionary_bomb_is_refused_by_decoded_size_without_decoding_it() -> None:
    # One 4 MiB value referenced by 1,024 rows: 56 KB on the wire, ≈ 4 MiB by the footer, 4 GiB decoded.
    body = dictionary_bomb("br-dict", 4 * MIB, 1024)
    meta = pq.ParquetFile(pa.BufferReader(body)).metadata
    assert len(body) < MIB and meta.row_group(0).total_byte_size < 5 * MIB
    limits = Limits(max_string_bytes=8 * MIB, max_decoded_bytes=64 * MIB)
    err = refused(body, limits)
    assert (err.status, err.field) == (413, "body")
    assert str(err) == f"body: decodes to more than max_decoded_bytes {64 * MIB}"
    # What the worker holds while it judges the file, measured here: the worker's own decoder run in this
    # process with every Arrow allocation counted. The cap is judged from the dictionary — the peak stays
    # far below the 64 MiB it refuses, let alone the 4 GiB a decoded column would take.
    original = pa.default_memory_pool()
    counted = pa.proxy_memory_pool(original)
    pa.set_memory_pool(counted)
    try:
        with pytest.raises(RequestProblem) as local:
            batchread._decode(pa.py_buffer(body), {name: getattr(limits, name) for name in batchread._CAPS})
    finally:
        pa.set_memory_pool(original)
    assert str(local.value) == str(err)
    assert 4 * MIB <= counted.max_memory() < 32 * MIB, counted.max_memory()     # the dictionary, held once


def test_a_footer_that_understates_the_size_is_not_believed() -> None:
    # An 8 MiB value whose footer still claims the template's few bytes for column and row group.
    body = long_value_file(one_flow_table("br-small"), "server_name", 8 * MIB, honest_footer=False)
    meta = pq.ParquetFile(pa.BufferReader(body)).metadata
    i = meta.schema.to_arrow_schema().get_field_index("server_name")
    assert meta.row_group(0).column(i).total_uncompressed_size < 1024
    assert meta.row_group(0).total_byte_size < 4096
    err = refused(body, Limits(max_string_bytes=16 * MIB, max_decoded_bytes=4 * MIB))
    assert (err.status, str(err)) == (413, f"body: decodes to more than max_decoded_bytes {4 * MIB}")
    err = refused(body, Limits())
    assert (err.status, err.field) == (413, "column server_name")


def test_the_gib_bomb_hits_the_memory_budget_and_the_worker_is_replaced(normal: tuple[bytes, pa.Table]
                                                                         ) -> None:
    body, expected = normal
    batchread.read_batch_table(body, Limits())
    before = set(batchread.worker_pids())
    bomb = long_value_file(one_flow_table("br-gib"), "server_name", 1 << 30)
    err = refused(bomb, Limits(decode_memory_bytes=256 * MIB, max_concurrent_uploads=1))
    assert (err.status, err.field) == (413, "body")
    assert str(err) == f"body: decoding needs more than decode_memory_bytes {256 * MIB}"
    after = set(batchread.worker_pids())
    assert before - after and not any(alive(pid) for pid in before - after)    # retired and gone
    assert after - before                                                       # a fresh one waits
    assert batchread.read_batch_table(body, Limits()).equals(expected)


def test_a_page_header_claiming_2_gb_is_a_memory_refusal_not_an_allocation() -> None:
    liar = long_value_file(one_flow_table("br-liar"), "server_name", 100, claim_uncompressed=2**31 - 1)
    err = refused(liar, Limits(decode_memory_bytes=512 * MIB))
    assert (err.status, err.field) == (413, "body") and "decode_memory_bytes" in str(err)


def test_a_decode_past_its_time_budget_is_413_its_worker_killed_and_the_next_batch_works(
        normal: tuple[bytes, pa.Table], caplog: pytest.LogCaptureFixture) -> None:
    big = parquet(pa.table({"n": pa.array(range(3_000_000), pa.int64()),
                            "s": pa.array([f"v{i % 50_000}" for i in range(3_000_000)])}))
    body, expected = normal
    batchread.shutdown()
    batchread.read_batch_table(body, Limits())          # one worker, idle: the one the next batch gets
    [worker] = batchread.worker_pids()
    with caplog.at_level(logging.WARNING, logger=batchread.__name__):
        err = refused(big, Limits(decode_timeout_s=0.05, max_rows=10_000_000))
    assert (err.status, err.field, str(err)) == (413, "body", "body: decoding takes longer than "
                                                 "decode_timeout_s 0.05")
    # Stopped at its deadline, not left to finish: killed by its own timer (SIGALRM) or, if that did not
    # fire first, by the service at the parent's deadline — and gone, replaced by a fresh worker.
    stopped = [m.removesuffix("; starting another") for m in caplog.messages
               if m.startswith(f"batch decoder {worker} ")]
    assert stopped in ([f"batch decoder {worker} stopped (closed, exit {-signal.SIGALRM})"],
                       [f"batch decoder {worker} stopped (TimeoutError, exit {-signal.SIGKILL})"]), stopped
    assert not alive(worker) and worker not in batchread.worker_pids()
    assert batchread.read_batch_table(body, Limits()).equals(expected)


@pytest.mark.parametrize("body", [b"", b"not parquet", b"PAR1" + b"\0" * 100 + b"PAR1"])
def test_an_unreadable_body_is_422(body: bytes, normal: tuple[bytes, pa.Table]) -> None:
    err = refused(body, Limits())
    assert (err.status, err.field) == (422, "body") and str(err).startswith("body: not a readable Parquet")
    truncated = normal[0][: len(normal[0]) // 2] + normal[0][-8:]
    assert refused(truncated, Limits()).status == 422


def test_wide_and_fixed_width_files_are_refused_from_their_schema() -> None:
    wide = parquet(pa.table({f"c{i}": [i] for i in range(batchread.MAX_COLUMNS + 1)}))
    assert refused(wide, Limits()).status == 413
    fixed = parquet(pa.table({"blob": pa.array([b"x" * 100_000], pa.binary(100_000))}))
    err = refused(fixed, Limits())
    assert (err.status, err.field) == (413, "column blob") and "max_string_bytes 65536" in str(err)


def test_parse_batch_refuses_a_bomb_as_a_batch_error() -> None:
    bomb = long_value_file(one_flow_table("br-parse"), "server_name", 200_000)
    with pytest.raises(BatchError) as err:
        parse_batch(bomb, "br-parse", "flows", "hz-demo", "gw-hz-01")     # default Limits()
    assert (err.value.status, err.value.field) == (413, "column server_name")
    ok = parse_batch(parquet(flows_table(5)), "br-ok", "flows", "hz-demo", "gw-hz-01", limits=Limits())
    assert ok.table.num_rows == 5


def test_shutdown_stops_the_workers_and_later_batches_start_new_ones(normal: tuple[bytes, pa.Table]
                                                                      ) -> None:
    body, expected = normal
    batchread.read_batch_table(body, Limits())
    pids = batchread.worker_pids()
    batchread.shutdown()
    assert batchread.worker_pids() == [] and not any(alive(p) for p in pids)
    assert batchread.read_batch_table(body, Limits()).equals(expected)


def test_workers_exit_when_their_parent_is_killed() -> None:
    script = textwrap.dedent("""
        import io, sys, time
        import pyarrow as pa, pyarrow.parquet as pq
        from collector import batchread
        from collector.config import Limits
        buf = io.BytesIO(); pq.write_table(pa.table({"a": [1]}), buf)
        batchread.read_batch_table(buf.getvalue(), Limits())
        print(*batchread.worker_pids(), flush=True)
        time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    workers = [int(p) for p in proc.stdout.readline().split()]
    assert workers and all(alive(p) for p in workers)
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 5
    while any(alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(p) for p in workers)


def test_uploads_beyond_max_concurrent_wait_for_a_worker(normal: tuple[bytes, pa.Table]) -> None:
    import concurrent.futures

    batchread.shutdown()
    limits = Limits(max_concurrent_uploads=2)
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        tables = list(pool.map(lambda _: batchread.read_batch_table(normal[0], limits), range(12)))
    assert all(t.equals(normal[1]) for t in tables)
    assert len(batchread.worker_pids()) <= 2
