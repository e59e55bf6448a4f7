"""802.11 data frames, bare (link type 105) or behind a radiotap header (127), down to their LLC/SNAP payload.

What a monitor-mode capture of an open (or already decrypted) network holds: radiotap (radiotap.org) says
how the frame was received — of it only the Flags field matters here (FCS at the end, padding after the
802.11 header, a failed FCS check); then the 802.11 MAC header (IEEE 802.11-2020 §9.2), whose size depends
on the frame's subtype and its to-DS/from-DS bits; then 802.2 LLC + SNAP naming the ethertype.

Only data frames with a body go on: management and control frames, null data, protected (encrypted)
frames, fragments and A-MSDU aggregates are skipped silently — they carry no IP we could read. Frames too
short for the headers they announce raise `WlanError`, which the decoder turns into an anomaly.

dpkt has `radiotap` and `ieee80211` modules, but they build an object per header and raise their own
errors on truncated input; the fixed-offset reads below are all the decoder needs.
"""

from __future__ import annotations

import struct

LT_IEEE802_11, LT_RADIOTAP = 105, 127

_RT_TSFT, _RT_FLAGS, _RT_EXT = 1 << 0, 1 << 1, 1 << 31
_RT_F_FCS, _RT_F_DATAPAD, _RT_F_BADFCS = 0x10, 0x20, 0x40

_TYPE_DATA = 2
_FC_TO_DS, _FC_FROM_DS, _FC_MORE_FRAG, _FC_PROTECTED, _FC_ORDER = 0x01, 0x02, 0x04, 0x40, 0x80
_SNAP_OUIS = (b"\x00\x00\x00", b"\x00\x00\xf8")   # RFC 1042, 802.1H bridge tunnel
MAX_PRESENT_WORDS = 8    # radiotap presence bitmaps chained by bit 31; real ones use 1 to 3


class WlanError(Exception):
    """A frame too short or malformed for the headers it announces: (anomaly name, detail)."""

    def __init__(self, name: str, detail: str) -> None:
        super().__init__(name, detail)
        self.name, self.detail = name, detail


def radiotap(frame: bytes) -> tuple[bytes, int] | None:
    """(the 802.11 frame without radiotap header and FCS, radiotap flags); None for a failed FCS check."""
    n = len(frame)
    if n < 8:
        raise WlanError("truncated_frame", f"radiotap header of {n} bytes")
    version, hlen, present = frame[0], *struct.unpack_from("<HI", frame, 2)
    if version != 0 or hlen < 8:
        raise WlanError("bad_radiotap_header", f"version {version}, length {hlen}")
    if hlen > n:
        raise WlanError("truncated_frame", f"radiotap header of {hlen} bytes in a frame of {n}")
    pos, word = 8, present
    for _ in range(MAX_PRESENT_WORDS):
        if not word & _RT_EXT:
            break
        if pos + 4 > hlen:
            raise WlanError("bad_radiotap_header", "presence bitmap runs past the header")
        word = struct.unpack_from("<I", frame, pos)[0]
        pos += 4
    else:
        raise WlanError("bad_radiotap_header", f"more than {MAX_PRESENT_WORDS} presence words")
    flags = 0
    if present & _RT_FLAGS:
        if present & _RT_TSFT:
            pos = ((pos + 7) & ~7) + 8      # TSFT: 8 bytes, aligned to 8 from the header's start
        if pos >= hlen:
            raise WlanError("bad_radiotap_header", "flags field past the header")
        flags = frame[pos]
    if flags & _RT_F_BADFCS:
        return None                          # the radio says the frame is corrupt
    end = n - 4 if flags & _RT_F_FCS else n
    if end < hlen:
        raise WlanError("truncated_frame", "radiotap frame shorter than its FCS")
    return frame[hlen:end], flags


def llc_payload(frame: bytes, flags: int = 0) -> tuple[int, int] | None:
    """(offset of the network header, its ethertype) in an 802.11 frame, or None if it carries none."""
    n = len(frame)
    if n < 2:
        raise WlanError("truncated_frame", f"802.11 frame of {n} bytes")
    fc0, fc1 = frame[0], frame[1]
    if (fc0 >> 2) & 3 != _TYPE_DATA or fc0 & 0x03:
        return None                          # management, control, extension; or an unknown version
    subtype = fc0 >> 4
    if subtype & 0x4 or fc1 & (_FC_PROTECTED | _FC_MORE_FRAG):
        return None                          # null data (no body), encrypted, or a first fragment
    hlen = 30 if fc1 & _FC_TO_DS and fc1 & _FC_FROM_DS else 24    # four addresses in a WDS/mesh frame
    if subtype & 0x8:                        # QoS data: a QoS control field, perhaps HT control too
        if n < hlen + 2:
            raise WlanError("truncated_frame", f"802.11 QoS data frame of {n} bytes")
        if frame[hlen] & 0x80:
            return None                      # A-MSDU: several subframes in one body
        hlen += 2 + (4 if fc1 & _FC_ORDER else 0)
    if n < hlen:
        raise WlanError("truncated_frame", f"802.11 data frame of {n} bytes, header of {hlen}")
    if struct.unpack_from("<H", frame, 22)[0] & 0x000F:
        return None                          # a later fragment: not reassembled
    if flags & _RT_F_DATAPAD:
        hlen = (hlen + 3) & ~3               # the driver padded the header to 32 bits
    if n < hlen + 8:
        raise WlanError("truncated_frame", f"802.11 data frame of {n} bytes, no room for LLC/SNAP")
    if frame[hlen:hlen + 3] != b"\xaa\xaa\x03" or frame[hlen + 3:hlen + 6] not in _SNAP_OUIS:
        return None                          # not LLC/SNAP: STP, IPX, vendor protocols
    return hlen + 8, struct.unpack_from("!H", frame, hlen + 6)[0]
