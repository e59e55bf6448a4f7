"""Frames from a live Linux interface: an AF_PACKET socket, as libpcap opens one (DESIGN §8 `--iface`).

The socket is bound to one interface, optionally promiscuous, optionally with a BPF filter compiled by
libpcap through scapy (`--bpf "tcp port 80"`, the tcpdump syntax every operator knows) and attached in the
kernel, so unwanted frames never reach Python. Timestamps come from the kernel (SO_TIMESTAMPNS), not from
when Python got round to reading. The kernel's own count of frames it had to drop (PACKET_STATISTICS) is
read with the agent's counters: capture loss is reported, never guessed.

`frames()` yields (ts, linktype, frame) like the capture file readers; a receive timeout lets the caller's
`tick` run (idle flows, periodic flushes) and its stop flag be seen within a fraction of a second even when
the interface is silent. On `lo` every frame appears twice (outgoing and incoming); libpcap drops the
outgoing copy, and so does this.
"""

from __future__ import annotations

import ctypes
import logging
import socket
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path

log = logging.getLogger(__name__)

__all__ = ["LiveCaptureError", "LiveSource"]

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
PACKET_STATISTICS = 6
PACKET_OUTGOING = 4
SO_TIMESTAMPNS = 35
SO_ATTACH_FILTER = 26
SNAPLEN = 262_144               # GSO/TSO hand outgoing TCP to the socket before segmentation: up to 64 KiB+
RCVBUF = 8 << 20                # kernel buffer: bursts wait here instead of being dropped
_TIMESPEC = struct.Struct("qq")
_CMSG_SPACE = socket.CMSG_SPACE(_TIMESPEC.size)

# ARPHRD (/sys/class/net/IFACE/type) -> pcap link type the decoder knows.
_LINKTYPES = {1: 1, 772: 1, 65534: 101, 776: 101, 778: 101}


class LiveCaptureError(ValueError):
    """The interface cannot be captured on (missing, no permission, bad filter): one line."""


def _linktype(iface: str) -> int:
    try:
        arphrd = int(Path(f"/sys/class/net/{iface}/type").read_text())
    except (OSError, ValueError):
        raise LiveCaptureError(f"--iface {iface}: no such network interface") from None
    linktype = _LINKTYPES.get(arphrd)
    if linktype is None:
        raise LiveCaptureError(f"--iface {iface}: link type ARPHRD {arphrd} is not supported "
                               "(Ethernet, loopback or raw IP interfaces are)")
    return linktype


def _attach_bpf(sock: socket.socket, expr: str, linktype: int) -> None:
    """Compile the filter with libpcap (via scapy) and attach it in the kernel (SO_ATTACH_FILTER); the
    kernel copies the program during setsockopt, so libpcap's buffer is freed right after."""
    try:
        from scapy.arch.common import compile_filter
        from scapy.libs.structures import sock_fprog
        from scapy.libs.winpcapy import pcap_freecode
    except (ImportError, OSError) as e:
        raise LiveCaptureError(f"--bpf needs libpcap, which is not available ({e})") from None
    try:
        program = compile_filter(expr, linktype=linktype)
    except Exception as e:   # scapy raises its own exception types for a bad expression
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise LiveCaptureError(f"--bpf {expr!r}: {first}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER,
                        bytes(memoryview(sock_fprog(program.bf_len, program.bf_insns))))  # type: ignore[arg-type]
    finally:
        pcap_freecode(ctypes.byref(program))


class LiveSource:
    def __init__(self, iface: str, bpf: str | None = None, promiscuous: bool = True,
                 poll_s: float = 0.2) -> None:
        self.iface = iface
        self.linktype = _linktype(iface)
        self.loopback = Path(f"/sys/class/net/{iface}/type").read_text().strip() == "772"
        self.poll_s = poll_s
        self.kernel_packets = self.kernel_dropped = 0
        try:
            # Protocol 0: the socket receives nothing until bind names the protocol, after the filter is
            # attached. A socket made for ETH_P_ALL queues every frame of every interface from its creation,
            # and compiling the filter takes milliseconds: those frames would be read, unfiltered (libpcap
            # opens its sockets the same way).
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        except PermissionError:
            raise LiveCaptureError(f"--iface {iface}: capturing needs root or CAP_NET_RAW") from None
        try:
            if bpf:
                _attach_bpf(self.sock, bpf, self.linktype)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
            self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            self.sock.bind((iface, ETH_P_ALL))      # reception starts here: this interface, filtered
            if promiscuous:
                index = socket.if_nametoindex(iface)
                mreq = struct.pack("IHH8s", index, PACKET_MR_PROMISC, 0, b"")
                self.sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
            self.sock.settimeout(poll_s)
        except OSError as e:
            self.sock.close()
            raise LiveCaptureError(f"--iface {iface}: {e.strerror or e}") from None
        log.info("capturing on %s (link type %d%s%s)", iface, self.linktype,
                 ", promiscuous" if promiscuous else "", f", filter {bpf!r}" if bpf else "")

    def close(self) -> None:
        self.read_kernel_stats()
        self.sock.close()

    def read_kernel_stats(self) -> tuple[int, int]:
        """(frames the kernel saw for this socket, frames it dropped), cumulative. The kernel resets its
        counters on every read, so they are summed here."""
        try:
            raw = self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
        except OSError:
            return self.kernel_packets, self.kernel_dropped
        packets, drops = struct.unpack("II", raw)
        self.kernel_packets += packets
        self.kernel_dropped += drops
        return self.kernel_packets, self.kernel_dropped

    def frames(self, should_stop: Callable[[], bool], tick: Callable[[float], None]
               ) -> Iterator[tuple[float, int, bytes]]:
        """Frames until `should_stop()`; `tick(now)` at least every poll interval, between frames."""
        recvmsg, linktype, poll = self.sock.recvmsg, self.linktype, self.poll_s
        next_tick = 0.0
        draining, left = False, 0
        while True:
            now = time.time()
            if draining:
                left -= 1
                if left < 0:           # traffic still arriving: what was queued at the stop has been read
                    self.sock.settimeout(poll)
                    return
            elif now >= next_tick:
                if should_stop():
                    # The frames the kernel already queued for this socket are part of the capture (it
                    # counted them as received, never as dropped): read them without waiting, then end.
                    # At most a full receive buffer of them (a queued frame takes 64 bytes or more).
                    draining, left = True, RCVBUF // 64
                    self.sock.setblocking(False)
                else:
                    tick(now)
                    next_tick = now + poll
            try:
                frame, ancillary, _flags, address = recvmsg(SNAPLEN, _CMSG_SPACE)
            except TimeoutError:
                continue
            except BlockingIOError:    # draining, and the queue is empty
                self.sock.settimeout(poll)
                return
            except InterruptedError:   # a signal arrived: look at the stop flag
                next_tick = 0.0
                continue
            if self.loopback and address[2] == PACKET_OUTGOING:
                continue
            ts = now
            for level, kind, data in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= _TIMESPEC.size:
                    sec, nsec = _TIMESPEC.unpack_from(data)
                    ts = sec + nsec * 1e-9
            yield ts, linktype, frame
