"""Ships spool files to the collector (DESIGN §8, §9 `POST /v1/batches`): store and forward.

A spool file is deleted only after the collector acknowledged it (201 stored, 200 already stored — an
earlier attempt whose answer was lost). Connection errors, timeouts, 5xx, 408 and 429 are retried with
exponential backoff and jitter; the file stays in the spool when retries run out, so the next run ships it.
Any other 4xx is permanent: the collector refused the batch (wrong schema, wrong enterprise); retrying would
not help and deleting would lose it, so it moves to `<spool>/rejected/<record_type>/` with the collector's
one-line reason logged.

The batch id sent is the file's name, which the spool made unique when it wrote the batch: a retried upload
carries the same id and the collector stores it once.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from agent.records import RECORD_TYPES
from agent.spool import spool_files

log = logging.getLogger(__name__)

__all__ = ["ShipResult", "Shipper", "ShipperError", "read_token"]

_RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class ShipperError(ValueError):
    """A shipper that cannot start (no token, bad URL): one line."""


def read_token(path: Path | str) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except OSError as e:
        raise ShipperError(f"{path}: cannot read the token file: {e.strerror or e}") from None
    if not text or any(c.isspace() for c in text):
        raise ShipperError(f"{path}: expected one token on one line")
    return text


@dataclass(slots=True)
class ShipResult:
    shipped: int = 0            # acknowledged and deleted
    already_stored: int = 0     # of those, the collector had them already
    rejected: int = 0           # refused for good, moved to rejected/
    pending: int = 0            # still in the spool (collector unreachable)
    errors: list[str] = field(default_factory=list)


class Shipper:
    def __init__(self, url: str, token: str, spool_dir: Path | str, *, timeout_s: float = 30.0,
                 max_attempts: int = 5, backoff_s: float = 0.5, max_backoff_s: float = 30.0,
                 sleep: Callable[[float], None] = time.sleep, stop: threading.Event | None = None) -> None:
        if not url.startswith(("http://", "https://")):
            raise ShipperError(f"collector URL {url!r}: expected http:// or https://")
        self.endpoint = url.rstrip("/") + "/v1/batches"
        self.spool_dir = Path(spool_dir)
        self.max_attempts = max(1, max_attempts)
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        self._sleep = sleep
        # Set when the agent stops: no new attempt starts and a backoff wait ends at once (the file stays).
        self.stop = stop
        self._client = httpx.Client(timeout=timeout_s, headers={"Authorization": f"Bearer {token}"})

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Shipper:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def pending_files(self) -> list[tuple[str, Path]]:
        return [(t, p) for t in RECORD_TYPES for p in spool_files(self.spool_dir, t)]

    def ship_pending(self, deadline: float | None = None) -> ShipResult:
        """Try every complete spool file once (with retries); stops early when the collector is down or
        `deadline` (time.monotonic) has passed — what is left stays spooled for the next pass."""
        result = ShipResult()
        files = self.pending_files()
        for i, (record_type, path) in enumerate(files):
            if deadline is not None and time.monotonic() > deadline:
                result.pending = len(files) - i
                break
            outcome = self._ship_one(record_type, path, result)
            if outcome == "down":
                result.pending = len(files) - i
                break
        return result

    def _ship_one(self, record_type: str, path: Path, result: ShipResult) -> str:
        batch_id = path.stem
        delay = self.backoff_s
        last = ""
        for attempt in range(1, self.max_attempts + 1):
            if self.stop is not None and self.stop.is_set():
                return "down"
            try:
                body = path.read_bytes()
                resp = self._client.post(self.endpoint, content=body, headers={
                    "X-Batch-Id": batch_id, "X-Record-Type": record_type,
                    "Content-Type": "application/vnd.apache.parquet"})
            except FileNotFoundError:
                return "gone"          # another shipper (a restarted agent) took it
            except httpx.HTTPError as e:
                last = f"{type(e).__name__}: {e}"
            else:
                if resp.status_code in (200, 201):
                    path.unlink(missing_ok=True)
                    result.shipped += 1
                    result.already_stored += resp.status_code == 200
                    return "ok"
                reason = _reason(resp)
                if resp.status_code not in _RETRY_STATUS:
                    self._reject(record_type, path, resp.status_code, reason, result)
                    return "rejected"
                last = f"HTTP {resp.status_code}: {reason}"
            if attempt < self.max_attempts:
                log.warning("shipping %s/%s failed (%s); retry %d in %.1f s", record_type, path.name, last,
                            attempt, delay)
                wait = delay * (0.5 + random.random() / 2)
                if self.stop is not None:
                    self.stop.wait(wait)
                else:
                    self._sleep(wait)
                delay = min(self.max_backoff_s, delay * 2)
        log.error("collector unreachable after %d attempts (%s); %s stays in the spool", self.max_attempts,
                  last, path.name)
        result.errors.append(last)
        return "down"

    def _reject(self, record_type: str, path: Path, status: int, reason: str, result: ShipResult) -> None:
        dest = self.spool_dir / "rejected" / record_type
        dest.mkdir(parents=True, exist_ok=True)
        os.replace(path, dest / path.name)
        message = f"collector refused {record_type}/{path.name} (HTTP {status}: {reason}); kept in {dest}"
        log.error("%s", message)
        result.rejected += 1
        result.errors.append(message)


def _reason(resp: httpx.Response) -> str:
    try:
        err = resp.json().get("error", {})
        return str(err.get("message") or resp.reason_phrase)
    except ValueError:
        return resp.reason_phrase
