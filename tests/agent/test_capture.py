"""agent.capture: pcap / pcapng / gzip readers, and what they do with files that are not clean captures."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import pytest

from agent.anomalies import AnomalySink
from agent.capture import CaptureFormatError, open_capture

REAL = Path(__file__).parents[2].parent / "shared" / "pcaps" / "real"

FRAMES = [bytes([i]) * (60 + i) for i in range(5)]
TIMES = [1_700_000_000.25 + i for i in range(5)]


def pcap_bytes(frames: list[bytes], times: list[float], *, order: str = "<", nano: bool = False,
               linktype: int = 1, snaplen: int = 65535) -> bytes:
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = [struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)]
    for frame, ts in zip(frames, times, strict=True):
        sec = int(ts)
        frac = round((ts - sec) * (1e9 if nano else 1e6))
        out.append(struct.pack(order + "IIII", sec, frac, len(frame), len(frame)) + frame)
    return b"".join(out)


def _block(order: str, btype: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    n = len(body) + 12
    return struct.pack(order + "II", btype, n) + body + struct.pack(order + "I", n)


def pcapng_bytes(packets: list[tuple[int, float, bytes]], ifaces: list[tuple[int, int]], *, order: str = "<"
                 ) -> bytes:
    """packets: (interface id, ts, frame); ifaces: (link type, if_tsresol exponent of ten)."""
    shb = _block(order, 0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1))
    out = [shb]
    for linktype, res in ifaces:
        opts = struct.pack(order + "HHB3x", 9, 1, res) + struct.pack(order + "HH", 0, 0)
        out.append(_block(order, 1, struct.pack(order + "HHI", linktype, 0, 0) + opts))
    for iid, ts, frame in packets:
        res = ifaces[iid][1]
        units = round(ts * 10**res)
        out.append(_block(order, 6, struct.pack(order + "IIIII", iid, units >> 32, units & 0xFFFFFFFF,
                                                len(frame), len(frame)) + frame))
    return b"".join(out)


def read(path: Path) -> tuple[list[tuple[float, int, bytes]], AnomalySink]:
    sink = AnomalySink()
    return list(open_capture(path, sink)), sink


FORMATS = {
    "pcap_little_endian_microseconds": lambda: pcap_bytes(FRAMES, TIMES),
    "pcap_big_endian_microseconds": lambda: pcap_bytes(FRAMES, TIMES, order=">"),
    "pcap_little_endian_nanoseconds": lambda: pcap_bytes(FRAMES, TIMES, nano=True),
    "pcap_big_endian_nanoseconds": lambda: pcap_bytes(FRAMES, TIMES, order=">", nano=True),
    "pcapng_little_endian": lambda: pcapng_bytes([(0, t, f) for t, f in zip(TIMES, FRAMES, strict=True)],
                                                 [(1, 6)]),
    "pcapng_big_endian": lambda: pcapng_bytes([(0, t, f) for t, f in zip(TIMES, FRAMES, strict=True)],
                                              [(1, 6)], order=">"),
    "gzip_pcap": lambda: gzip.compress(pcap_bytes(FRAMES, TIMES)),
    "gzip_pcapng": lambda: gzip.compress(pcapng_bytes([(0, t, f) for t, f in zip(TIMES, FRAMES, strict=True)],
                                                      [(1, 9)])),
}


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_capture_format_yields_the_same_frames_and_times(fmt: str, tmp_path: Path) -> None:
    path = tmp_path / "c.cap"
    path.write_bytes(FORMATS[fmt]())
    records, sink = read(path)
    assert [f for _, _, f in records] == FRAMES
    assert [lt for _, lt, _ in records] == [1] * 5
    assert [t for t, _, _ in records] == pytest.approx(TIMES, abs=1e-6)
    assert not sink.records


def test_pcapng_interfaces_keep_their_own_link_type_and_timestamp_resolution(tmp_path: Path) -> None:
    path = tmp_path / "multi.pcapng"
    packets = [(0, 1000.5, b"a" * 20), (1, 2000.25, b"b" * 20), (2, 3000.125, b"c" * 20), (0, 1001.0, b"d")]
    path.write_bytes(pcapng_bytes(packets, [(1, 6), (113, 9), (101, 3)]))
    records, _ = read(path)
    assert [(lt, f[:1]) for _, lt, f in records] == [(1, b"a"), (113, b"b"), (101, b"c"), (1, b"d")]
    assert [t for t, _, _ in records] == pytest.approx([1000.5, 2000.25, 3000.125, 1001.0])


def test_empty_capture_yields_nothing_and_reports_nothing(tmp_path: Path) -> None:
    path = tmp_path / "empty.pcap"
    path.write_bytes(pcap_bytes([], []))
    records, sink = read(path)
    assert records == [] and not sink.records


CUTS = {
    # name: (bytes to keep from the 5-record capture, records expected before the cut, anomaly name)
    "cut_inside_a_record_body": (24 + (16 + 60) + (16 + 61) + 16 + 10, 2, "truncated_capture"),
    "cut_inside_a_record_header": (24 + (16 + 60) + 7, 1, "truncated_capture"),
}


@pytest.mark.parametrize("case", CUTS)
@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_truncated_capture_yields_records_before_the_cut_then_one_anomaly(case: str, compress: bool,
                                                                        tmp_path: Path) -> None:
    keep, n, name = CUTS[case]
    data = pcap_bytes(FRAMES, TIMES)[:keep]
    path = tmp_path / "cut.pcap"
    if compress:
        data = gzip.compress(data)  # a cut capture, compressed afterwards
    path.write_bytes(data)
    records, sink = read(path)
    assert [f for _, _, f in records] == FRAMES[:n]
    assert [(r.layer, r.name) for r in sink.records] == [("capture", name)]


def test_gzip_stream_cut_short_yields_a_prefix_then_one_truncation_anomaly(tmp_path: Path) -> None:
    frames = [bytes(range(256)) * 4 for _ in range(200)]
    data = gzip.compress(pcap_bytes(frames, [float(i) for i in range(200)]))
    path = tmp_path / "cut.pcap.gz"
    path.write_bytes(data[:len(data) // 2])
    records, sink = read(path)
    assert 0 < len(records) < 200
    assert all(f == frames[0] for _, _, f in records)
    assert [(r.layer, r.name) for r in sink.records] == [("capture", "truncated_capture")]


def test_record_length_beyond_any_snaplen_is_a_corrupt_record(tmp_path: Path) -> None:
    data = bytearray(pcap_bytes(FRAMES, TIMES))
    struct.pack_into("<I", data, 24 + 16 + 60 + 8, 3_925_868_813)  # second record's caplen
    path = tmp_path / "corrupt.pcap"
    path.write_bytes(bytes(data))
    records, sink = read(path)
    assert [f for _, _, f in records] == FRAMES[:1]
    assert [(r.layer, r.name) for r in sink.records] == [("capture", "corrupt_record")]


def test_corrupt_pcapng_block_length_stops_after_the_good_blocks(tmp_path: Path) -> None:
    good = pcapng_bytes([(0, 1.0, b"x" * 16)], [(1, 6)])
    path = tmp_path / "corrupt.pcapng"
    path.write_bytes(good + struct.pack("<II", 6, 7) + b"\0" * 16)
    records, sink = read(path)
    assert len(records) == 1
    assert [r.name for r in sink.records] == ["corrupt_record"]


def test_nanosecond_field_beyond_one_second_does_not_crash(tmp_path: Path) -> None:
    data = bytearray(pcap_bytes(FRAMES[:2], TIMES[:2], nano=True))
    struct.pack_into("<I", data, 24 + 4, 1_000_000_000)
    path = tmp_path / "badts.pcap"
    path.write_bytes(bytes(data))
    records, sink = read(path)
    assert len(records) == 2
    assert [r.name for r in sink.records] == ["invalid_timestamp"]


NOT_CAPTURES = {
    "text_file": b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
    "empty_file": b"",
    "two_bytes": b"\xd4\xc3",
    "gzip_of_text": gzip.compress(b"hello world, not a capture"),
    "corrupt_gzip": b"\x1f\x8b\x08\x00garbage-garbage-garbage",
    "pcap_header_cut_short": pcap_bytes([], [])[:20],
}


@pytest.mark.parametrize("content", NOT_CAPTURES)
def test_not_a_capture_raises_a_one_line_error_naming_the_file_before_yielding(content: str,
                                                                               tmp_path: Path) -> None:
    path = tmp_path / f"{content}.bin"
    path.write_bytes(NOT_CAPTURES[content])
    with pytest.raises(CaptureFormatError) as err:
        open_capture(path, AnomalySink(strict=True))  # raised by the call itself, not on iteration
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    assert isinstance(err.value, ValueError)


def test_missing_file_is_a_capture_format_error(tmp_path: Path) -> None:
    with pytest.raises(CaptureFormatError, match=r"nope\.pcap"):
        open_capture(tmp_path / "nope.pcap", AnomalySink())


REAL_EXPECTATIONS = {
    # file: (records, anomaly names) — packet counts from capinfos/tshark (shared/pcaps/real/MANIFEST.md)
    "bad_smtp-edited-broken-record-lengths.pcap": (18, ["corrupt_record"]),
    "fmt_pcap-empty.pcap": (0, []),
    "fmt_pcap-big-endian.pcap": (2, []),
    "dns_multi-interface.pcapng": (6, []),
    "fmt_pcapng-126-idbs-mixed-linktypes.pcapng": (17, []),
    "quic_v2-sll-dsb.pcapng": (19, []),
    "fmt_nsec-invalid-timestamps.pcap": (3, ["invalid_timestamp"]),
    "http_1kxun-utf8-chinese-json.pcap": (1439, []),  # pcapng content behind a .pcap name
}


@pytest.mark.parametrize("name", REAL_EXPECTATIONS)
def test_real_capture_record_counts_match_capinfos(name: str) -> None:
    path = REAL / name
    if not path.exists():
        pytest.skip(f"{path} is absent")
    records, sink = read(path)
    assert (len(records), [r.name for r in sink.records]) == REAL_EXPECTATIONS[name]
