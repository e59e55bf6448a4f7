"""HTTP/1.x syntax pieces shared by the request framer and the protocol registry (RFC 9112 §2–§3, §7.1;
RFC 9110 §5.6.2 tokens). Pure functions over bytes; no state.
"""

from __future__ import annotations

import re

MAX_METHOD = 24            # longest method token taken for a request start
MAX_LINE = 16384           # request line or one field line

TCHAR = frozenset(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
REQUEST_LINE = re.compile(
    rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]{1,24})[ \t]+(\S(?:.*\S)?)[ \t]+HTTP/(\d)\.(\d)[ \t]*")
DIGITS = re.compile(r"[0-9]{1,18}")
CHUNK_SIZE = re.compile(rb"[ \t]*([0-9A-Fa-f]{1,15})[ \t]*(?:;.*)?")


def method_prefix(buf: bytes | bytearray) -> bool | None:
    """Does `buf` start with a method token and a space? None: not enough bytes to tell."""
    for i, b in enumerate(buf[: MAX_METHOD + 1]):
        if b == 0x20:
            return i > 0
        if b not in TCHAR:
            return False
    return None if len(buf) <= MAX_METHOD else False


def parse_request_line(line: bytes) -> tuple[str, str, str] | None:
    """(method, target, "HTTP/x.y") of a request line without its line ending, or None if malformed."""
    m = REQUEST_LINE.fullmatch(line)
    if m is None:
        return None
    return (m.group(1).decode("ascii"), m.group(2).decode("latin-1"),
            f"HTTP/{m.group(3).decode()}.{m.group(4).decode()}")


def peek_request(buf: bytearray) -> bool | None:
    """Is the next thing in `buf` a complete, well-formed request line? None: wait for more bytes."""
    start = method_prefix(buf)
    if not start:
        return start
    end = buf.find(b"\n", 0, MAX_LINE)
    if end < 0:
        return None if len(buf) < MAX_LINE else False
    return parse_request_line(bytes(buf[:end]).rstrip(b"\r")) is not None


def tokens(values: list[str]) -> list[str]:
    """Comma-separated list field values (RFC 9110 §5.6.1) as lower-case tokens."""
    return [t.strip().lower() for v in values for t in v.split(",") if t.strip()]
