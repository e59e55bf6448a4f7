"""Runs the consistency checks: every `*.sql` file beside this module is one check (DESIGN §6).

A check is a SELECT returning the violating rows (zero rows = consistent), dbt-test style. Its header
comment carries the metadata, one `-- key: value` per line before the first SQL line:

    -- check: undeclared_recipient        id (must equal the file name)
    -- severity: high                     default severity; a `severity` column overrides it per row
    -- basis: …                           one line per legal basis (repeatable)
    -- action: …                          recommended action
    -- params: $name, …                   named parameters it reads, if any (optional)

A check reads the period through the shared views of `views.sql` (period_flows, pi_exports,
scenario_detections, scenario_persons, the one-row table `period`: views.py), loaded before the first
check; it does not filter flows by time or by cross_border itself. A check that flags detections first
declares them, `CREATE OR REPLACE TEMP VIEW hits AS …;` (one row per detection with its scenario_id and
subject), and its final SELECT reads the evidence roll-up of `evidence.sql` (`hit_evidence`), which the
runner loads after that statement; statements end with a semicolon at the end of a line, and those before
the final SELECT may only create temp views. Row columns `scenario_id`, `subject`, `severity`, `expected`,
`observed` fill the finding; every other column becomes evidence. Each check runs in its own cursor (temp
views are per cursor in DuckDB, so one check's `hits` is invisible to the others) and its own `try`: a
broken check is reported with status `error` and the others still run.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb

from collector.checks.views import VIEWS_FILE, statements, use_period
from collector.models import CheckStatus, Finding
from collector.persons import CST

log = logging.getLogger(__name__)

__all__ = ["CHECKS_DIR", "EVIDENCE_FILE", "CheckResult", "CheckSpec", "discover", "run_checks"]

CHECKS_DIR = Path(__file__).resolve().parent
_HEADER_RE = re.compile(r"^--\s*(check|severity|basis|action|params):\s*(.*?)\s*$")
_PARAM_RE = re.compile(r"\$([A-Za-z_]\w*)")
_FINDING_COLUMNS = {"scenario_id", "subject", "severity", "expected", "observed"}
_SEVERITIES = {"low", "medium", "high", "critical"}
EVIDENCE_FILE = "evidence.sql"
_SHARED_FILES = {VIEWS_FILE, EVIDENCE_FILE}
# What a statement before a check's final SELECT may do: create a temp view (its own cursor's, nothing else).
_TEMP_VIEW_RE = re.compile(r"^\s*CREATE\s+OR\s+REPLACE\s+TEMP(?:ORARY)?\s+VIEW\s+(\w+)\s+AS\b", re.IGNORECASE)


def _uncommented(sql: str) -> str:
    return "\n".join(line.split("--", 1)[0] for line in sql.splitlines())


def _code(stmt: str) -> str:
    """A statement without the comment lines before it."""
    lines = stmt.splitlines()
    while lines and (not lines[0].strip() or lines[0].lstrip().startswith("--")):
        lines.pop(0)
    return "\n".join(lines)


class CheckSpecError(ValueError):
    """A check file whose header is missing or wrong."""


@dataclass(frozen=True, slots=True)
class CheckSpec:
    id: str
    path: Path
    sql: str
    setup: tuple[str, ...]  # the temp views created before the final SELECT (`hits` and helpers)
    query: str              # the final SELECT
    severity: str
    basis: tuple[str, ...]
    action: str
    params: tuple[str, ...]

    @classmethod
    def from_file(cls, path: Path) -> CheckSpec:
        sql = path.read_text(encoding="utf-8")
        meta: dict[str, list[str]] = {}
        for line in sql.splitlines():
            if not line.startswith("--"):
                break
            m = _HEADER_RE.match(line)
            if m:
                meta.setdefault(m.group(1), []).append(m.group(2))
        check_id = (meta.get("check") or [""])[0]
        if check_id != path.stem:
            raise CheckSpecError(f"{path.name}: header 'check: {check_id}' does not match the file name")
        severity = (meta.get("severity") or [""])[0]
        if severity not in _SEVERITIES:
            raise CheckSpecError(f"{path.name}: header severity {severity!r} not in {sorted(_SEVERITIES)}")
        params = ",".join(meta.get("params", [])).split(",")
        declared = tuple(p.strip().lstrip("$") for p in params if p.strip())
        used = tuple(dict.fromkeys(_PARAM_RE.findall(_uncommented(sql))))
        if set(used) - set(declared):
            raise CheckSpecError(f"{path.name}: parameters {sorted(set(used) - set(declared))} not in header")
        *setup, query = statements(sql) or [""]
        for stmt in setup:
            if not _TEMP_VIEW_RE.match(_code(stmt)):
                raise CheckSpecError(f"{path.name}: a statement before the final SELECT may only create a "
                                     f"temp view: {_code(stmt).split(chr(10), 1)[0][:60]!r}")
            if _PARAM_RE.search(_uncommented(stmt)):
                raise CheckSpecError(f"{path.name}: parameters are read by the final SELECT only")
        return cls(check_id, path, sql, tuple(setup), query, severity, tuple(meta.get("basis", [])),
                   (meta.get("action") or [""])[0], used)

    @property
    def uses_evidence(self) -> bool:
        """Whether the check declares `hits`, so the evidence roll-up is loaded for it."""
        return any((m := _TEMP_VIEW_RE.match(_code(s))) and m.group(1).lower() == "hits" for s in self.setup)


@dataclass(slots=True)
class CheckResult:
    check: str
    status: str  # pass | fail | error
    findings: list[Finding] = field(default_factory=list)
    error: str | None = None

    def status_model(self) -> CheckStatus:
        return CheckStatus(check=self.check, status=self.status, findings=len(self.findings),
                           error=self.error)


def discover(checks_dir: Path = CHECKS_DIR) -> list[Path]:
    """Every check file, by name (the file name is the check id); views.sql and evidence.sql hold the
    shared views."""
    return sorted(p for p in checks_dir.glob("*.sql") if p.name not in _SHARED_FILES)


def _jsonable(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.astimezone(CST).isoformat() if v.tzinfo else v.isoformat()
    if isinstance(v, date):
        return v.isoformat()
    if isinstance(v, Decimal):
        return int(v) if v == v.to_integral_value() else float(v)
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return v


def _findings(spec: CheckSpec, columns: list[str], rows: list[tuple]) -> list[Finding]:
    out: dict[tuple, Finding] = {}
    for row in rows:
        rec = dict(zip(columns, (_jsonable(v) for v in row), strict=True))
        evidence = {k: v for k, v in rec.items() if k not in _FINDING_COLUMNS}
        f = Finding(
            check=spec.id,
            scenario_id=rec.get("scenario_id"),
            subject=str(rec["subject"]),
            severity=rec.get("severity") or spec.severity,
            expected=rec.get("expected"),
            observed=rec.get("observed"),
            basis=list(spec.basis),
            action=spec.action,
            evidence=evidence,
        )
        if f.identity in out:
            log.warning("check %s returned %s twice; keeping the first row", spec.id, f.identity)
            continue
        out[f.identity] = f
    return list(out.values())


def run_check(con: duckdb.DuckDBPyConnection, path: Path, params: dict[str, Any]) -> CheckResult:
    """Run one check file; any failure (header, SQL, conversion) becomes status `error`."""
    try:
        spec = CheckSpec.from_file(path)
        cur = con.cursor()
        try:
            for stmt in spec.setup:
                cur.execute(stmt)
            if spec.uses_evidence:
                for stmt in statements((path.parent / EVIDENCE_FILE).read_text(encoding="utf-8")):
                    cur.execute(stmt)
            result = cur.execute(spec.query, {p: params[p] for p in spec.params})
            columns = [d[0] for d in result.description]
            rows = result.fetchall()
        finally:
            cur.close()
        if "subject" not in columns:
            raise CheckSpecError(f"{path.name}: result has no 'subject' column")
        findings = _findings(spec, columns, rows)
    except Exception as e:  # one broken check must not stop the others
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        log.error("check %s failed: %s", path.stem, msg)
        return CheckResult(path.stem, "error", error=f"{type(e).__name__}: {msg}")
    return CheckResult(spec.id, "fail" if findings else "pass", findings)


def run_checks(
    con: duckdb.DuckDBPyConnection, params: dict[str, Any], checks_dir: Path = CHECKS_DIR
) -> list[CheckResult]:
    """Run every check of `checks_dir` over the period of `params` (period_from, period_to and, for a
    projection, as_of), after loading the directory's shared views; results in file-name order."""
    try:
        use_period(con, (params["period_from"], params["period_to"]), params.get("as_of"),
                   checks_dir / VIEWS_FILE)
    except Exception as e:  # without the shared views no check can run: each says why
        msg = f"{VIEWS_FILE}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        log.error("shared views failed: %s", msg)
        return [CheckResult(p.stem, "error", error=msg) for p in discover(checks_dir)]
    results = [run_check(con, path, params) for path in discover(checks_dir)]
    log.info("checks: %s", ", ".join(f"{r.check}={r.status}" for r in results))
    return results
