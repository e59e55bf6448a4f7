"""Compiled hyperscan databases cached on disk, keyed by what they were compiled from.

Compiling the catalog's expressions takes hyperscan ~0.3 s in UTF-8 mode, paid by every agent start and
every detector worker; loading a serialized database takes a millisecond. Suricata 7 does the same
(`detect.sgh-mpm-caching`). The cache is only an accelerator: a missing, unreadable or foreign entry means
compiling again, and a write that fails is ignored. Entries hold compiled patterns, never traffic.

The folder is `$EGRESSWATCH_CACHE_DIR`, else `$XDG_CACHE_HOME/egresswatch`, else `~/.cache/egresswatch`;
`EGRESSWATCH_CACHE_DIR=off` disables it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path

import hyperscan

log = logging.getLogger(__name__)

FORMAT = b"egresswatch-hs-1"


def cache_dir() -> Path | None:
    configured = os.environ.get("EGRESSWATCH_CACHE_DIR")
    if configured == "off":
        return None
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "egresswatch"


def compile_block(exprs: list[bytes], flags: list[int]) -> hyperscan.Database:
    """A block-mode database of `exprs` (ids = positions), from the cache when it holds one."""
    key = hashlib.sha256(repr((FORMAT, hyperscan.__version__, exprs, flags)).encode()).hexdigest()
    folder = cache_dir()
    path = folder / f"hs-{key}.db" if folder is not None else None
    if path is not None:
        try:
            db = hyperscan.loadb(path.read_bytes(), hyperscan.HS_MODE_BLOCK)
            db.scratch = hyperscan.Scratch(db)   # a loaded database comes without scratch space
            return db
        except FileNotFoundError:
            pass
        except (OSError, hyperscan.error):
            log.debug("hyperscan cache entry %s unusable; compiling", path.name)
    db = hyperscan.Database()
    db.compile(expressions=exprs, ids=list(range(len(exprs))), elements=len(exprs), flags=flags)
    if path is not None:
        _store(path, hyperscan.dumpb(db))
    return db


def _store(path: Path, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".hs-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)   # concurrent workers may race: whole files only, last one wins
    except OSError:
        log.debug("hyperscan cache not writable at %s", path.parent)
