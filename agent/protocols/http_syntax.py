"""HTTP/1.x syntax pieces shared by the request framer and the protocol registry (RFC 9112 §2–§3, §7.1;
RFC 9110 §5.6.2 tokens). Pure functions over bytes; no state.
"""

from __future__ import annotations

import re

MAX_METHOD = 24            # longest method token taken for a request start
MAX_LINE = 16384           # request line or one field line

# Registered methods (RFC 9110 §9, WebDAV RFC 4918, PATCH RFC 5789): recognised on any port, and enough on
# their own to take a malformed request line for a request.
HTTP_METHODS = frozenset({
    b"GET", b"POST", b"PUT", b"HEAD", b"DELETE", b"OPTIONS", b"PATCH", b"CONNECT", b"TRACE",
    b"PROPFIND", b"PROPPATCH", b"MKCOL", b"COPY", b"MOVE", b"LOCK", b"UNLOCK", b"REPORT", b"SEARCH",
})

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


# A line that is a method token, then optionally whitespace and anything (RFC 9112 §3 gone wrong).
_LOOSE_LINE = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]{1,24})(?:[ \t]+(.*))?")
_VERSION_ATTEMPT = re.compile(rb"HTTP/[^ \t]{0,8}")


def bare_method(buf: bytes | bytearray) -> bool | None:
    """Does `buf` start with a registered method alone on its line (`OPTIONS\r\n`)? None: can't tell yet."""
    i = next((k for k, b in enumerate(buf[: MAX_METHOD + 1]) if b not in TCHAR), -1)
    if i <= 0 or bytes(buf[:i]) not in HTTP_METHODS:
        return False
    end = bytes(buf[i: i + 2])
    if end[:1] == b"\n" or end == b"\r\n":
        return True
    return None if end == b"\r" else False


def salvage_request_line(line: bytes) -> tuple[str, str, str] | None:
    """(method, target, version) of a request line that `parse_request_line` refuses but that is still a
    request: a registered method (`OPTIONS`, `OPTIONS HTTP/1.1`, `TRACE /HTTP/1.1`, HTTP/0.9's `GET /x`), or
    any method token followed by an attempt at a version (`CCM_POST / HTTP/1.`). The version is "" unless the
    last word starts with "HTTP/". None: not a request at all."""
    m = _LOOSE_LINE.fullmatch(line)
    if m is None:
        return None
    method, rest = m.group(1), (m.group(2) or b"").strip(b" \t")
    if method not in HTTP_METHODS and b"HTTP/" not in rest:
        return None
    words = re.split(rb"[ \t]+", rest)
    version = b""
    if _VERSION_ATTEMPT.fullmatch(words[-1]):
        version = words[-1]
        rest = rest[: len(rest) - len(version)].strip(b" \t")
    return method.decode("ascii"), rest.decode("latin-1"), version.decode("latin-1")


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
# `138-1234-5678`) is no DNS name (RFC 1123 §2.1, RFC 3696 §2): such a "host" is a value, not a server. The
# patterns are ASCII only: no control byte, no space, no Unicode digit can be part of a server's name.
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_\-]{0,61}[A-Za-z0-9_])?"
_HOST = re.compile(rf"(?:{_LABEL}\.)*(?=[A-Za-z0-9_\-]*[A-Za-z]){_LABEL}\.?")
_IPV4 = re.compile(r"(?:[0-9]{1,3}\.){3}[0-9]{1,3}")
_IP_LITERAL = re.compile(r"\[[0-9A-Fa-f:.]+\]|\[v[0-9A-Fa-f]+\.[A-Za-z0-9\-._~!$&'()*+,;=:]+\]")
_PORT = re.compile(r"[0-9]{0,5}")


def valid_hostname(name: str) -> bool:
    """A server's name without a port: a DNS name (letters in its last label) or a dotted IPv4 address. The
    one check for every place a flow is named from: HTTP Host and authorities, TLS SNI, a SOCKS5 domain."""
    return len(name) <= 253 and bool(_IPV4.fullmatch(name) or _HOST.fullmatch(name))


def valid_host(host: str, *, port_required: bool = False) -> bool:
    """A Host field value or an authority (absolute-form; CONNECT's authority-form with `port_required`) that
    names a server: a DNS name, an IPv4 address or an IP literal, with a port (optional unless required).
    Optional whitespace is the caller's to strip (RFC 9110 §5.5: SP and HTAB only)."""
    if host.startswith("["):
        literal, _, rest = host.partition("]")
        name, colon, port = literal + "]", rest[:1], rest[1:]
        if not _IP_LITERAL.fullmatch(name) or (rest and colon != ":"):
            return False
    else:
        name, colon, port = host.rpartition(":") if ":" in host else (host, "", "")
        if not valid_hostname(name):
            return False
    if port_required and not (colon and port):
        return False
    return not colon or bool(_PORT.fullmatch(port))
