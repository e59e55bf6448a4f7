"""Parquet bombs against the real collector (DESIGN §9 "Hostile input"): a batch is judged by what it
decodes to, never by its size on the wire or the sizes its own footer claims.

The attack from the review: one `flows` row whose `server_name` is 2^30 × "A", zstd-compressed to 37 KB,
was accepted — the service peaked at 8.3 GB. `long_value_file` builds that file without ever holding the
string (a streamed zstd frame spliced into a pyarrow-written file, footer re-encoded with a minimal Thrift
compact codec), so the test's own memory stays small. The dictionary bombs need only pyarrow.
"""

from __future__ import annotations

import dataclasses
import io
import os
import struct
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from agent.records import Envelope, to_table
from tests.collector.builders import detection, flow
from tests.collector_server import CollectorServer, start_collector
from tests.security.conftest import assert_error_shape, batch_bytes, upload

MIB = 1024 * 1024
# The service process (FastAPI, DuckDB, pyarrow: ≈ 160 MiB idle) never decodes a bomb, so its peak RSS
# stays near idle (before the fix: 8.4 GB for the GiB string); each worker is capped at the fixture's
# decode_memory_bytes (512 MiB) over its idle size (≈ 80 MiB).
SERVICE_RSS_BOUND = 400 * MIB
WORKER_RSS_BOUND = 512 * MIB + 150 * MIB

# ---- building hostile files ------------------------------------------------------------------------------
# Thrift compact protocol, just enough for Parquet footers and page headers: a struct is {field id: (type,
# value)}, a list is (element type, [values]).
TRUE, FALSE, I8, I16, I32, I64, DOUBLE, BINARY, LIST, SET, STRUCT = 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, pos


def _put_varint(out: bytearray, n: int) -> None:
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _read_value(buf: bytes, pos: int, t: int) -> tuple[Any, int]:
    if t in (TRUE, FALSE):
        return buf[pos] == 1, pos + 1
    if t == I8:
        return buf[pos], pos + 1
    if t in (I16, I32, I64):
        z, pos = _varint(buf, pos)
        return (z >> 1) ^ -(z & 1), pos
    if t == DOUBLE:
        return struct.unpack_from("<d", buf, pos)[0], pos + 8
    if t == BINARY:
        n, pos = _varint(buf, pos)
        return bytes(buf[pos:pos + n]), pos + n
    if t in (LIST, SET):
        head = buf[pos]
        n, et, pos = head >> 4, head & 0x0F, pos + 1
        if n == 15:
            n, pos = _varint(buf, pos)
        items = []
        for _ in range(n):
            item, pos = _read_value(buf, pos, et)
            items.append(item)
        return (et, items), pos
    if t == STRUCT:
        return read_struct(buf, pos)
    raise ValueError(f"thrift type {t}")


def read_struct(buf: bytes, pos: int = 0) -> tuple[dict[int, tuple[int, Any]], int]:
    fields: dict[int, tuple[int, Any]] = {}
    last = 0
    while True:
        head = buf[pos]
        pos += 1
        if head == 0:
            return fields, pos
        delta, t = head >> 4, head & 0x0F
        if delta:
            last += delta
        else:
            z, pos = _varint(buf, pos)
            last = (z >> 1) ^ -(z & 1)
        if t in (TRUE, FALSE):
            fields[last] = (t, t == TRUE)
        else:
            value, pos = _read_value(buf, pos, t)
            fields[last] = (t, value)


def _write_value(out: bytearray, t: int, v: Any) -> None:
    if t in (TRUE, FALSE):
        out.append(1 if v else 2)
    elif t == I8:
        out.append(v & 0xFF)
    elif t in (I16, I32, I64):
        _put_varint(out, (v << 1) ^ (v >> 63))
    elif t == DOUBLE:
        out += struct.pack("<d", v)
    elif t == BINARY:
        _put_varint(out, len(v))
        out += v
    elif t in (LIST, SET):
        et, items = v
        if len(items) < 15:
            out.append(len(items) << 4 | et)
        else:
            out.append(0xF0 | et)
            _put_varint(out, len(items))
        for item in items:
            _write_value(out, et, item)
    else:
        write_struct(out, v)


def write_struct(out: bytearray, fields: dict[int, tuple[int, Any]]) -> bytearray:
    last = 0
    for fid in sorted(fields):
        t, v = fields[fid]
        if t in (TRUE, FALSE):
            t = TRUE if v else FALSE
        if 0 < fid - last <= 15:
            out.append((fid - last) << 4 | t)
        else:
            out.append(t)
            _put_varint(out, (fid << 1) ^ (fid >> 63))
        last = fid
        if t not in (TRUE, FALSE):
            _write_value(out, t, v)
    out.append(0)
    return out


def _zstd_frame(head: bytes, length: int) -> bytes:
    """zstd of `head` + "A" * length, streamed a MiB at a time."""
    sink = pa.BufferOutputStream()
    with pa.CompressedOutputStream(sink, "zstd") as z:
        z.write(head)
        chunk = b"A" * MIB
        for _ in range(length // MIB):
            z.write(chunk)
        z.write(b"A" * (length % MIB))
    return bytes(sink.getvalue())


def long_value_file(table: pa.Table, column: str, length: int, *, honest_footer: bool = True,
                    claim_uncompressed: int | None = None) -> bytes:
    """`table` (one row, `column` = "A") with that value grown to "A" * `length`. `honest_footer=False`
    keeps the footer's uncompressed column and row-group sizes as they were (a few bytes);
    `claim_uncompressed` makes the page header lie about the page's size."""
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd", use_dictionary=False, write_statistics=False,
                   data_page_version="1.0")
    data = buf.getvalue()
    footer_len = struct.unpack("<I", data[-8:-4])[0]
    footer_at = len(data) - 8 - footer_len
    meta, _ = read_struct(data[footer_at:-8])
    group = meta[4][1][1][0]
    chunks = group[1][1][1]
    cmeta = next(c[3][1] for c in chunks if c[3][1][3][1][1] == [column.encode()])
    offset = cmeta[9][1]
    header, body_at = read_struct(data, offset)
    old_len = body_at - offset + header[3][1]
    page = pa.decompress(data[body_at:body_at + header[3][1]], header[2][1], codec="zstd").to_pybytes()
    assert page.endswith(b"\x01\x00\x00\x00A"), "the template's value is not the last one of its page"
    head = page[:-5] + struct.pack("<I", length)
    compressed = _zstd_frame(head, length)
    real = len(head) + length
    header[2] = (I32, real if claim_uncompressed is None else claim_uncompressed)
    header[3] = (I32, len(compressed))
    chunk = bytes(write_struct(bytearray(), header)) + compressed
    delta = len(chunk) - old_len
    for c in chunks:
        m = c[3][1]
        for fid in (9, 10, 11):     # data, index and dictionary page offsets after the spliced page
            if fid in m and m[fid][1] > offset:
                m[fid] = (I64, m[fid][1] + delta)
    cmeta[7] = (I64, cmeta[7][1] + delta)      # readers fetch the chunk by this one: it must be right
    if 6 in group:
        group[6] = (I64, group[6][1] + delta)
    if honest_footer:                          # the decoded sizes are claims nobody needs to read the file
        grown = len(chunk) - len(compressed) + real - (body_at - offset + len(page))
        cmeta[6] = (I64, cmeta[6][1] + grown)
        group[2] = (I64, group[2][1] + grown)
    footer = bytes(write_struct(bytearray(), meta))
    return (data[:offset] + chunk + data[offset + old_len:footer_at] + footer
            + struct.pack("<I", len(footer)) + b"PAR1")


def one_flow_table(batch_id: str, server_name: str = "A") -> pa.Table:
    return to_table("flows", [flow(f"{batch_id}-f1", server_name=server_name)],
                    Envelope("gw-hz-01", "hz-demo", batch_id))


def dictionary_bomb(batch_id: str, value_bytes: int, rows: int) -> bytes:
    """`rows` flows whose server_name is one `value_bytes` string: stored once in a dictionary page,
    so the file and its footer (total_uncompressed_size) say ≈ `value_bytes`; it decodes to rows × that.
    `store_schema=False`: a reader then decodes the column to plain strings, as for an agent's file."""
    table = to_table("flows", [flow(f"{batch_id}-f{i}") for i in range(rows)],
                     Envelope("gw-hz-01", "hz-demo", batch_id))
    col = pa.DictionaryArray.from_arrays(pa.array([0] * rows, pa.int32()), pa.array(["A" * value_bytes]))
    table = table.set_column(table.schema.get_field_index("server_name"), "server_name", col)
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd", store_schema=False, dictionary_pagesize_limit=64 * MIB)
    return buf.getvalue()


# ---- watching the service ----------------------------------------------------------------------------------

def _status(pid: int, key: str) -> int:
    """A /proc/<pid>/status value in bytes (0 when the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry))
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def upload_watched(srv: CollectorServer, body: bytes, batch_id: str, record_type: str = "flows"
                   ) -> tuple[httpx.Response, dict[str, Any]]:
    """Upload in a thread; meanwhile /healthz must answer within 2 s each time and RSS is sampled."""
    result: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: result.update(r=upload(srv, "agent", body, batch_id,
                                                                     record_type)))
    seen: dict[str, Any] = {"healthz": 0, "service_rss": 0, "worker_rss": 0}
    thread.start()
    with httpx.Client(base_url=srv.url, timeout=2) as c:
        while True:
            assert c.get("/healthz").status_code == 200
            seen["healthz"] += 1
            seen["service_rss"] = max(seen["service_rss"], _status(srv.proc.pid, "VmRSS"))
            for child in children(srv.proc.pid):
                seen["worker_rss"] = max(seen["worker_rss"], _status(child, "VmRSS"))
            if not thread.is_alive():
                break
            time.sleep(0.02)
    thread.join()
    seen["service_hwm"] = _status(srv.proc.pid, "VmHWM")
    return result["r"], seen


def stored_files(srv: CollectorServer, batch_id: str) -> list[Path]:
    return list((srv.data_dir / "records").rglob(f"*{batch_id}*"))


def assert_bounded(seen: dict[str, Any]) -> None:
    assert seen["service_hwm"] < SERVICE_RSS_BOUND, seen
    assert seen["worker_rss"] < WORKER_RSS_BOUND, seen


# ---- the attacks -------------------------------------------------------------------------------------------

def test_the_gib_string_in_one_row_is_refused_while_the_service_stays_up(collector: CollectorServer) -> None:
    bomb = long_value_file(one_flow_table("bomb-gib"), "server_name", 1 << 30)
    assert len(bomb) < 64 * 1024                       # far under max_upload_bytes: the old cap saw nothing
    r, seen = upload_watched(collector, bomb, "bomb-gib")
    err = assert_error_shape(r, 413)
    assert err["field"] in ("body", "column server_name"), err
    assert "decode_memory_bytes" in err["message"] or "max_string_bytes" in err["message"], err
    assert seen["healthz"] >= 1
    assert_bounded(seen)
    assert stored_files(collector, "bomb-gib") == []
    after = upload(collector, "agent", batch_bytes("flows", [flow("after-gib-f1")], batch_id="after-gib"),
                   "after-gib")
    assert after.status_code == 201, after.text


def test_a_page_header_that_lies_about_its_size_is_refused(collector: CollectorServer) -> None:
    liar = long_value_file(one_flow_table("bomb-liar"), "server_name", 1000, claim_uncompressed=2**31 - 1)
    r, seen = upload_watched(collector, liar, "bomb-liar")
    assert_error_shape(r, 413, "body")               # the 2 GB buffer does not fit the decoder's budget
    assert_bounded(seen)
    assert stored_files(collector, "bomb-liar") == []


@pytest.mark.parametrize(("value_bytes", "rows", "field", "cap"), [
    (4 * MIB, 1024, "column server_name", "max_string_bytes 65536"),     # 4 GiB decoded
    (60_000, 2048, "body", f"max_decoded_bytes {64 * MIB}"),            # 120 MB decoded, every value ≤ cap
])
def test_a_dictionary_bomb_is_judged_by_its_decoded_size(collector: CollectorServer, value_bytes: int,
                                                         rows: int, field: str, cap: str) -> None:
    batch_id = f"bomb-dict-{value_bytes}"
    bomb = dictionary_bomb(batch_id, value_bytes, rows)
    claimed = pq.ParquetFile(pa.BufferReader(bomb)).metadata.row_group(0).total_byte_size
    assert claimed < 8 * MIB and value_bytes * rows > 64 * MIB      # the footer understates the decode
    r, seen = upload_watched(collector, bomb, batch_id)
    err = assert_error_shape(r, 413, field)
    assert cap in err["message"], err
    assert_bounded(seen)
    assert stored_files(collector, batch_id) == []


def test_strings_just_over_max_string_bytes_name_their_column(collector: CollectorServer) -> None:
    over = batch_bytes("flows", [flow("long-f1", server_name="a" * 65537)], batch_id="long-1")
    err = assert_error_shape(upload(collector, "agent", over, "long-1"), 413, "column server_name")
    assert "max_string_bytes 65536" in err["message"], err
    paths = [dataclasses.replace(detection("long-f2", "mobile_cn"), key_paths=("$.a", "k" * 65537))]
    err = assert_error_shape(upload(collector, "agent", batch_bytes("detections", paths, batch_id="long-2"),
                                    "long-2", "detections"), 413, "column key_paths")
    assert "max_string_bytes 65536" in err["message"], err
    # Exactly at the cap is stored (a key path: a server name that long is no host name, refused as such).
    at_cap = [dataclasses.replace(detection("long-f3", "mobile_cn"), key_paths=("$.a", "k" * 65536))]
    stored = upload(collector, "agent", batch_bytes("detections", at_cap, batch_id="long-3"), "long-3",
                    "detections")
    assert stored.status_code == 201, stored.text


def test_no_decoder_outlives_the_service(tmp_path: Path) -> None:
    srv = start_collector(tmp_path, limits={"decode_memory_bytes": 256 * MIB, "max_concurrent_uploads": 2})
    try:
        body = batch_bytes("flows", [flow("orphan-f1")], batch_id="orphan-1")
        assert upload(srv, "agent", body, "orphan-1").status_code == 201
        workers = children(srv.proc.pid)
        assert workers, "the batch was not decoded in a worker process"
    finally:
        srv.stop()
    deadline = time.monotonic() + 5
    while any(alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(w) for w in workers), workers
