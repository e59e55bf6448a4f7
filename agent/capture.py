"""Packet sources: classic pcap and pcapng files, optionally gzip-compressed.

Formats: classic libpcap (both byte orders, microsecond magic 0xa1b2c3d4 and nanosecond magic 0xa1b23c4d;
draft-ietf-opsawg-pcap) and pcapng (draft-ietf-opsawg-pcapng: Section Header, Interface Description,
Enhanced / Simple / obsolete Packet blocks, Decryption Secrets Blocks; several sections and interfaces,
each with its own link type, `if_tsresol` and `if_tsoffset`). A file starting with the gzip magic 1f 8b is
read through `gzip`.

The blocks are walked here with `struct` rather than through dpkt: dpkt's pcapng reader keeps one link
type for the whole file, and neither of its readers tells a corrupt record header from the end of a file.

Contract (docs/internals.md): a file that is not a capture raises `CaptureFormatError` before anything is
yielded; a capture cut short or with a corrupt record yields every record before the cut, adds one
anomaly (layer `capture`) and stops. Nothing is raised once iteration has begun.
"""

from __future__ import annotations

import gzip
import logging
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from agent import progress as _progress
from agent.anomalies import AnomalySink
from detectors.inputs import InputError

if TYPE_CHECKING:
    from agent.keylog import KeyLog

log = logging.getLogger(__name__)

PCAP_MAGICS: dict[bytes, tuple[str, float]] = {
    # magic as it appears on disk -> (struct byte order, seconds per timestamp-fraction unit)
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
    b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9),
    b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}
PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"
GZIP_MAGIC = b"\x1f\x8b"
# gzip.BadGzipFile is an OSError; a stream cut short raises EOFError; bad deflate data zlib.error.
READ_ERRORS = (OSError, EOFError, zlib.error)

# Larger than any real frame (the biggest snaplen in use is 262144; GSO frames stay below 64 KiB per
# segment), small enough that a corrupt length cannot make us allocate gigabytes.
MAX_RECORD = 1 << 20
MAX_BLOCK = 16 << 20
READ_CHUNK = 1 << 20                 # bytes per read of a classic pcap
# Timestamps past 9999-12-31 cannot become a datetime (records are timestamp[us]); treat them as invalid.
MAX_TS = 253402300799.0

# pcapng block types
BT_IDB, BT_PB, BT_SPB, BT_EPB, BT_DSB = 1, 2, 3, 6, 0x0A
SECRETS_TLS_KEYLOG = 0x544C534B     # DSB secrets type "TLSK": NSS key log lines
OPT_IF_TSRESOL, OPT_IF_TSOFFSET = 9, 14


class CaptureFormatError(InputError):
    """The file is not a packet capture this agent can read."""

    def __init__(self, path: Path | str, detail: str) -> None:
        self.path = Path(path)
        self.detail = detail
        super().__init__(f"{path}: not a readable packet capture ({detail})")


def open_capture(path: Path, anomalies: AnomalySink, progress: _progress.CaptureProgress | None = None,
                 *, secrets: KeyLog | None = None) -> Iterator[tuple[float, int, bytes]]:
    """Open `path` and return an iterator of (timestamp, link type, frame bytes).

    The header is checked here, eagerly, so that a bad file fails before the caller sees a packet.
    `progress` (default: the one a command line is watching with, agent/progress.py) hears where in the
    file on disk the reading is, every `progress.EVERY` packets. `secrets` receives the TLS key log lines of
    pcapng Decryption Secrets Blocks as they are read (they precede the packets they decrypt); without it
    those blocks are skipped.
    """
    path = Path(path)
    try:
        raw: BinaryIO = open(path, "rb")  # noqa: SIM115 - handed over to the generator, which closes it
    except OSError as e:
        raise CaptureFormatError(path, e.strerror or type(e).__name__) from None
    f = raw
    try:
        head = raw.read(4)
        if head[:2] == GZIP_MAGIC:
            raw.seek(0)
            f = gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[assignment]
            head = f.read(4)
        if len(head) < 4:
            raise CaptureFormatError(path, "file too short for a capture header")
        if head in PCAP_MAGICS:
            gen = _read_pcap(path, f, head, anomalies)
        elif head == PCAPNG_SHB:
            gen = _read_pcapng(path, f, anomalies, secrets)
        else:
            raise CaptureFormatError(path, f"unknown magic {head.hex()}")
        next(gen)  # run up to the first yield: the header check happens now, not at first use
        progress = progress or _progress.current()
        if progress is not None:
            progress.file_started(path)
    except READ_ERRORS as e:
        f.close()
        raw.close()
        raise CaptureFormatError(path, f"unreadable ({type(e).__name__})") from None
    except BaseException:
        f.close()
        raw.close()
        raise
    return _guarded(gen, f, raw, anomalies, progress)


def _guarded(gen: Iterator[tuple[float, int, bytes]], f: BinaryIO, raw: BinaryIO, anomalies: AnomalySink,
             progress: _progress.CaptureProgress | None = None) -> Iterator[tuple[float, int, bytes]]:
    """Turn a read error mid-file (a gzip stream cut short, an I/O error) into the truncation anomaly;
    tell `progress` the position in the file on disk (compressed bytes for gzip) every EVERY packets."""
    n = 0
    try:
        if progress is None:
            for rec in gen:
                n += 1
                yield rec
        else:
            mask, tell = _progress.EVERY - 1, raw.tell
            for rec in gen:
                n += 1
                if not n & mask:
                    progress.advance(tell(), n)
                yield rec
    except READ_ERRORS as e:
        log.debug("capture read error after %d records: %s", n, type(e).__name__)
        anomalies.add("capture", "truncated_capture", f"{type(e).__name__} after {n} records")
    finally:
        if progress is not None:
            progress.file_done(n)
        f.close()
        raw.close()


def _read(f: BinaryIO, n: int) -> bytes:
    return f.read(n)


def _read_pcap(path: Path, f: BinaryIO, magic: bytes, anomalies: AnomalySink
               ) -> Iterator[tuple[float, int, bytes]]:
    order, unit = PCAP_MAGICS[magic]
    rest = _read(f, 20)
    if len(rest) < 20:
        raise CaptureFormatError(path, "pcap header cut short")
    _vmaj, _vmin, _zone, _sigfigs, snaplen, linktype = struct.unpack(order + "HHiIII", rest)
    # Upper bits of the link-type field carry FCS information (draft-ietf-opsawg-pcap §4).
    linktype &= 0xFFFF
    limit = max(snaplen, MAX_RECORD) if snaplen <= MAX_BLOCK else MAX_RECORD
    yield (0.0, 0, b"")  # header accepted (consumed by open_capture)
    unpack = struct.Struct(order + "IIII").unpack_from
    bad_ts = False
    n = 0
    # Records are sliced out of large reads: two small reads per packet cost more than decoding it.
    # read1 keeps a gzip stream's decoded prefix when its end is cut (read() would drop the whole chunk).
    read = getattr(f, "read1", f.read)
    broken: str | None = None

    def more(n: int) -> bytes:
        nonlocal broken
        try:
            return read(n)
        except READ_ERRORS as e:
            broken = type(e).__name__
            return b""

    buf, pos, eof = b"", 0, False
    while True:
        if len(buf) - pos < 16 and not eof:
            chunk = more(READ_CHUNK)
            eof = not chunk
            buf, pos = buf[pos:] + chunk, 0
        avail = len(buf) - pos
        if avail == 0:
            if broken:
                anomalies.add("capture", "truncated_capture", f"{broken} after {n} records")
            return
        if avail < 16:
            anomalies.add("capture", "truncated_capture", f"record header cut after {n} records")
            return
        sec, frac, caplen, _origlen = unpack(buf, pos)
        if caplen > limit:
            anomalies.add("capture", "corrupt_record",
                          f"record {n + 1}: caplen {caplen} exceeds snaplen {snaplen}")
            return
        end = pos + 16 + caplen
        while end > len(buf) and not eof:
            chunk = more(max(READ_CHUNK, end - len(buf)))
            eof = not chunk
            buf, end, pos = buf[pos:] + chunk, end - pos, 0
        if end > len(buf):
            anomalies.add("capture", "truncated_capture",
                          f"record {n + 1}: {len(buf) - pos - 16} of {caplen} bytes before end of file")
            return
        data = buf[pos + 16:end]
        pos = end
        n += 1
        ts = sec + frac * unit
        if frac * unit >= 1.0 and not bad_ts:
            # A fraction of a second >= 1 (ns field >= 1e9) is invalid but harmless: keep the packet.
            bad_ts = True
            anomalies.add("capture", "invalid_timestamp", f"record {n}: fraction {frac} out of range")
        yield (ts, linktype, data)


class _Iface:
    __slots__ = ("linktype", "offset", "snaplen", "unit")

    def __init__(self, linktype: int, snaplen: int, unit: float, offset: int) -> None:
        self.linktype = linktype
        self.snaplen = snaplen
        self.unit = unit
        self.offset = offset


def _iface_options(order: str, opts: bytes) -> tuple[float, int]:
    """(seconds per timestamp unit, offset in seconds) from an IDB's options."""
    unit, offset, i = 1e-6, 0, 0
    while i + 4 <= len(opts):
        code, length = struct.unpack_from(order + "HH", opts, i)
        if code == 0:
            break
        val = opts[i + 4:i + 4 + length]
        if code == OPT_IF_TSRESOL and length >= 1:
            r = val[0]
            unit = 2.0 ** -(r & 0x7F) if r & 0x80 else 10.0 ** -r
        elif code == OPT_IF_TSOFFSET and length >= 8:
            offset = struct.unpack(order + "q", val[:8])[0]
        i += 4 + ((length + 3) & ~3)
    return unit, offset


def _read_pcapng(path: Path, f: BinaryIO, anomalies: AnomalySink, secrets: KeyLog | None = None
                 ) -> Iterator[tuple[float, int, bytes]]:
    first = True
    order = "<"
    ifaces: list[_Iface] = []
    n = 0
    last_ts = 0.0
    bad_ts = False
    unknown_iface_reported = False
    pending = PCAPNG_SHB  # the block type already read by open_capture
    while True:
        btype_raw = pending or _read(f, 4)
        pending = b""
        if not btype_raw:
            return
        blen_raw = _read(f, 4)
        if len(btype_raw) < 4 or len(blen_raw) < 4:
            if first:
                raise CaptureFormatError(path, "pcapng header cut short")
            anomalies.add("capture", "truncated_capture", f"block header cut after {n} packets")
            return
        if btype_raw == PCAPNG_SHB:
            # A Section Header fixes the byte order of everything up to the next one.
            bom = _read(f, 4)
            if bom == b"\x4d\x3c\x2b\x1a":
                order = "<"
            elif bom == b"\x1a\x2b\x3c\x4d":
                order = ">"
            elif first:
                raise CaptureFormatError(path, "pcapng byte-order magic missing")
            else:
                anomalies.add("capture", "corrupt_record", f"section header after {n} packets: byte order")
                return
            blen = struct.unpack(order + "I", blen_raw)[0]
            if blen < 28 or blen % 4 or blen > MAX_BLOCK:
                if first:
                    raise CaptureFormatError(path, f"bad section header length {blen}")
                anomalies.add("capture", "corrupt_record", f"section header length {blen}")
                return
            body = _read(f, blen - 12)
            if len(body) < blen - 12:
                if first:
                    raise CaptureFormatError(path, "pcapng section header cut short")
                anomalies.add("capture", "truncated_capture", f"section header cut after {n} packets")
                return
            ifaces = []
            if first:
                first = False
                yield (0.0, 0, b"")  # header accepted (consumed by open_capture)
            continue
        btype = struct.unpack(order + "I", btype_raw)[0]
        blen = struct.unpack(order + "I", blen_raw)[0]
        if blen < 12 or blen % 4 or blen > MAX_BLOCK:
            anomalies.add("capture", "corrupt_record", f"block {btype:#x} after {n} packets: length {blen}")
            return
        body = _read(f, blen - 8)
        if len(body) < blen - 8:
            anomalies.add("capture", "truncated_capture",
                          f"block {btype:#x} after {n} packets: {len(body) + 8} of {blen} bytes")
            return
        if body[-4:] != blen_raw:
            anomalies.add("capture", "corrupt_record", f"block {btype:#x} after {n} packets: length mismatch")
            return
        body = body[:-4]
        if btype == BT_IDB:
            if len(body) < 8:
                anomalies.add("capture", "corrupt_record", "interface description block too short")
                return
            linktype, _res, snaplen = struct.unpack_from(order + "HHI", body)
            unit, offset = _iface_options(order, body[8:])
            ifaces.append(_Iface(linktype, snaplen, unit, offset))
            continue
        if btype in (BT_EPB, BT_PB):
            if len(body) < 20:
                anomalies.add("capture", "corrupt_record", f"packet block after {n} packets too short")
                return
            if btype == BT_EPB:
                iid, hi, lo, caplen, _orig = struct.unpack_from(order + "IIIII", body)
            else:
                iid, _drops, hi, lo, caplen, _orig = struct.unpack_from(order + "HHIIII", body)
            if caplen > len(body) - 20:
                anomalies.add("capture", "corrupt_record",
                              f"packet {n + 1}: caplen {caplen} exceeds its block")
                return
            if iid >= len(ifaces):
                if not unknown_iface_reported:
                    unknown_iface_reported = True
                    anomalies.add("capture", "unknown_interface", f"packet {n + 1}: interface {iid}")
                continue
            ifc = ifaces[iid]
            n += 1
            ts = ((hi << 32) | lo) * ifc.unit + ifc.offset
            if 0.0 <= ts < MAX_TS:
                last_ts = ts
            elif not bad_ts:
                # Unrepresentable as a datetime: keep the packet at the previous packet's time.
                bad_ts = True
                anomalies.add("capture", "invalid_timestamp", f"packet {n}: timestamp out of range")
            yield (last_ts, ifc.linktype, body[20:20 + caplen])
        elif btype == BT_SPB:
            if not ifaces or len(body) < 4:
                continue
            ifc = ifaces[0]
            orig = struct.unpack_from(order + "I", body)[0]
            caplen = min(orig, len(body) - 4)
            if ifc.snaplen:
                caplen = min(caplen, ifc.snaplen)
            n += 1
            # A Simple Packet Block has no timestamp: the previous packet's keeps capture time monotone.
            yield (last_ts, ifc.linktype, body[4:4 + caplen])
        elif btype == BT_DSB and secrets is not None and len(body) >= 8:
            stype, slen = struct.unpack_from(order + "II", body)
            if stype == SECRETS_TLS_KEYLOG:
                # Other secrets types (QUIC's are TLS lines too, WireGuard, ZigBee, …) are not read here.
                secrets.add_text(body[8:8 + slen], f"{path.name}: secrets block")
        # Other blocks (name resolution, statistics, custom) carry no packets.
