"""A full disk (issue 9 item 11), against the real collector: a failed Parquet write or a failed DuckDB
commit answers 507 in the one error shape, leaves no orphan file, and once space is back the agent's retry
of the same batch is stored — without restarting the service.

The data dir and its records/ folder are two small tmpfs mounts, so either can be filled on its own: the
records mount for a failed file write, the data mount (the DuckDB file and its WAL) for a failed commit.
Needs root for the mounts; CI runs as root, and under CI=true a missing privilege is a failure.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.collector.builders import flow
from tests.collector_server import CollectorServer, start_collector
from tests.security.conftest import assert_error_shape, batch_bytes, upload

pytestmark = pytest.mark.root


def _require_root() -> None:
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("CI runs as root: the tmpfs mounts of this test must be possible")
        pytest.skip("needs root to mount a small tmpfs")


def _mount(path: Path, size: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)


def fill(folder: Path) -> Path:
    """Fill the file system of `folder` to the last byte; remove the returned file to free it."""
    filler = folder / "filler.bin"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for chunk in (1 << 20, 4096, 1):      # unbuffered, so nothing is left to fail at close
            try:
                while True:
                    os.write(fd, b"\0" * chunk)
            except OSError:
                pass
    finally:
        os.close(fd)
    return filler


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[CollectorServer]:
    _require_root()
    data, records = tmp_path / "data", tmp_path / "data" / "records"
    _mount(data, "16m")
    _mount(records, "16m")
    srv = start_collector(tmp_path, data_dir=data)
    try:
        yield srv
    finally:
        srv.stop(expect_clean=False)
        for mount in (records, data):
            subprocess.run(["umount", "-l", str(mount)], check=False)
    log = srv.log.read_text(errors="replace")
    assert "Traceback" not in log, log[-4000:]


def _leftovers(srv: CollectorServer, batch_id: str) -> list[str]:
    return [p.name for p in srv.data_dir.rglob(f"*{batch_id}*")]


def test_a_full_records_disk_is_507_and_the_retry_is_stored_once_space_is_back(small_disk: CollectorServer
                                                                              ) -> None:
    srv = small_disk
    assert upload(srv, "agent", batch_bytes("flows", [flow("disk-f0")]), "disk-0").status_code == 201
    filler = fill(srv.data_dir / "records")
    body = batch_bytes("flows", [flow(f"disk-f{i}") for i in range(1, 200)])
    full = upload(srv, "agent", body, "disk-1")
    err = assert_error_shape(full, 507)
    assert err["code"] == "insufficient_storage" and "retry" in err["message"]
    assert _leftovers(srv, "disk-1") == []
    assert srv.call(None, "GET", "/healthz").status_code == 200
    filler.unlink()
    again = upload(srv, "agent", body, "disk-1")
    assert again.status_code == 201 and again.json()["stored_rows"] == 199, again.text


def test_a_failed_commit_is_507_leaves_no_orphan_and_the_database_recovers(small_disk: CollectorServer
                                                                           ) -> None:
    srv = small_disk
    assert upload(srv, "agent", batch_bytes("flows", [flow("wal-f0")]), "wal-0").status_code == 201
    filler = fill(srv.data_dir)            # the DuckDB file's disk; records/ still has room
    body = batch_bytes("flows", [flow(f"wal-f{i}") for i in range(1, 50)])
    failed = upload(srv, "agent", body, "wal-1")
    assert_error_shape(failed, 507)
    assert _leftovers(srv, "wal-1") == []      # the Parquet file written before the commit is gone
    assert srv.call(None, "GET", "/healthz").status_code == 200
    filler.unlink()
    again = upload(srv, "agent", body, "wal-1")
    assert again.status_code == 201 and again.json()["stored_rows"] == 49, again.text
    # What committed before the failure is still there, once: wal-0 is a retry now.
    before = upload(srv, "agent", batch_bytes("flows", [flow("wal-f0")]), "wal-0")
    assert before.status_code == 200 and before.json()["status"] == "already_stored", before.text
    assert srv.call("regulator", "GET", "/v1/audit").status_code == 200
