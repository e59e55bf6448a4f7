"""Protocol Buffers wire format without a schema (protobuf.dev/programming-guides/encoding), as
`protoc --decode_raw` reads it: tags, varints, fixed 32/64-bit and length-delimited fields.

Without the .proto a length-delimited field may be a string, a nested message, packed numbers or bytes.
The guess, in order:
1. printable UTF-8 text (no control characters but tab and line breaks) is a string. This comes before
   "nested message" because short digit strings are often valid messages too: the resident ID
   `110105194912310021` reads as two fixed64 fields (0x31 is field 6, wire type 1, then 8 bytes) and would
   vanish; a real nested message has tags and lengths below 0x20 and is almost never printable;
2. bytes that parse as a whole message (every tag valid, every length inside, nothing left over) are one;
3. anything else is bytes and is skipped (packed numbers, hashes, images).

Varints are emitted in decimal (a phone number or card number in an int64 field is a value like any);
fixed 32/64-bit fields are floats, doubles or hashes far more often than integers a person is found by,
and read as integers they would invent digit strings: they are skipped.
"""

from __future__ import annotations

from detectors.walkers.binary import looks_binary

__all__ = ["Field", "parse_fields", "read_varint", "text_of"]

VARINT, I64, LEN, SGROUP, EGROUP, I32 = range(6)
_MAX_FIELD = (1 << 29) - 1
_CONTROLS = frozenset(range(0x20)) - {0x09, 0x0A, 0x0D}

# (field number, wire type, value): an int for a varint, the bytes for a length-delimited field, None for
# the fixed-width ones (skipped).
Field = tuple[int, int, "int | bytes | None"]


def read_varint(buf: bytes, pos: int) -> tuple[int, int] | None:
    """(value, next position) of the base-128 varint at `pos`; None if cut short or over 10 bytes."""
    value = shift = 0
    end = min(len(buf), pos + 10)
    while pos < end:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value & 0xFFFFFFFFFFFFFFFF, pos
        shift += 7
    return None


def parse_fields(buf: bytes, max_fields: int, *, partial: bool = False) -> list[Field] | None:
    """The top-level fields of `buf` (one level: nested messages are bytes here). None when `buf` is not a
    whole message, or holds more than `max_fields` fields; with `partial` the fields before the first
    error instead (a message cut by a body budget still gives what it holds)."""
    fields: list[Field] = []
    pos, n = 0, len(buf)
    while pos < n:
        if len(fields) >= max_fields:
            return fields if partial else None
        tag = read_varint(buf, pos)
        if tag is None:
            break
        key, pos = tag
        number, wire = key >> 3, key & 7
        if not 1 <= number <= _MAX_FIELD:
            break
        if wire == VARINT:
            got = read_varint(buf, pos)
            if got is None:
                break
            value, pos = got
            fields.append((number, wire, value))
        elif wire in (I64, I32):
            size = 8 if wire == I64 else 4
            if pos + size > n:
                break
            pos += size
            fields.append((number, wire, None))
        elif wire == LEN:
            got = read_varint(buf, pos)
            if got is None or got[1] + got[0] > n:
                break
            length, pos = got
            fields.append((number, wire, buf[pos: pos + length]))
            pos += length
        else:
            break    # groups (deprecated, wire types 3 and 4) and 6, 7: not a message we read
    else:
        return fields
    return fields if partial else None


def text_of(value: bytes) -> str | None:
    """The string a length-delimited value holds when it is printable UTF-8 text, else None."""
    if not value or any(b in _CONTROLS for b in value[:4096]):
        return None
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return None if looks_binary(text) else text


def signed(value: int) -> int:
    """An int64 / enum varint as sent: negative numbers are ten-byte varints of their two's complement."""
    return value - (1 << 64) if value >= 1 << 63 else value
