"""HAR 1.2 archives (a browser's or a proxy tool's record of what it sent) in, `HandedFlow`s out (DESIGN §8).

Read: Chrome/Chromium DevTools exports, Firefox's, Charles' and mitmproxy's `hardump`. Each entry of
`log.entries` becomes one request (`HandedMessage`: path and query, body, content type) of a flow; entries
that name the same connection (`connection`, Chrome's connection id) to the same server are one flow, any
other entry is a flow of its own. Firefox writes the server's *port* as `connection`, not a connection id,
so its entries are never grouped. HAR has no client address: `src_ip` stays 0.0.0.0 (agent/handover.py).

The body: `postData.text` (base64-decoded when `encoding` is "base64", as Charles writes it); when a tool
gave only `postData.params`, the body is rebuilt as the tool's own wire form would have been —
`application/x-www-form-urlencoded` for name/value pairs, `multipart/form-data` when a parameter carries
a fileName or contentType — because those are the forms the detectors' walkers read with the field names
kept as keys (a JSON rebuild would invent a document the client never sent). Response content is not
read: what a browser received is no export.

A body the tool did not hand over whole is marked truncated (the sink writes `har/body_truncated`): text
shorter than the request's `bodySize` or Content-Length (Chrome leaves file parts of a multipart body out;
a body it could not fetch has no text), `text` null (mitmproxy with `stream_large_bodies`), or a
`postData.comment` from Firefox, which writes one (localised "Request bodies are not included.") exactly
when it discarded the body over `devtools.netmonitor.requestBodyLimit`.

Hostile input: the file is read whole once it is known to be at most `har.max_bytes` (json.loads of the
capped bytes: peak memory is about 8x the file, measured 616 MB RSS reading a 76.6 MB export); nesting
deeper than the JSON parser's recursion limit is one error; more than `har.max_entries` entries is one
error. A file whose structure is not a HAR (`log.entries` not a list…) is one `HarError` naming the file
and the JSON path; a single unusable entry is a `har/entry_invalid` anomaly with its path, and the others
are read. No value of the file ever reaches an error or an anomaly: paths, types and lengths only.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from agent.handover import UNKNOWN_ADDRESS, HandedFlow, HandedMessage, handed_address
from agent.har_body import EntryInvalid as _Invalid
from agent.har_body import body as _body
from agent.har_body import get as _get
from agent.har_body import number as _number
from agent.har_body import websocket
from detectors.inputs import InputError

__all__ = ["HarError", "HarLimits", "is_har", "read_har"]

DEFAULT_MAX_BYTES = 128 << 20     # peak memory ~8x: about 1 GB, the budget of limits.max_flows
DEFAULT_MAX_ENTRIES = 1_000_000
SCHEMES = {"http": 80, "https": 443, "ws": 80, "wss": 443}
NOT_SENT_CACHE = ("memory", "disk")     # Chrome's `_fromCache`: answered by the cache, nothing left

OnAnomaly = Callable[[str, str, float | None], None]     # name, detail, ts


class HarError(InputError):
    """A file that is not a usable HAR; `str()` is one line: file: JSON path: problem."""


@dataclass(frozen=True, slots=True)
class HarLimits:
    max_bytes: int = DEFAULT_MAX_BYTES
    max_entries: int = DEFAULT_MAX_ENTRIES


@dataclass(frozen=True, slots=True)
class _Entry:
    index: int
    group: tuple[str, str] | None       # (server, connection id) when the entry names its connection
    messages: tuple[HandedMessage, ...]
    ts_start: float
    ts_end: float
    host: str
    port: int
    dst_ip: str | None
    encrypted: bool
    app: str
    bytes_out: int
    bytes_in: int


def is_har(path: Path) -> bool:
    """A HAR input: named `.har`, or whose first non-space byte is `{` (no capture format starts so)."""
    if path.suffix.lower() == ".har":
        return True
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    stripped = head.lstrip(b" \t\r\n\xef\xbb\xbf")
    return stripped[:1] == b"{"


def read_har(path: Path, on_anomaly: OnAnomaly, limits: HarLimits = HarLimits()) -> list[HandedFlow]:
    """The flows of the HAR file `path`; `on_anomaly(name, detail, ts)` hears of entries that are not used.
    Raises `HarError` for a file that is not a HAR at all."""
    data, digest = _load(path, limits)
    log = _member(data, "log", dict, "", path)
    entries = _member(log, "entries", list, "log", path)
    if len(entries) > limits.max_entries:
        raise HarError(f"{path}: log.entries: {len(entries)} entries, more than har.max_entries "
                       f"({limits.max_entries})")
    creator = log.get("creator")
    firefox = isinstance(creator, dict) and str(creator.get("name", "")).lower().startswith("firefox")
    parsed: list[_Entry] = []
    for i, raw in enumerate(entries):
        try:
            entry = _entry(i, raw, firefox)
        except _Invalid as e:
            on_anomaly("entry_invalid", f"log.entries[{i}].{e}", None)
            continue
        if entry is not None:
            parsed.append(entry)
    return list(_flows(parsed, digest))


def _load(path: Path, limits: HarLimits) -> tuple[Any, str]:
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > limits.max_bytes:
                raise HarError(f"{path}: {size} bytes, more than har.max_bytes ({limits.max_bytes})")
            raw = fh.read(limits.max_bytes + 1)
    except OSError as e:
        raise HarError(f"{path}: cannot read: {e.strerror or type(e).__name__}") from None
    if len(raw) > limits.max_bytes:         # grew while we looked
        raise HarError(f"{path}: more than har.max_bytes ({limits.max_bytes}) bytes")
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as e:
        raise HarError(f"{path}: (document): not JSON ({e.msg} at line {e.lineno}, column {e.colno})"
                       ) from None
    except RecursionError:
        raise HarError(f"{path}: (document): nested deeper than the JSON reader allows") from None
    except (UnicodeDecodeError, ValueError) as e:
        raise HarError(f"{path}: (document): not JSON text ({type(e).__name__})") from None
    return data, hashlib.sha256(raw).hexdigest()[:16]


def _member(obj: Any, name: str, kind: type, at: str, path: Path) -> Any:
    """The file's own structure (log, log.entries): a problem there is the file's one error line."""
    if not isinstance(obj, dict):
        raise HarError(f"{path}: {at or '(document)'}: not an object")
    try:
        return _get(obj, name, kind, f"{at}." if at else "")
    except _Invalid as e:
        raise HarError(f"{path}: {e}") from None


def _entry(index: int, raw: Any, firefox: bool) -> _Entry | None:
    if not isinstance(raw, dict):
        raise _Invalid("(entry)", "not an object")
    request = _get(raw, "request", dict, "")
    url = _get(request, "url", str, "request.")
    try:
        parts = urlsplit(url)
        scheme, host, port = parts.scheme.lower(), parts.hostname, parts.port
    except ValueError:
        raise _Invalid("request.url", "not a URL") from None
    if scheme in ("data", "blob", "about", "chrome", "chrome-extension", "moz-extension"):
        return None                      # never left the browser
    if scheme not in SCHEMES or not host:
        raise _Invalid("request.url", "not an http(s) URL")
    if raw.get("_fromCache") in NOT_SENT_CACHE:
        return None
    method = _get(request, "method", str, "request.")
    started = _started(_get(raw, "startedDateTime", str, ""))
    elapsed = raw.get("time")
    duration = float(elapsed) / 1000 if isinstance(elapsed, int | float) and 0 <= elapsed < 1e12 else 0.0
    headers = _headers(request)
    body, content_type, truncated, size = _body(request, headers, firefox)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    message = HandedMessage(target, body, content_type, truncated=truncated,
                            size=size if truncated else None)
    head = _number(request, "headersSize")
    sent = _number(request, "bodySize")
    if head < 0:
        head = len(method) + len(target) + 12 + sum(len(n) + len(v) + 4 for n, v in headers)
    bytes_out = head + (sent if sent >= 0 else len(body))
    answer = raw.get("response")
    response: dict = answer if isinstance(answer, dict) else {}
    bytes_in = max(_number(response, "headersSize"), 0) + max(_number(response, "bodySize"), 0)
    connection = raw.get("connection")
    server = handed_address(raw.get("serverIPAddress"))
    group = None
    if not firefox and isinstance(connection, str | int) and not isinstance(connection, bool) \
            and str(connection) not in ("", "0"):
        group = (server or host.lower(), str(connection))
    return _Entry(index=index, group=group, messages=(message, *websocket(raw)),
                  ts_start=started, ts_end=started + duration,
                  host=host.lower(), port=port or SCHEMES[scheme], dst_ip=server,
                  encrypted=scheme in ("https", "wss"), app=_app(request.get("httpVersion")),
                  bytes_out=bytes_out, bytes_in=bytes_in)


def _started(text: str) -> float:
    try:
        at = datetime.fromisoformat(text.strip())
        if at.tzinfo is None:           # no offset written: HAR requires one; read it as UTC
            at = at.replace(tzinfo=UTC)
        return at.timestamp()
    except (ValueError, OverflowError):
        raise _Invalid("startedDateTime", "not an ISO 8601 time") from None


def _headers(request: dict) -> list[tuple[str, str]]:
    raw = request.get("headers")
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise _Invalid("request.headers", "not a list")
    out = []
    for i, h in enumerate(raw):
        if not (isinstance(h, dict) and isinstance(h.get("name"), str) and isinstance(h.get("value"), str)):
            raise _Invalid(f"request.headers[{i}]", "not a name/value pair")
        out.append((h["name"], h["value"]))
    return out


def _app(version: Any) -> str:
    text = version.strip().lower() if isinstance(version, str) else ""
    if text in ("h2", "h2c", "http/2", "http/2.0"):
        return "http2"
    if text.startswith(("h3", "http/3")):
        return "http3"
    return "http"


def _flows(entries: list[_Entry], digest: str) -> Iterator[HandedFlow]:
    groups: dict[tuple[str, str] | int, list[_Entry]] = {}
    for e in entries:
        groups.setdefault(e.group if e.group is not None else e.index, []).append(e)
    keys: set[str] = set()
    for group, members in groups.items():
        first = members[0]
        key = f"{digest}:{group[1] if isinstance(group, tuple) else group}"
        n = 1
        while key in keys:      # a connection id reused towards another server, or equal to an index
            n += 1
            key = f"{digest}:{group[1] if isinstance(group, tuple) else group}/{n}"
        keys.add(key)
        yield HandedFlow(
            key=key, visibility="har",
            ts_start=min(e.ts_start for e in members), ts_end=max(e.ts_end for e in members),
            server_name=first.host, dst_port=first.port,
            messages=tuple(m for e in members for m in e.messages),
            src_ip=UNKNOWN_ADDRESS, src_port=0, dst_ip=first.dst_ip, app=first.app,
            alpn={"http2": "h2", "http3": "h3"}.get(first.app) if first.encrypted else None,
            encrypted=first.encrypted,
            bytes_out=sum(e.bytes_out for e in members), bytes_in=sum(e.bytes_in for e in members),
        )
