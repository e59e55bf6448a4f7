"""The collector service's configuration (`configs/collector.yaml`, DESIGN §9), validated once at start.

Tokens are stored only as SHA-256 hex digests: the file can be read by whoever runs the service without
handing out credentials. A bad file gives a `CollectorConfigError` whose message is one line naming the
file and the key path.

Tenancy comes from here, never from an uploaded body: `enterprises:` registers each enterprise in exactly
one FTZ area, every enterprise or agent token names a registered enterprise, and every agent token names
the `agent_id` its rows must carry.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from apscheduler.triggers.cron import CronTrigger
from pydantic import Field, field_validator, model_validator

from collector.models import FtzArea
from detectors.inputs import InputError, PathIssue, Strict, read_yaml, validate

__all__ = ["CollectorConfig", "CollectorConfigError", "EnterpriseEntry", "Limits", "Listen", "Persons",
           "Schedule", "Storage", "TokenEntry", "cron_trigger", "load_collector_config"]

SHANGHAI = "Asia/Shanghai"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
# Enterprise and agent ids name folders of the warehouse (enterprise_id=<E>/): no separators, no dots first.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class CollectorConfigError(InputError):
    """A collector config that cannot be used; `str()` is one line: file: path: problem."""


class Listen(Strict):
    host: str = "127.0.0.1"
    port: int = Field(8465, ge=0, le=65535)
    # Open connections at most (beyond, the oldest one that has not sent a request is closed), and the
    # time a connection has to send a request's head: an idle or half-sent flood ends there.
    max_connections: int = Field(1000, ge=8)
    header_timeout_s: float = Field(10, gt=0)


Role = Literal["agent", "enterprise", "regulator"]


class EnterpriseEntry(Strict):
    """A registered enterprise: the one FTZ area it belongs to decides which regulators reach its data."""
    enterprise_id: str = Field(pattern=ID_PATTERN)
    name: str | None = None
    ftz_area: FtzArea


class TokenEntry(Strict):
    name: str = Field(min_length=1)
    sha256: str
    role: Role
    enterprise_id: str | None = Field(default=None, pattern=ID_PATTERN)
    ftz_area: FtzArea | None = None
    agent_id: str | None = Field(default=None, pattern=ID_PATTERN)

    @field_validator("sha256")
    @classmethod
    def _hex(cls, v: str) -> str:
        if not _HEX64.match(v):
            raise ValueError("expected the token's SHA-256 as 64 lower-case hex digits, not the token")
        return v

    @model_validator(mode="after")
    def _scope(self) -> TokenEntry:
        # A token's scope decides whose data it reaches: agents and enterprises one enterprise, regulators
        # one FTZ area. A token without its scope would be a token for everything.
        if self.role in ("agent", "enterprise") and not self.enterprise_id:
            raise ValueError(f"role {self.role} needs enterprise_id")
        if self.role == "regulator" and self.ftz_area is None:
            raise ValueError("role regulator needs ftz_area")
        if self.role == "agent" and not self.agent_id:
            # Row identities are scoped by the token's agent, so a token must say which agent it is.
            raise ValueError("role agent needs agent_id: add `agent_id: <the agent_id in that agent's "
                             "agent.yaml>` to this token line")
        if self.role != "agent" and self.agent_id:
            raise ValueError(f"agent_id is only for role agent, not {self.role}")
        return self


def cron_trigger(expr: str) -> CronTrigger:
    """Five fields (minute hour day month weekday), as crontab; six fields put seconds first, as
    Quartz and Spring do (tests run the schedule every few seconds). Times are Asia/Shanghai."""
    fields = expr.split()
    if len(fields) == 5:
        return CronTrigger.from_crontab(expr, timezone=SHANGHAI)
    if len(fields) == 6:
        sec, minute, hour, day, month, dow = fields
        return CronTrigger(second=sec, minute=minute, hour=hour, day=day, month=month, day_of_week=dow,
                           timezone=SHANGHAI)
    raise ValueError(f"cron expression {expr!r}: expected 5 fields (or 6 with seconds first)")


class Schedule(Strict):
    spot_checks: str | None = "0 2 * * *"

    @field_validator("spot_checks")
    @classmethod
    def _cron(cls, v: str | None) -> str | None:
        if v is not None:
            cron_trigger(v)   # raises ValueError naming the expression
        return v


MIB = 1024 * 1024


class Limits(Strict):
    """Budgets for what uploaders send (DESIGN §9 "Hostile input"). A batch is judged by what it decodes to,
    never by the sizes its own Parquet metadata claims."""
    max_decoded_bytes: int = Field(256 * MIB, ge=1)       # Arrow bytes of one batch once decoded
    max_rows: int = Field(200_000, ge=1)                  # rows of one batch (agents write ≤ 50,000)
    max_string_bytes: int = Field(64 * 1024, ge=1)        # one string value (names, key paths, details)
    # Data memory (RLIMIT_DATA) a decoding worker may use beyond its idle size.
    decode_memory_bytes: int = Field(1024 * MIB, ge=64 * MIB)
    decode_timeout_s: float = Field(60, gt=0)             # wall time to decode and validate one batch
    max_document_bytes: int = Field(1 * MIB, ge=1024)     # a filing or negative list
    max_document_depth: int = Field(32, ge=4, le=200)     # nesting (the loader's own ceiling is 200)
    max_document_aliases: int = Field(100, ge=0)          # YAML aliases (*ref) in one document
    max_concurrent_uploads: int = Field(4, ge=1)          # batches decoded at once (the others wait)
    max_uploads_per_token: int = Field(2, ge=1)           # one token's uploads in flight (the others wait)
    max_concurrent_documents: int = Field(2, ge=1)        # filings/lists parsed at once (the others wait)
    upload_timeout_s: float = Field(120, gt=0)            # to receive one whole body (408 beyond)
    max_enterprise_bytes: int = Field(64 * 1024 * MIB, ge=MIB)  # stored records of one enterprise (507)


class Storage(Strict):
    """Compaction of the Parquet dataset (collector/compaction.py): a day of an enterprise's record type
    with at least `compact_min_files` files under `target_file_bytes` is merged into files of about that
    size, every `compact_interval_s` seconds."""
    compact_min_files: int = Field(8, ge=2)
    target_file_bytes: int = Field(64 * MIB, ge=64 * 1024)
    compact_interval_s: float = Field(600, gt=0)


class Persons(Strict):
    """Person linking (DESIGN §5): a key value carried by more records than this (a hotline number, a
    placeholder ID) is not a person and links nobody; the report lists such keys."""
    max_records_per_key: int = Field(1000, ge=2)


class CollectorConfig(Strict):
    data_dir: str = "./collector-data"
    listen: Listen = Listen()
    enterprises: list[EnterpriseEntry] = Field(default_factory=list)
    tokens: list[TokenEntry] = Field(default_factory=list)
    schedule: Schedule = Schedule()
    max_upload_bytes: int = Field(64 * MIB, ge=1)
    limits: Limits = Limits()
    storage: Storage = Storage()
    persons: Persons = Persons()

    @model_validator(mode="after")
    def _unique(self) -> CollectorConfig:
        registered: set[str] = set()
        for i, e in enumerate(self.enterprises):
            if e.enterprise_id in registered:
                raise PathIssue(("enterprises", i, "enterprise_id"),
                                 f"enterprise {e.enterprise_id!r} is registered twice (an enterprise belongs "
                                 "to exactly one FTZ area)")
            registered.add(e.enterprise_id)
        seen: set[str] = set()
        for i, t in enumerate(self.tokens):
            if t.name in seen or t.sha256 in seen:
                raise ValueError(f"token {t.name!r} appears twice (same name or same hash)")
            seen.update((t.name, t.sha256))
            if t.enterprise_id is not None and t.enterprise_id not in registered:
                raise PathIssue(("tokens", i, "enterprise_id"),
                                 f"{t.enterprise_id!r} is not registered: add `- {{enterprise_id: "
                                 f"{t.enterprise_id}, ftz_area: <area>}}` under enterprises:")
        return self

    def area_of(self) -> dict[str, str]:
        """Registered enterprise id -> its FTZ area."""
        return {e.enterprise_id: str(e.ftz_area) for e in self.enterprises}


def load_collector_config(path: Path | str | None) -> CollectorConfig:
    """Defaults when `path` is None; a relative data_dir is taken relative to the config file."""
    if path is None:
        return CollectorConfig()
    path = Path(path)
    config = validate(CollectorConfig, read_yaml(path, CollectorConfigError), path, CollectorConfigError)
    data_dir = Path(config.data_dir)
    if not data_dir.is_absolute():
        config = config.model_copy(update={"data_dir": str((path.parent / data_dir).resolve())})
    return config
