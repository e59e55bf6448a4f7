"""A flood of short flows through the real pipeline, in its own process so that its memory is its own.

Run by tests/agent/test_memory.py: `python flood.py SPOOL FLOWS MAX_FLOWS`; prints one JSON line with the
resident set size after the first 3/8 and at the end, and the flow table's counters.
"""

from __future__ import annotations

import json
import random
import socket
import struct
import sys
from collections.abc import Iterator
from pathlib import Path

from agent.config import AgentConfig
from agent.pipeline import Pipeline
from agent.spool import Spool


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def frame(src: bytes, dst: bytes, sport: int, dport: int, flags: int) -> bytes:
    tcp = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 0x50, flags, 65535, 0, 0)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0x4000, 64, 6, 0, src, dst)
    return b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip + tcp


def flood(n: int, seed: int = 7) -> Iterator[tuple[float, int, bytes]]:
    rng = random.Random(seed)
    for i in range(n):
        src = socket.inet_aton(f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}")
        dst = struct.pack("!I", rng.getrandbits(32) | 0x01000000)    # any address: a flood has no pattern
        sport, ts = 1024 + i % 60000, 1_767_225_600 + i * 0.001
        yield ts, 1, frame(src, dst, sport, 80, 0x02)                   # SYN, then nothing: a scan's flow
        if i % 3 == 0:
            yield ts + 0.0005, 1, frame(dst, src, 80, sport, 0x14)     # some get an RST back


def scale_caches(size: int) -> None:
    """Every bounded structure of the packet path, capped at `size`: the plateau a gateway reaches after
    hundreds of thousands of flows is reached here after a few thousand, within a test's time."""
    from agent import destinations, flows

    flows.MAX_CLOSED = flows.INTERNAL_CACHE = destinations.COUNTRY_CACHE = size


def main() -> None:
    spool_dir, flows, max_flows = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    if len(sys.argv) > 4:
        scale_caches(int(sys.argv[4]))
    config = AgentConfig(agent_id="flood", subject_key_file=str(spool_dir / "k.key"), detector_workers=0,
                         limits={"max_flows": max_flows, "idle_timeout_s": 120.0})
    pipeline = Pipeline(config, Spool(spool_dir, "flood", None), lambda: None, strict=True)  # type: ignore
    # By then every bounded structure is full (with scaled caches) and the flow-record buffer has been
    # written once (pipeline.FLUSH_ROWS = 50,000): its high-water mark is part of the plateau.
    tenth = flows * 3 // 8
    pipeline.feed(flood(tenth))
    early = rss_mb()
    # The rest in ten parts, as ten capture files would come: per-file work must not leave anything behind.
    rest = flows - tenth
    for part in range(10):
        pipeline.feed(flood(rest // 10 + (rest % 10 if part == 9 else 0), seed=8 + part))
    late = rss_mb()
    pipeline.finish()
    print(json.dumps({"rss_early_mb": early, "rss_late_mb": late, "open_max": max_flows,
                      "evicted": pipeline.table.stats["evicted"], "flows": pipeline.flow_count}))


if __name__ == "__main__":
    main()
