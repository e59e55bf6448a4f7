"""The request body of one HAR entry, as the tool wrote it or rebuilt from its parameters (agent/har.py).

`body()` reads `postData`: `text` (base64-decoded when `encoding` is "base64"), or, when a tool wrote only
`params`, the wire form it stands for — urlencoded name/value pairs, or multipart/form-data when a
parameter has a fileName or contentType (the forms the detectors' walkers read, field names kept as keys;
a JSON rebuild would invent a document the client never sent) — and says whether the tool cut it.
`websocket()` reads the frames a page sent over a WebSocket. Problems are `EntryInvalid` with the field's
path, never its value.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from typing import Any
from urllib.parse import urlencode

from agent.handover import HandedMessage

__all__ = ["EntryInvalid", "body", "get", "header", "number", "websocket"]


class EntryInvalid(Exception):
    """One entry that cannot be used: `str()` is `field path: problem`."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")


def get(obj: dict, name: str, kind: type | tuple[type, ...], at: str, *, required: bool = True) -> Any:
    value = obj.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise EntryInvalid(f"{at}{name}", "missing" if value is None else f"not {_kind(kind)}")
    return value


def _kind(kind: type | tuple[type, ...]) -> str:
    names = {dict: "an object", list: "a list", str: "a string", int: "a number", float: "a number"}
    first = kind[0] if isinstance(kind, tuple) else kind
    return names.get(first, first.__name__)


def number(obj: dict, name: str) -> int:
    """A size field: -1 when absent, not a number or negative (HAR's "unknown")."""
    value = obj.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value or value < 0:
        return -1
    return int(min(value, 1 << 62))


def websocket(raw: dict) -> list[HandedMessage]:
    """What the page sent over a WebSocket (`_webSocketMessages`, Chrome's and mitmproxy's): each frame it
    sent is a message of the flow, text as it is, binary (opcode 2) base64 as both tools write it. The
    target is empty: the upgrade request's query string was inspected once, with the entry."""
    frames = raw.get("_webSocketMessages")
    if not isinstance(frames, list):
        return []
    out = []
    for i, frame in enumerate(frames):
        if not (isinstance(frame, dict) and frame.get("type") == "send"
                and isinstance(frame.get("data"), str)):
            continue
        data = frame["data"]
        if frame.get("opcode") == 2:
            try:
                out.append(HandedMessage("", base64.b64decode(data, validate=True), None))
            except (binascii.Error, ValueError):
                raise EntryInvalid(f"_webSocketMessages[{i}].data", "not base64") from None
        else:
            out.append(HandedMessage("", _utf8(data), None))
    return out


def header(headers: list[tuple[str, str]], name: str) -> str | None:
    return next((v for n, v in headers if n.lower() == name), None)


def body(request: dict, headers: list[tuple[str, str]], firefox: bool
          ) -> tuple[bytes, str | None, bool, int | None]:
    """body, content type, truncated, the whole body's size when known."""
    declared = [n for n in (number(request, "bodySize"), _content_length(headers)) if n > 0]
    size = max(declared) if declared else None
    post = request.get("postData")
    header_type = header(headers, "content-type")
    if post is None:
        return b"", header_type, size is not None, size
    if not isinstance(post, dict):
        raise EntryInvalid("request.postData", "not an object")
    content_type = get(post, "mimeType", str, "request.postData.", required=False) or header_type
    text = post.get("text")
    params = post.get("params")
    if text is not None and not isinstance(text, str):
        raise EntryInvalid("request.postData.text", "not a string")
    if params is not None and not isinstance(params, list):
        raise EntryInvalid("request.postData.params", "not a list")
    if text:
        if post.get("encoding") == "base64":
            try:
                body = base64.b64decode(text, validate=True)
            except (binascii.Error, ValueError):
                raise EntryInvalid("request.postData.text", "not base64") from None
        else:
            body = _utf8(text)
        cut = size is not None and len(body) < size
    elif params:
        body, content_type = _from_params(params, content_type)
        cut = False
    else:
        body, cut = b"", size is not None
    if firefox and isinstance(post.get("comment"), str) and post["comment"]:
        cut = True
    return body, content_type, cut, size


def _content_length(headers: list[tuple[str, str]]) -> int:
    value = header(headers, "content-length")
    return int(value) if value is not None and value.strip().isdigit() and len(value) < 19 else -1


def _utf8(text: str) -> bytes:
    """The bytes a tool's text stood for. mitmproxy decodes a body without a charset (a multipart form) as
    latin-1, one character per byte: text of characters below U+0100 whose latin-1 bytes are valid UTF-8
    with some non-ASCII is that, and its bytes are the latin-1 ones (a Latin text's `é` alone is no valid
    UTF-8 and stays as it is). Undecodable bytes written as lone surrogates (surrogateescape) come back."""
    if not text.isascii() and max(text) < "\u0100":
        raw = text.encode("latin-1")
        try:
            raw.decode("utf-8")
            return raw
        except UnicodeDecodeError:
            pass
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace")


def _from_params(params: list, content_type: str | None) -> tuple[bytes, str]:
    pairs: list[tuple[str, str, str | None, str | None]] = []
    for i, p in enumerate(params):
        if not isinstance(p, dict) or not isinstance(p.get("name"), str):
            raise EntryInvalid(f"request.postData.params[{i}]", "not a name/value pair")
        value = p.get("value", "")
        file_name, part_type = p.get("fileName"), p.get("contentType")
        if not isinstance(value, str) or not isinstance(file_name, str | None) \
                or not isinstance(part_type, str | None):
            raise EntryInvalid(f"request.postData.params[{i}]", "not a name/value pair")
        pairs.append((p["name"], value, file_name, part_type))
    multipart = (content_type or "").lower().startswith("multipart/") or any(f or t for _, _, f, t in pairs)
    if not multipart:
        return urlencode([(n, v) for n, v, _, _ in pairs]).encode(), "application/x-www-form-urlencoded"
    boundary = f"egresswatch-{uuid.uuid4().hex}"
    out = bytearray()
    for name, value, file_name, part_type in pairs:
        disposition = f'form-data; name="{_quoted(name)}"'
        if file_name is not None:
            disposition += f'; filename="{_quoted(file_name)}"'
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n".encode()
        if part_type:
            out += f"Content-Type: {_quoted(part_type)}\r\n".encode()
        out += b"\r\n" + _utf8(value) + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"


def _quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', "%22").replace("\r", " ").replace("\n", " ")
