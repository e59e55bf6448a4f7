"""The collector service's configuration (`configs/collector.yaml`, DESIGN §9), validated once at start.

Tokens are stored only as SHA-256 hex digests: the file can be read by whoever runs the service without
handing out credentials. A bad file gives a `CollectorConfigError` whose message is one line naming the
file and the key path.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from apscheduler.triggers.cron import CronTrigger
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from collector.models import FtzArea, describe_validation_error, read_yaml

__all__ = ["CollectorConfig", "CollectorConfigError", "Listen", "Schedule", "TokenEntry",
           "cron_trigger", "load_collector_config"]

SHANGHAI = "Asia/Shanghai"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class CollectorConfigError(ValueError):
    """A collector config that cannot be used; `str()` is one line: file: path: problem."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Listen(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8465, ge=0, le=65535)


Role = Literal["agent", "enterprise", "regulator"]


class TokenEntry(_Strict):
    name: str = Field(min_length=1)
    sha256: str
    role: Role
    enterprise_id: str | None = None
    ftz_area: FtzArea | None = None

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


class Schedule(_Strict):
    spot_checks: str | None = "0 2 * * *"

    @field_validator("spot_checks")
    @classmethod
    def _cron(cls, v: str | None) -> str | None:
        if v is not None:
            cron_trigger(v)   # raises ValueError naming the expression
        return v


class CollectorConfig(_Strict):
    data_dir: str = "./collector-data"
    listen: Listen = Listen()
    tokens: list[TokenEntry] = []
    schedule: Schedule = Schedule()
    max_upload_bytes: int = Field(64 * 1024 * 1024, ge=1)

    @model_validator(mode="after")
    def _unique(self) -> CollectorConfig:
        seen: set[str] = set()
        for t in self.tokens:
            if t.name in seen or t.sha256 in seen:
                raise ValueError(f"token {t.name!r} appears twice (same name or same hash)")
            seen.update((t.name, t.sha256))
        return self


def load_collector_config(path: Path | str | None) -> CollectorConfig:
    """Defaults when `path` is None; a relative data_dir is taken relative to the config file."""
    if path is None:
        return CollectorConfig()
    path = Path(path)
    data = read_yaml(path, CollectorConfigError)
    try:
        config = CollectorConfig.model_validate(data)
    except ValidationError as e:
        raise CollectorConfigError(f"{path}: {describe_validation_error(e)}") from None
    data_dir = Path(config.data_dir)
    if not data_dir.is_absolute():
        config = config.model_copy(update={"data_dir": str((path.parent / data_dir).resolve())})
    return config
