"""Progress over capture files (agent/progress.py): bytes read of the total across several files and gzip'd
input, packets, MB/s and time left; a rich bar on a terminal, log lines otherwise. Time is a fake clock
here: nothing asserts on the wall clock."""

from __future__ import annotations

import gzip
import io
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from rich.console import Console

import agent.progress
from agent.anomalies import AnomalySink
from agent.capture import open_capture
from agent.progress import CaptureProgress, LogReporter, RichReporter, Snapshot, watching
from tests.conftest import BIN, FIXTURES, REAL_PCAPS

# Two real captures, one of them gzip'd here, and a pcapng fixture: three readers, one total.
PLAIN = REAL_PCAPS / "http_1kxun-utf8-chinese-json.pcap"
ZIPPED = REAL_PCAPS / "http_bro.org-keepalive-browse.pcap"
PCAPNG = FIXTURES / "pcaps" / "dns_multi-interface.pcapng"


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        self.now += 0.5     # every look at the clock is half a second later
        return self.now


class Recorder:
    def __init__(self) -> None:
        self.shown: list[Snapshot] = []
        self.closed: Snapshot | None = None

    def show(self, snap: Snapshot) -> None:
        self.shown.append(snap)

    def close(self, snap: Snapshot) -> None:
        self.closed = snap

    def stop(self) -> None:
        pass


class Positions(CaptureProgress):
    """Keeps every position the reader reported, before any clamping."""

    def __init__(self, *a: object, **k: object) -> None:
        super().__init__(*a, **k)  # type: ignore[arg-type]
        self.positions: list[tuple[int, int]] = []

    def advance(self, position: int, packets: int) -> None:
        self.positions.append((self._index, position))
        super().advance(position, packets)


@pytest.fixture
def captures(tmp_path: Path) -> list[Path]:
    if not PLAIN.is_file() or not ZIPPED.is_file():
        pytest.skip(f"real captures not present in {REAL_PCAPS}")
    plain = tmp_path / PLAIN.name
    shutil.copyfile(PLAIN, plain)
    zipped = tmp_path / (ZIPPED.name + ".gz")
    zipped.write_bytes(gzip.compress(ZIPPED.read_bytes()))
    return [plain, zipped, PCAPNG]


def read_all(paths: list[Path], progress: CaptureProgress) -> int:
    packets = 0
    for p in paths:
        packets += sum(1 for _ in open_capture(p, AnomalySink(), progress))
    progress.close()
    return packets


def test_several_files_add_up_to_their_sizes_on_disk(captures: list[Path]) -> None:
    rec = Recorder()
    progress = CaptureProgress(captures, rec, clock=FakeClock())
    packets = read_all(captures, progress)
    sizes = [p.stat().st_size for p in captures]
    assert rec.closed is not None
    assert (rec.closed.done, rec.closed.total, rec.closed.packets) == (sum(sizes), sum(sizes), packets)
    assert (rec.closed.file_no, rec.closed.files, rec.closed.name) == (3, 3, PCAPNG.name)
    done = [s.done for s in rec.shown]
    assert done == sorted(done)
    # Each file ends at the sizes of the files up to it; the next starts there.
    ends = {s.done for s in rec.shown}
    assert {sizes[0], sizes[0] + sizes[1], sum(sizes)} <= ends
    assert [s.packets for s in rec.shown] == sorted(s.packets for s in rec.shown)


def test_a_gzipd_capture_advances_by_compressed_bytes_of_its_compressed_size(
        captures: list[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agent.progress, "EVERY", 64)      # a look every 64 packets: several per file
    zipped = captures[1]
    progress = Positions([zipped], Recorder(), clock=FakeClock())
    packets = read_all([zipped], progress)
    size = zipped.stat().st_size
    inner = [pos for i, pos in progress.positions[:-1] if i == 0]   # the last one is file_done's
    assert len(inner) >= packets // 64 - 1 and len(inner) >= 3
    # Positions in the compressed file: below its size (the decompressed stream is several times larger)
    # and growing as the packets do.
    assert all(0 < pos <= size for pos in inner) and inner == sorted(inner)
    assert len(set(inner)) >= 3 and inner[0] < size
    assert progress.snapshot().done == size


def test_rate_and_time_left_come_from_the_bytes_and_the_clock() -> None:
    snap = Snapshot(done=25 * 10**6, total=100 * 10**6, packets=10, elapsed_s=5.0, file_no=1, files=1,
                    name="x.pcap")
    assert snap.fraction == 0.25 and snap.rate == 5 * 10**6 and snap.eta_s == 15.0
    unknown = Snapshot(done=0, total=0, packets=0, elapsed_s=0.0, file_no=1, files=1, name="fifo")
    assert unknown.fraction is None and unknown.rate is None and unknown.eta_s is None


def test_log_lines_come_at_every_tenth_and_after_a_quiet_spell(caplog: pytest.LogCaptureFixture) -> None:
    reporter = LogReporter(every_s=30.0, quiet_packets=0)
    total = 10**8
    with caplog.at_level("INFO", logger="agent.progress"):
        for pct in range(0, 101):       # one update per percent, at one second each
            reporter.show(Snapshot(pct * 10**6, total, pct * 7, float(pct), 1, 1, "big.pcap"))
    lines = [r.getMessage() for r in caplog.records]
    assert [re.search(r": (\d+)% of", m).group(1) for m in lines] == [str(p) for p in range(10, 101, 10)]
    assert "big.pcap (file 1 of 1): 50% of 100.0 MB, 350 packets, 1.0 MB/s, ETA 0:00:50" in lines
    caplog.clear()
    slow = LogReporter(every_s=30.0, quiet_packets=0)
    with caplog.at_level("INFO", logger="agent.progress"):
        for minute in range(1, 4):       # 1 % a minute: no tenth is crossed, a line every 30 s anyway
            slow.show(Snapshot(minute * 10**6, total, minute, 60.0 * minute, 1, 1, "big.pcap"))
    assert len(caplog.records) == 3


def test_a_small_run_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    # Fewer packets than one look at the file position: over before a line could help (and a bad file's
    # error stays the run's one line on stderr).
    reporter = LogReporter()
    with caplog.at_level("INFO", logger="agent.progress"):
        for pct in range(0, 101, 10):
            reporter.show(Snapshot(pct * 10**6, 10**8, pct, float(pct), 1, 1, "small.pcap"))
        reporter.close(Snapshot(10**8, 10**8, 100, 100.0, 1, 1, "small.pcap"))
        assert caplog.records == []
        big = LogReporter()
        big.show(Snapshot(10**6, 10**8, agent.progress.EVERY, 1.0, 1, 1, "big.pcap"))
        big.show(Snapshot(2 * 10**7, 10**8, 2 * agent.progress.EVERY, 2.0, 1, 1, "big.pcap"))
        big.close(Snapshot(10**8, 10**8, 9 * agent.progress.EVERY, 9.0, 1, 1, "big.pcap"))
    assert len(caplog.records) == 2 and "read 1 capture file(s)" in caplog.records[-1].getMessage()


def test_on_a_terminal_the_bar_shows_file_bytes_packets_and_speed(captures: list[Path]) -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=160, color_system=None)
    clock = FakeClock()
    progress = CaptureProgress(captures, RichReporter(console, get_time=clock), clock=clock)
    packets = read_all(captures, progress)
    text = buffer.getvalue()
    total_mb = sum(p.stat().st_size for p in captures) / 1e6
    assert f"{PCAPNG.name} (3/3) 正在分析抓包" in text
    assert f"{packets:,} packets" in text
    assert f"{total_mb:.1f}/{total_mb:.1f} MB" in text and re.search(r"\d [kM]?B/s", text)


def test_nothing_is_reported_outside_watching_and_a_failed_run_says_nothing_more(
        captures: list[Path]) -> None:
    assert agent.progress.current() is None
    rec = Recorder()
    with pytest.raises(RuntimeError), watching(captures, reporter=rec):
        assert agent.progress.current() is not None
        for _ in open_capture(captures[0], AnomalySink()):
            pass
        raise RuntimeError("the run failed")
    assert rec.shown and rec.closed is None and agent.progress.current() is None


def test_the_agent_cli_logs_progress_when_stderr_is_not_a_terminal(
        captures: list[Path], tmp_path: Path) -> None:
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(f"agent_id: progress-test\nsubject_key_file: {tmp_path / 'k.key'}\n")
    # The plain capture three times: more packets than a small run, which stays quiet.
    files = [captures[0], captures[0], captures[0], captures[1], captures[2]]
    args = [a for p in files for a in ("--pcap", str(p))]
    proc = subprocess.run([str(BIN / "egress-agent"), "run", *args, "--config", str(cfg), "--out",
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    packets = int(proc.stdout.split(" packets")[0])
    lines = [ln for ln in proc.stderr.splitlines() if "agent.progress" in ln]
    total_mb = sum(p.stat().st_size for p in files) / 1e6
    assert packets > agent.progress.EVERY
    assert any(f"{captures[1].name} (file 4 of 5): " in ln for ln in lines), proc.stderr
    assert lines[-1].endswith(f"read 5 capture file(s): {total_mb:.1f} MB, {packets} packets in "
                              f"{lines[-1].split(' packets in ')[1]}")
    assert "\x1b[" not in proc.stderr      # no terminal codes in a log


def test_selfcheck_logs_progress_over_captures(captures: list[Path], tmp_path: Path) -> None:
    filing = Path(__file__).resolve().parents[2] / "configs" / "filings" / "demo.yaml"
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(f"agent_id: progress-test\nsubject_key_file: {tmp_path / 'k.key'}\n")
    files = [str(captures[0])] * 4
    proc = subprocess.run([str(BIN / "egress-collector"), "selfcheck", *files, "--filing", str(filing),
                           "--agent-config", str(cfg), "--format", "json"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode in (0, 1), proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if "agent.progress" in ln]
    assert any(f"{captures[0].name} (file 4 of 4): 100% of" in ln for ln in lines), proc.stderr
    assert "read 4 capture file(s)" in lines[-1]
