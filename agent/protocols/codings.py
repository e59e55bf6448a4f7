"""Incremental decoders for HTTP content and transfer codings, with an output cap.

Implements the codings of RFC 9110 §8.4.1 as used on the wire: gzip (RFC 1952, several members allowed),
deflate (RFC 9110 says zlib, RFC 1950; many clients send raw RFC 1951 deflate, so the first two bytes
decide) and br (RFC 7932). A request body may be a decompression bomb, so every stage is asked for at most
the remaining budget (plus one byte, to tell "exactly at the cap" from "over it") and never buffers more.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Sequence
from typing import Protocol

import brotli

log = logging.getLogger(__name__)

_GZIP_MAGIC = b"\x1f\x8b"


def _brotli_has_output_limit() -> bool:
    # brotli >= 1.2 can bound one call's output; 1.1 cannot (then one segment is bounded by its input only).
    try:
        brotli.Decompressor().process(b"", output_buffer_limit=1)
    except TypeError:
        return False
    return True


_BROTLI_LIMIT = _brotli_has_output_limit()


class CodingError(Exception):
    """A coded body that does not decode; the message names the coding, never the data."""


class _Stage(Protocol):
    name: str

    def feed(self, data: bytes, max_out: int) -> bytes:
        """Decode `data`; return at most `max_out + 1` bytes (more than max_out means: over the cap)."""
        ...


class _ZlibStage:
    """gzip (possibly several members) or deflate, zlib-wrapped or raw."""

    __slots__ = ("_d", "_done", "_gzip", "_pending", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self._gzip = name in ("gzip", "x-gzip")
        self._d: zlib._Decompress | None = zlib.decompressobj(31) if self._gzip else None
        self._pending = b""
        self._done = False

    def feed(self, data: bytes, max_out: int) -> bytes:
        if self._done:
            return b""
        if self._d is None:
            data = self._pending + data
            if len(data) < 2:
                self._pending = data
                return b""
            self._pending = b""
            cmf, flg = data[0], data[1]
            # RFC 1950 §2.2: CM = 8 and the header check; anything else is taken as raw deflate.
            is_zlib = (cmf & 0x0F) == 8 and (cmf >> 4) <= 7 and ((cmf << 8) | flg) % 31 == 0
            self._d = zlib.decompressobj(15 if is_zlib else -15)
        out = bytearray()
        while True:
            try:
                out += self._d.decompress(data, max_out + 1 - len(out))
            except zlib.error as exc:
                raise CodingError(f"{self.name} stream is corrupt after {len(out)} output bytes") from exc
            if len(out) > max_out or not self._d.eof:
                return bytes(out)
            rest = self._d.unused_data
            if self._gzip and _GZIP_MAGIC.startswith(rest[:2]) and len(rest) < 2:
                return bytes(out)  # maybe another member: zlib keeps later input in unused_data
            if not (self._gzip and rest.startswith(_GZIP_MAGIC)):
                # End of the stream; bytes after it are ignored (servers do the same).
                self._done = True
                return bytes(out)
            self._d, data = zlib.decompressobj(31), rest  # RFC 1952 §2.2: members are concatenated


class _BrotliStage:
    __slots__ = ("_d", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self._d = brotli.Decompressor()

    def feed(self, data: bytes, max_out: int) -> bytes:
        if self._d.is_finished():
            return b""
        try:
            if _BROTLI_LIMIT:
                return self._d.process(data, output_buffer_limit=max_out + 1)
            return self._d.process(data)
        except brotli.error as exc:
            raise CodingError(f"{self.name} stream is corrupt") from exc


# Coding name (lower-case, RFC 9110 §8.4.1 and the IANA registry) -> stage class.
_STAGES: dict[str, type[_ZlibStage] | type[_BrotliStage]] = {
    "gzip": _ZlibStage,
    "x-gzip": _ZlibStage,
    "deflate": _ZlibStage,
    "br": _BrotliStage,
}


# The IANA HTTP Content/Transfer Coding registries: names an anomaly may quote (anything else is only
# described by its shape: the field is the client's to fill, and some fill it with a phone number).
REGISTERED = frozenset({"aes128gcm", "br", "chunked", "compress", "dcb", "dcz", "deflate", "exi", "gzip",
                        "identity", "pack200-gzip", "trailers", "x-compress", "x-gzip", "zstd"})


def unsupported(codings: Sequence[str]) -> list[str]:
    """The coding names of `codings` that no stage decodes (identity is no coding at all)."""
    return [c for c in codings if c != "identity" and c not in _STAGES]


class Decoder:
    """Undo `codings` (listed in the order they were applied) over a stream of chunks, up to `limit` bytes.

    `out` holds what was decoded; `limited` is set when the output would pass `limit`, `error` when a stage
    failed, `cut` by the caller when input went missing. After any of them further input is ignored and
    `out` keeps what was decoded before.
    """

    __slots__ = ("_limit", "_stages", "cut", "error", "limited", "out")

    def __init__(self, codings: Sequence[str], limit: int) -> None:
        self._stages = [_STAGES[c](c) for c in reversed(codings) if c != "identity"]
        self._limit = max(0, limit)
        self.out = bytearray()
        self.limited = False
        self.error: str | None = None
        self.cut = False   # set by the caller when the coded stream lost bytes

    @property
    def name(self) -> str:
        return ",".join(s.name for s in reversed(self._stages))

    @property
    def stopped(self) -> bool:
        return self.limited or self.cut or self.error is not None

    def feed(self, data: bytes) -> None:
        if self.stopped or not data:
            return
        try:
            last = len(self._stages) - 1
            for i, stage in enumerate(self._stages):
                # Inner stages are bounded by the whole cap: their output is handed on at once.
                cap = self._limit - len(self.out) if i == last else self._limit
                data = stage.feed(data, cap)
                if len(data) > cap:
                    self.limited = True
                    data = data[:cap] if i == last else b""
                if not data:
                    break
            else:
                self.out += data
        except CodingError as exc:
            self.error = str(exc)
            log.debug("body decoding stopped: %s", exc)
