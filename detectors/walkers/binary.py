"""Bodies that are not text: binary and encrypted payloads are never scanned as text.

Magic numbers first (`binary_signature`, on the bytes), then, once decoded, the share of control and
undecodable characters (`looks_binary`) and, for an untyped body, one big base64 blob (`base64_blob`).
"""

from __future__ import annotations

import re

_MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (b"\xff\xd8\xff", 0, "jpeg"), (b"\x89PNG\r\n\x1a\n", 0, "png"), (b"GIF87a", 0, "gif"),
    (b"GIF89a", 0, "gif"), (b"WEBP", 8, "webp"), (b"PK\x03\x04", 0, "zip"), (b"PK\x05\x06", 0, "zip"),
    (b"PK\x07\x08", 0, "zip"), (b"\x1f\x8b", 0, "gzip"), (b"7z\xbc\xaf\x27\x1c", 0, "7z"),
    (b"Rar!\x1a\x07", 0, "rar"), (b"%PDF-", 0, "pdf"), (b"1AY&SY", 4, "bzip2"), (b"\xfd7zXZ\x00", 0, "xz"),
    (b"\x28\xb5\x2f\xfd", 0, "zstd"), (b"\x7fELF", 0, "elf"), (b"ftyp", 4, "mp4"),
)
_SAMPLE_CHARS = 4096
# Share of control / replacement characters above which decoded "text" is really binary. Real text has
# almost none; random or compressed bytes give 15-50 % whichever charset decodes them.
_BINARY_SHARE = 0.10
# C0/C1 controls but tab, newlines, form feed and ESC; the replacement character; BMP private use; lone
# surrogates (what undecodable bytes become).
_BAD_CHARS = re.compile("[\x00-\x08\x0e-\x1a\x1c-\x1f\x7f-\x9f\ufffd\ue000-\uf8ff\ud800-\udfff]")
_BASE64_BLOB = re.compile(r"[A-Za-z0-9+/_\-]+={0,2}")
_BASE64_MIN = 1024


def binary_signature(body: bytes) -> str | None:
    """The kind of a well-known binary or encrypted payload by its first bytes, else None."""
    for magic, offset, kind in _MAGIC:
        if body.startswith(magic, offset):
            if kind == "webp" and not body.startswith(b"RIFF"):
                continue
            return kind
    # TLS record header: content type 20-23, version 3.0-3.4 (SSL 3.0 .. TLS 1.3 legacy field).
    if len(body) >= 5 and 20 <= body[0] <= 23 and body[1] == 3 and body[2] <= 4:
        return "tls"
    return None


def looks_binary(text: str) -> bool:
    """Decoded text with too many control or undecodable characters to be text."""
    sample = text[:_SAMPLE_CHARS]
    if not sample:
        return False
    bad = len(_BAD_CHARS.findall(sample))
    return bad / len(sample) > _BINARY_SHARE


def base64_blob(text: str) -> bool:
    """One big base64 blob (an inline file), not text: the recognizers would only find noise in it."""
    compact = "".join(text.split())
    if len(compact) < _BASE64_MIN or not _BASE64_BLOB.fullmatch(compact):
        return False
    # Digits-and-X lists (IDs, phone numbers one per line) are base64-alphabet too: require mixed case and
    # long lines, which such lists never have.
    lines = text.split()
    return (any(c.islower() for c in compact[:4096]) and any(c.isupper() for c in compact[:4096])
            and sum(len(ln) for ln in lines) / len(lines) >= 60)
