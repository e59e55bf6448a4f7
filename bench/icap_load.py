"""The traffic of bench/icap.py: PI-dense JSON bodies, the origin server, and the open-loop client.

Bodies: about 10 KB of JSON, `{"records": [{"name", "idNo", "mobile", "email"}, …]}`, every person distinct
across the whole run (resident IDs numbered from a counter, with valid check digits; mobiles and emails
from the same counter), so the agent's pi_values can be counted exactly: four values per person.

Origin: `python bench/icap_load.py origin HOST:PORT` — a single-process asyncio HTTP/1.1 server (keep-alive,
Content-Length bodies) answering every request `200` with a small JSON body; it prints
`origin: listening on HOST:PORT` once it accepts connections.

Client: `run_load()` — open-loop pacing. Request i is due at t0 + i/rate whatever happened before (a slow
answer does not delay the next request: no coordinated omission); a bounded pool of keep-alive
connections to Squid takes due requests from a queue. A request's latency is measured from the moment it
was due, so time spent waiting for a free connection counts (that is what a user would see); how late the
client itself started each request is reported beside it (`start_lag`), which shows a client that is the
bottleneck. Requests are raw bytes prepared before the clock starts; responses are parsed just enough to
find their end (Content-Length or chunked) and status.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from stdnum.cn import ric

log = logging.getLogger("bench.icap.load")

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华建国志红玉兰飞鹏辉"
REGIONS = ("110101", "310104", "330106", "440305", "510107", "320102")
MAIL_DOMAINS = ("example.com", "mail.example.org", "corp.example.net")
PERSON_BYTES = 105                 # a person's JSON object, roughly: 10 KB bodies hold ~97 persons
VALUES_PER_PERSON = 4              # name, resident ID, mobile, email: one pi_values row each
BIRTH_EPOCH = dt.date(1960, 1, 1)
RESPONSE_TIMEOUT_S = 10.0
ORIGIN_ANSWER = b'{"code":0}\n'


# -- bodies -----------------------------------------------------------------------------------------------

class People:
    """Distinct persons from a counter: person n has resident ID, mobile and email no other person has."""

    def __init__(self, seed: int = 12) -> None:
        self.rng = random.Random(seed)
        self.next = 0

    def person(self) -> dict[str, str]:
        n, r = self.next, self.rng
        self.next += 1
        born = BIRTH_EPOCH + dt.timedelta(days=n // 999 % 14_000)
        body17 = f"{REGIONS[n // (999 * 14_000) % len(REGIONS)]}{born:%Y%m%d}{n % 999 + 1:03d}"
        return {"name": r.choice(SURNAMES) + "".join(r.choice(GIVEN) for _ in range(r.randrange(1, 3))),
                "idNo": body17 + ric.calc_check_digit(body17 + "0"),
                "mobile": f"1{'3578'[n % 4]}{n % 10**9:09d}",
                "email": f"user{n}@{MAIL_DOMAINS[n % len(MAIL_DOMAINS)]}"}

    def body(self, size: int) -> tuple[bytes, int]:
        """A JSON body of about `size` bytes and the number of persons in it."""
        records = [self.person() for _ in range(max(1, size // PERSON_BYTES))]
        text = json.dumps({"records": records}, ensure_ascii=False, separators=(",", ":"))
        return text.encode(), len(records)


@dataclass(frozen=True)
class Batch:
    """Requests prepared for one round, in send order."""

    requests: list[bytes]
    persons: int                   # persons in all bodies together
    body_bytes: int


def prepare(people: People, n: int, origin: str, body_size: int) -> Batch:
    requests, persons, total = [], 0, 0
    for _ in range(n):
        body, k = people.body(body_size)
        head = (f"POST http://{origin}/api/v1/customers/sync HTTP/1.1\r\nHost: {origin}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                "Connection: keep-alive\r\n\r\n").encode()
        requests.append(head + body)
        persons += k
        total += len(body)
    return Batch(requests, persons, total)


# -- reading one HTTP/1.1 message -------------------------------------------------------------------------

async def read_message(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    """Read one HTTP/1.1 message head and body off `reader`; return (status or 0 for a request, headers)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    first = lines[0].split(" ", 2)
    status = int(first[1]) if first[0].startswith("HTTP/") else 0
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    else:
        await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers


# -- origin server ----------------------------------------------------------------------------------------

async def _origin_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    answer = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
              + str(len(ORIGIN_ANSWER)).encode() + b"\r\n\r\n" + ORIGIN_ANSWER)
    try:
        while True:
            await read_message(reader)
            writer.write(answer)
    except (asyncio.IncompleteReadError, ConnectionError, ValueError):
        pass
    finally:
        writer.close()


async def _serve_origin(host: str, port: int) -> None:
    server = await asyncio.start_server(_origin_conn, host, port, backlog=1024)
    print(f"origin: listening on {host}:{port}", flush=True)
    async with server:
        await server.serve_forever()


# -- client -----------------------------------------------------------------------------------------------

@dataclass
class LoadResult:
    """One round's client-side figures. Latencies in seconds, for the measured requests only."""

    offered: float
    sent: int = 0                      # all requests of the round, warm-up included
    measured: int = 0
    latencies: list[float] = field(default_factory=list)
    offsets: list[float] = field(default_factory=list)    # when each was due, s into the measured window
    start_lag: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0                # the measured window
    client_cpu_s: float = 0.0

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def slowest(self, k: int = 5) -> list[tuple[float, float]]:
        """(due at, latency) of the `k` slowest requests: clustered or spread over the window."""
        return sorted(zip(self.offsets, self.latencies, strict=True), key=lambda x: -x[1])[:k]


async def _client(batch: Batch, rate: float, warmup: int, proxy: tuple[str, int], connections: int,
                  result: LoadResult, window: Callable[[str], None]) -> None:
    queue: asyncio.Queue[tuple[int, float] | None] = asyncio.Queue()
    loop = asyncio.get_running_loop()

    async def worker() -> None:
        reader: asyncio.StreamReader | None = None
        writer: asyncio.StreamWriter | None = None
        while (item := await queue.get()) is not None:
            i, due = item
            started = loop.time()
            try:
                if writer is None or reader is None:
                    reader, writer = await asyncio.open_connection(*proxy)
                writer.write(batch.requests[i])
                status, headers = await asyncio.wait_for(read_message(reader), RESPONSE_TIMEOUT_S)
                done = loop.time()
                if status != 200:
                    result.error(f"http_{status}")
                if headers.get("connection", "").lower() == "close":
                    writer.close()
                    reader = writer = None
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
                done = loop.time()
                result.error(type(exc).__name__)
                if writer is not None:
                    writer.close()
                reader = writer = None
            if i >= warmup:
                result.latencies.append(done - due)
                result.offsets.append((i - warmup) / rate)
                result.start_lag.append(started - due)
                result.measured += 1
        if writer is not None:
            writer.close()

    workers = [asyncio.create_task(worker()) for _ in range(connections)]
    t0 = loop.time() + 0.05
    for i in range(len(batch.requests)):
        due = t0 + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        if i == warmup:
            window("start")
        queue.put_nowait((i, due))
        result.sent += 1
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    window("end")


def run_load(batch: Batch, rate: float, warmup: int, proxy: tuple[str, int], connections: int,
             window: Callable[[str], None]) -> LoadResult:
    """Send `batch` at `rate` requests/s through `proxy`; the first `warmup` requests are not measured.
    `window("start")` is called when the first measured request is due, `window("end")` after the last
    answer: the caller samples the other processes' CPU there. The client's own CPU and the window's
    length are measured the same way."""
    result = LoadResult(offered=rate)
    marks: dict[str, tuple[float, float]] = {}

    def mark(what: str) -> None:
        marks[what] = (time.monotonic(), time.process_time())
        window(what)

    asyncio.run(_client(batch, rate, warmup, proxy, connections, result, mark))
    start = marks.get("start", marks["end"])
    result.wall_s = marks["end"][0] - start[0]
    result.client_cpu_s = marks["end"][1] - start[1]
    return result


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "origin":
        host, _, port = argv[1].rpartition(":")
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve_origin(host, int(port)))
        return 0
    print("usage: icap_load.py origin HOST:PORT", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
