"""TLS secrets from NSS key log files (the `SSLKEYLOGFILE` format) and pcapng Decryption Secrets Blocks.

Format (NSS "Key Log Format", also written by OpenSSL, BoringSSL, curl, Python's `keylog_filename`, Go's
`KeyLogWriter`): one secret per line, `LABEL <64 hex: 32-byte client random> <hex secret>`; `#` starts a
comment; blank lines are allowed. Labels kept: `CLIENT_RANDOM` (TLS 1.2 master secret) and the TLS 1.3
traffic secrets; other well-formed labels (e.g. the legacy `RSA` form) are counted and ignored.

Sources: files (`add_file`, read when added, then *followed*: a lookup that misses re-reads what a live
client appended since, at most every `refresh_interval` seconds of monotonic time, coping with a partial last
line, truncation and rotation), and text added directly (`add_line`, `add_text`: pcapng DSBs).

Secrets are like the subject key: no secret, and no line that might hold one, ever reaches a log, an
error, a repr or a record. Bad lines are counted by line number only. Bounded: `max_entries` secrets (the
oldest go first), `MAX_LINE` characters a line, `MAX_READ` bytes per refresh of one file.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from detectors.inputs import InputError

log = logging.getLogger(__name__)

LABELS: Final = frozenset({
    "CLIENT_RANDOM", "CLIENT_EARLY_TRAFFIC_SECRET", "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
    "SERVER_HANDSHAKE_TRAFFIC_SECRET", "CLIENT_TRAFFIC_SECRET_0", "SERVER_TRAFFIC_SECRET_0",
    "EXPORTER_SECRET", "EARLY_EXPORTER_SECRET",
})
MAX_LINE: Final = 1024              # a real line is < 300 characters (label + 64 + 2 + 128)
MAX_READ: Final = 16 << 20          # bytes read from one file per refresh: a lookup never stalls for long
DEFAULT_MAX_ENTRIES: Final = 500_000    # ~300 B each: ~150 MB, 100,000 TLS 1.3 connections
_HEX: Final = frozenset("0123456789abcdefABCDEF")
_MAX_WARNINGS: Final = 5


class KeyLogError(InputError):
    """A key log file that cannot be read; one line naming the file, never its content."""


@dataclass(slots=True)
class _Followed:
    path: Path
    offset: int = 0
    partial: bytes = field(default=b"", repr=False)    # an unterminated last line (it may hold a secret)
    partial_seen: bool = False      # the partial line was already there at the previous refresh
    ident: tuple[int, int] = (0, 0)  # (st_dev, st_ino): a new file at the same path is a rotation
    lineno: int = 0


class KeyLog:
    """Secrets by (label, client random). `secret()` is the only way out."""

    def __init__(self, files: Iterable[Path | str] = (), *, max_entries: int = DEFAULT_MAX_ENTRIES,
                 refresh_interval: float = 0.2, clock: Callable[[], float] = time.monotonic) -> None:
        self._secrets: dict[tuple[str, bytes], bytes] = {}
        self._files: list[_Followed] = []
        self._max_entries = max_entries
        self._interval = refresh_interval
        self._clock = clock
        self._last_refresh = clock()
        self.bad_lines = 0          # lines that are not `LABEL hex hex` (or are too long)
        self.ignored_lines = 0      # well-formed lines with a label no decryptor uses
        self.evicted = 0            # secrets dropped, oldest first, past max_entries
        self._warned = 0
        for f in files:
            self.add_file(f)

    def __repr__(self) -> str:
        return f"KeyLog(entries={len(self._secrets)}, files={len(self._files)}, bad_lines={self.bad_lines})"

    def __len__(self) -> int:
        return len(self._secrets)

    # --- sources -------------------------------------------------------------------------------------

    def add_file(self, path: Path | str) -> None:
        """Read `path` now and follow it from then on; KeyLogError (one line) if it cannot be read."""
        f = _Followed(Path(path))
        try:
            st = os.stat(f.path)
        except OSError as e:
            raise _unreadable(f.path, e) from None
        f.ident = (st.st_dev, st.st_ino)
        while self._read_new(f, initial=True) == MAX_READ:
            pass    # a long key log is read whole at start, not a chunk per lookup miss
        self._files.append(f)

    def add_line(self, line: str) -> None:
        """One key log line (a comment or a blank line is fine); a bad one is counted, never echoed."""
        self._parse(line, "(added line)", 0)

    def add_text(self, text: str | bytes, source: str = "(secrets block)") -> None:
        """Several lines at once, e.g. the content of a pcapng Decryption Secrets Block."""
        if isinstance(text, bytes):
            text = text.decode("ascii", "replace")
        for n, line in enumerate(text.splitlines(), 1):
            self._parse(line, source, n)

    # --- lookup --------------------------------------------------------------------------------------

    def secret(self, client_random: bytes, label: str) -> bytes | None:
        """The secret logged for this connection, or None. A miss re-reads followed files (rate-limited)."""
        key = (label, bytes(client_random))
        found = self._secrets.get(key)
        if found is None and self._files and self._clock() - self._last_refresh >= self._interval:
            self.refresh()
            found = self._secrets.get(key)
        return found

    def refresh(self) -> None:
        """Read what was appended to the followed files since the last read."""
        self._last_refresh = self._clock()
        for f in self._files:
            try:
                st = os.stat(f.path)
            except OSError:
                continue    # a rotation in progress: the new file is read at the next refresh
            if (st.st_dev, st.st_ino) != f.ident or st.st_size < f.offset:
                # Rotated or truncated: the secrets read so far stay (their connections may still run).
                f.ident, f.offset, f.lineno = (st.st_dev, st.st_ino), 0, 0
                f.partial, f.partial_seen = b"", False
            if st.st_size > f.offset:
                self._read_new(f, initial=False)
            elif f.partial and f.partial_seen:
                # The writer has not finished this line for a whole interval: take it as it is.
                self._parse_bytes(f.partial, f, f.lineno + 1)
                f.lineno += 1
                f.partial, f.partial_seen = b"", False
            else:
                f.partial_seen = bool(f.partial)

    # --- parsing -------------------------------------------------------------------------------------

    def _read_new(self, f: _Followed, *, initial: bool) -> int:
        try:
            with open(f.path, "rb") as fh:
                fh.seek(f.offset)
                chunk = fh.read(MAX_READ)
        except OSError as e:
            if initial:
                raise _unreadable(f.path, e) from None
            return 0
        f.offset += len(chunk)
        data = f.partial + chunk
        lines = data.split(b"\n")
        tail = lines.pop()
        for raw in lines:
            f.lineno += 1
            self._parse_bytes(raw, f, f.lineno)
        if len(tail) > MAX_LINE:
            # No real line is this long: count it once and drop it, keeping memory bounded.
            self._bad(str(f.path), f.lineno + 1)
            tail = b""
        f.partial, f.partial_seen = tail, False
        if initial and tail:
            # A file as it is when opened: a last line without its newline counts now. Were the writer
            # still writing it, the completed line read later replaces what this one stored.
            self._parse_bytes(tail, f, f.lineno + 1, quiet=True)
        return len(chunk)

    def _parse_bytes(self, raw: bytes, f: _Followed, lineno: int, *, quiet: bool = False) -> None:
        self._parse(raw.decode("ascii", "replace"), str(f.path), lineno, quiet=quiet)

    def _parse(self, line: str, source: str, lineno: int, *, quiet: bool = False) -> None:
        line = line.strip()
        if not line or line.startswith("#"):
            return
        parts = line.split()
        if len(line) > MAX_LINE or len(parts) != 3 or not _is_hex(parts[1]) or not _is_hex(parts[2]) \
                or not parts[0].replace("_", "").isalnum():
            if not quiet:
                self._bad(source, lineno)
            return
        label, random_hex, secret_hex = parts
        if label not in LABELS:
            self.ignored_lines += 1
            return
        if len(random_hex) != 64 or len(secret_hex) % 2 or not 16 <= len(secret_hex) // 2 <= 64:
            if not quiet:
                self._bad(source, lineno)
            return
        key = (label, bytes.fromhex(random_hex))
        if key not in self._secrets and len(self._secrets) >= self._max_entries:
            del self._secrets[next(iter(self._secrets))]    # the oldest: its connection most likely ended
            self.evicted += 1
        self._secrets[key] = bytes.fromhex(secret_hex)

    def _bad(self, source: str, lineno: int) -> None:
        self.bad_lines += 1
        if self._warned < _MAX_WARNINGS:
            self._warned += 1
            # Where only: the line may hold a secret.
            log.warning("%s: line %d is not a key log line (ignored)", source, lineno)


def _is_hex(s: str) -> bool:
    return bool(s) and all(c in _HEX for c in s)


def check_readable(paths: Iterable[Path | str]) -> None:
    """Raise KeyLogError naming the first key log file that cannot be opened for reading (CLI start-up)."""
    for p in paths:
        try:
            with open(p, "rb") as fh:
                fh.read(1)
        except OSError as e:
            raise _unreadable(p, e) from None


def _unreadable(path: Path | str, e: OSError) -> KeyLogError:
    return KeyLogError.at(path, None, f"cannot read key log: {e.strerror or type(e).__name__}")
