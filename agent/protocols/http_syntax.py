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


# Field names an anomaly may quote (RFC 9110, RFC 9111, RFC 9112 and the common extensions); any other name
# is the client's own choice and is only described by its shape.
FIELD_NAMES = frozenset({
    "accept", "accept-charset", "accept-encoding", "accept-language", "authorization", "cache-control",
    "connection", "content-disposition", "content-encoding", "content-language", "content-length",
    "content-location", "content-range", "content-type", "cookie", "date", "expect", "forwarded", "from",
    "host", "if-match", "if-modified-since", "if-none-match", "if-range", "if-unmodified-since",
    "keep-alive", "max-forwards", "origin", "pragma", "proxy-authorization", "range", "referer", "te",
    "trailer", "transfer-encoding", "upgrade", "user-agent", "via", "x-forwarded-for", "x-forwarded-host",
    "x-forwarded-proto", "x-requested-with",
})
# RFC 9110 §7.2 Host: uri-host [":" port]. A reg-name whose last label has no letter (`13812345678`,
# `138-1234-5678`) is no DNS name (RFC 1123 §2.1, RFC 3696 §2): such a "host" is a value, not a server.
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_\-]{0,61}[A-Za-z0-9_])?"
_HOST = re.compile(rf"(?:{_LABEL}\.)*(?=[A-Za-z0-9_\-]*[A-Za-z]){_LABEL}\.?")
_IPV4 = re.compile(r"(?:\d{1,3}\.){3}\d{1,3}")
_IP_LITERAL = re.compile(r"\[[0-9A-Fa-f:.]+\]|\[v[0-9A-Fa-f]+\.[A-Za-z0-9\-._~!$&'()*+,;=:]+\]")
_PORT = re.compile(r"\d{0,5}")


def valid_host(host: str) -> bool:
    """A Host field value (or absolute-form authority) that names a server: a DNS name, an IPv4 address
    or an IP literal, with an optional port."""
    host = host.strip()
    if host.startswith("["):
        literal, _, rest = host.partition("]")
        literal += "]"
        return bool(_IP_LITERAL.fullmatch(literal)) and (not rest or (rest[:1] == ":" and
                                                                   bool(_PORT.fullmatch(rest[1:]))))
    name, colon, port = host.rpartition(":") if ":" in host else (host, "", "")
    if colon and not _PORT.fullmatch(port):
        return False
    return len(name) <= 253 and bool(_IPV4.fullmatch(name) or _HOST.fullmatch(name))

