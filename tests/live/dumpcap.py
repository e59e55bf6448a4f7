"""dumpcap on the client's veth, stopped only once it has written everything the clients sent.

dumpcap keeps packets in its buffers (and the kernel's ring) until it exits, and on SIGINT it exits without
reading what the ring still holds: on a loaded machine the last connections of a run were missing from the
file. So dumpcap writes pcapng to a pipe (it flushes every packet there), a thread copies it block by block
into the file, and `stop()` first sends a sentinel datagram from the client namespace and waits until the
sentinel has come through the pipe: every packet sent before it has been captured. Blocks holding the
sentinel's bytes (the datagram, the ICMP port-unreachable that quotes it) are left out of the file, which so
holds only the clients' traffic. A start datagram does the same for readiness: "Capturing on" comes before
dumpcap reads packets.
"""

from __future__ import annotations

import secrets
import signal
import struct
import subprocess
import threading
import time
from pathlib import Path
from typing import IO

from tests.live import plan
from tests.live.netns import PYTHON, NetnsError, Topology

SENTINEL_PORT = 9          # discard: nothing listens, the server namespace answers port unreachable
TIMEOUT_S = 30
SEND = "import socket, sys; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(sys.argv[1].encode(), " \
       "(sys.argv[2], int(sys.argv[3])))"


class Dumpcap:
    """`dumpcap -i IFACE -w -` in the client namespace, its pcapng copied to `out`."""

    def __init__(self, t: Topology, out: Path) -> None:
        self.t, self.out = t, out
        self.sentinel = f"egresswatch-capture-end-{secrets.token_hex(8)}".encode()
        self.seen = threading.Event()
        # Likewise at the start: "Capturing on" comes before dumpcap's loop reads packets, and on a busy
        # machine traffic passed unseen in between; ready once a start datagram has come through.
        self.start_token = f"egresswatch-capture-start-{secrets.token_hex(8)}".encode()
        self.started = threading.Event()
        self.error: BaseException | None = None
        self.stderr = t.workdir / "dumpcap.stderr"
        with self.stderr.open("w") as fh:
            self.proc = t.run_in(t.client_ns, ["dumpcap", "-i", t.client_if, "-w", "-", "-s", "0"],
                                 stdout=subprocess.PIPE, stderr=fh)
        self.thread = threading.Thread(target=self._copy, name="dumpcap-copy", daemon=True)
        self.thread.start()

    def wait_ready(self) -> None:
        """Until a datagram sent from the client namespace has come through dumpcap's pipe."""
        deadline = time.monotonic() + TIMEOUT_S
        while not self.started.is_set():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise NetnsError(f"dumpcap not ready (exit {self.proc.poll()}): {self.stderr.read_text()}")
            if "Capturing on" in self.stderr.read_text(errors="replace"):
                self._send(self.start_token)
                self.started.wait(0.2)
            else:
                time.sleep(0.05)

    def _send(self, token: bytes) -> None:
        r = self.t.run(self.t.client_ns, [PYTHON, "-c", SEND, token.decode(), plan.GATEWAY_IP,
                                          str(SENTINEL_PORT)], timeout=TIMEOUT_S)
        if r.returncode != 0:
            raise NetnsError(f"sending a capture sentinel failed: {r.stderr.strip()}")

    def _copy(self) -> None:
        assert self.proc.stdout is not None
        try:
            with self.out.open("wb") as fh:
                self._blocks(self.proc.stdout, fh)
        except BaseException as e:   # reported by stop(): a thread's exception would go nowhere
            self.error = e
            self.seen.set()

    def _blocks(self, src: IO[bytes], dst: IO[bytes]) -> None:
        """pcapng blocks: type, total length, body, total length (the byte order of this host, as dumpcap
        writes it); each one whole before it is judged."""
        buf = bytearray()
        while chunk := src.read1(65536):   # type: ignore[attr-defined]
            buf += chunk
            while len(buf) >= 8:
                length = struct.unpack_from("=I", buf, 4)[0]
                if length < 12 or length % 4:
                    raise NetnsError(f"dumpcap wrote a block of length {length}")
                if len(buf) < length:
                    break
                block = bytes(buf[:length])
                del buf[:length]
                if self.sentinel in block:
                    self.seen.set()
                elif self.start_token in block:
                    self.started.set()
                else:
                    dst.write(block)
        if buf:
            raise NetnsError(f"dumpcap's output ended inside a block ({len(buf)} bytes left)")

    def stop(self) -> None:
        """Send the sentinel, wait for it to be captured, then stop dumpcap and finish the file."""
        try:
            self._send(self.sentinel)
            if not self.seen.wait(TIMEOUT_S):
                raise NetnsError("dumpcap did not capture the sentinel")
        finally:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGINT)
            rc = self.proc.wait(timeout=TIMEOUT_S)
            self.thread.join(TIMEOUT_S)
        if self.error is not None:
            raise NetnsError(f"copying dumpcap's output: {self.error}") from self.error
        if rc != 0:
            raise NetnsError(f"dumpcap exited {rc}: {self.stderr.read_text()}")
