"""What a QUIC packet looks like from outside (RFC 9000 §17.2, RFC 9369): the versions the agent reads and
`is_quic`, the registry's content check for UDP. Kept apart from agent/protocols/quic.py so that recognising
QUIC costs no aioquic import: that loads with the first QUIC flow, not at every agent's start."""

from __future__ import annotations

from typing import Final

__all__ = ["DRAFT_VERSIONS", "KNOWN_VERSIONS", "MAX_CID", "VERSION_1", "VERSION_2", "is_quic"]

VERSION_1: Final = 0x00000001
VERSION_2: Final = 0x6B3343CF                                  # RFC 9369
DRAFT_VERSIONS: Final = frozenset(range(0xFF00001D, 0xFF000021))  # draft-29 .. draft-32
KNOWN_VERSIONS: Final = frozenset({VERSION_1, VERSION_2}) | DRAFT_VERSIONS
MAX_CID: Final = 20       # RFC 9000 §17.2: a v1 connection ID is at most 20 bytes


def is_quic(payload: bytes) -> bool:
    """A QUIC long-header packet (RFC 9000 §17.2) of a known version, or a version negotiation packet."""
    if len(payload) < 7 or not payload[0] & 0x80:
        return False
    version = int.from_bytes(payload[1:5], "big")
    dcid_len = payload[5]
    if dcid_len > MAX_CID or len(payload) < 7 + dcid_len or payload[6 + dcid_len] > MAX_CID:
        return False
    if version == 0:
        # §17.2.1: after the connection IDs, a non-empty list of 32-bit versions.
        rest = len(payload) - 7 - dcid_len - payload[6 + dcid_len]
        return rest >= 4 and rest % 4 == 0
    return version in KNOWN_VERSIONS     # the fixed bit may be greased (RFC 9287): the version decides
