"""The ICAP service in-process on an ephemeral port (the real `run_icap`, a real spool), and a raw-socket
ICAP client that builds requests byte by byte and reads answers strictly (RFC 3507)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from agent.config import AgentConfig, load_agent_config
from agent.icap_service import IcapStats, run_icap
from agent.spool import spool_files

ABROAD = "8.8.8.8"            # geo-IP: US
CLIENT = "10.1.2.3"           # an internal client
PEOPLE = [{"name": "张三", "idNo": "11010519491231002X", "mobile": "13812345678"},
          {"name": "李四", "idNo": "440301199003071230", "mobile": "13912345670"}]
BODY = json.dumps({"customers": PEOPLE}, ensure_ascii=False).encode()
TIMEOUT_S = 10.0              # every socket read in these tests: a hang fails, it never blocks the suite


def rows(out: Path, record_type: str) -> list[dict[str, Any]]:
    return [r for f in spool_files(out, record_type) for r in pq.read_table(f).to_pylist()]


def config(tmp_path: Path, **icap: object) -> AgentConfig:
    key = tmp_path / "k.key"
    if not key.exists():
        key.write_bytes(b"icap-test-key-not-secret-0000000")
    cfg = load_agent_config(None, agent_id="icap-test", subject_key_file=str(key), detector_workers=0)
    return cfg.model_copy(update={"icap": cfg.icap.model_copy(update={"listen": "127.0.0.1:0", **icap})})


@dataclass
class Service:
    """`run_icap` in a thread; `stop()` ends it like SIGTERM and returns its stats."""

    cfg: AgentConfig
    out: Path
    engine: object
    resolve: Callable[[str], str | None] = field(default=lambda name: None)
    port: int = 0
    stats: IcapStats | None = None
    error: BaseException | None = None

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(60), "the ICAP service did not start"
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        def ready(address: tuple[str, int]) -> None:
            self.port = address[1]
            self._ready.set()

        try:
            self.stats = run_icap(self.cfg, self.out, stop=self._stop, ready=ready, resolve=self.resolve,
                                  engine_factory=partial(_given, self.engine))
        except BaseException as e:     # surfaced by __post_init__ or stop()
            self.error = e
        finally:
            self._ready.set()

    def connect(self) -> socket.socket:
        s = socket.create_connection(("127.0.0.1", self.port), timeout=TIMEOUT_S)
        s.settimeout(TIMEOUT_S)
        return s

    def stop(self) -> IcapStats:
        self._stop.set()
        self._thread.join(60)
        assert not self._thread.is_alive(), "the ICAP service did not stop"
        if self.error is not None:
            raise self.error
        assert self.stats is not None
        return self.stats


def _given(engine: object) -> object:
    return engine


# -- requests --------------------------------------------------------------------------------------------

def http_request(body: bytes = BODY, *, target: str = "/upload?x=1", host: str = "api.example.com",
                 extra: str = "") -> bytes:
    return (f"POST {target} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{extra}\r\n").encode()


def chunked(body: bytes, *, sizes: int = 1000, ieof: bool = False) -> bytes:
    out = b"".join(b"%x\r\n%b\r\n" % (len(body[i:i + sizes]), body[i:i + sizes])
                   for i in range(0, len(body), sizes))
    return out + (b"0; ieof\r\n\r\n" if ieof else b"0\r\n\r\n")


def icap_head(method: str, sections: list[tuple[str, bytes]], body_kind: str, *,
              meta: dict[str, str] | None = None, preview: int | None = None, allow_204: bool = True,
              service: str = "egresswatch") -> bytes:
    """The ICAP head and encapsulated header blocks (the body, chunked, is the caller's)."""
    offsets, at = [], 0
    for name, block in sections:
        offsets.append(f"{name}={at}")
        at += len(block)
    offsets.append(f"{body_kind}={at}")
    lines = [f"{method} icap://127.0.0.1/{service} ICAP/1.0", "Host: 127.0.0.1",
             f"Encapsulated: {', '.join(offsets)}"]
    if preview is not None:
        lines.append(f"Preview: {preview}")
    if allow_204:
        lines.append("Allow: 204")
    lines += [f"{k}: {v}" for k, v in (meta or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + b"".join(b for _, b in sections)


def reqmod(body: bytes = BODY, *, meta: dict[str, str] | None = None, allow_204: bool = True,
           hdr: bytes | None = None) -> bytes:
    """A whole REQMOD without preview."""
    meta = {"X-Client-IP": CLIENT, "X-Server-IP": ABROAD} if meta is None else meta
    hdr = http_request(body) if hdr is None else hdr
    return icap_head("REQMOD", [("req-hdr", hdr)], "req-body", meta=meta, allow_204=allow_204) + chunked(body)


# -- answers ---------------------------------------------------------------------------------------------

@dataclass
class Answer:
    status: int
    fields: dict[str, str]
    encapsulated: bytes = b""      # the echoed header block(s)
    body: bytes | None = None      # the echoed body, de-chunked


class Reader:
    """Strict reads of ICAP answers off one socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.buf = sock, b""

    def _more(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("the service closed the connection")
        self.buf += data

    def until(self, sep: bytes) -> bytes:
        while sep not in self.buf:
            self._more()
        i = self.buf.index(sep) + len(sep)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._more()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def answer(self) -> Answer:
        head = self.until(b"\r\n\r\n").decode("latin-1")
        first, *lines = head[:-4].split("\r\n")
        version, status, _ = first.split(" ", 2)
        assert version == "ICAP/1.0", first
        fields = {n.strip().lower(): v.strip() for n, _, v in (line.partition(":") for line in lines)}
        answer = Answer(int(status), fields)
        if answer.status in (100, 204) or "encapsulated" not in fields:
            return answer
        parts = [p.strip().split("=") for p in fields["encapsulated"].split(",")]
        kind, last = parts[-1][0], int(parts[-1][1])
        answer.encapsulated = self.exact(last)
        if kind in ("req-body", "res-body"):
            body = b""
            while True:
                size = int(self.until(b"\r\n")[:-2].split(b";")[0], 16)
                if size == 0:
                    assert self.until(b"\r\n") == b"\r\n"
                    break
                body += self.exact(size)
                assert self.exact(2) == b"\r\n"
            answer.body = body
        return answer

    def closed(self) -> bool:
        """True when the service closes the connection (an answer before it is read and dropped)."""
        try:
            while self.sock.recv(65536):
                pass
        except ConnectionResetError:
            pass
        return True
