"""egress-collector serve | check | token: the service's commands (DESIGN §8, §9).

    egress-collector serve [--config configs/collector.yaml]
    egress-collector check --filing-id ID [--from DATE --to DATE] [--config F] [--engine duckdb|spark]
                           [--spark-master URL]
    egress-collector token NAME --role ROLE [--enterprise-id E [--agent-id A] | --ftz-area AREA]

Registered on the `egress-collector` app by collector/cli.py (this module does not import it); same
conventions, from collector/cli_common.py: one-line errors, exit 2 on bad input, 1 when a check found
something.
"""

from __future__ import annotations

import logging
import sys
from datetime import date
from pathlib import Path
from typing import Annotated

import typer
import yaml

from collector.cli_common import (
    EXIT_BAD_INPUT,
    EXIT_FINDINGS,
    EXIT_OK,
    err_console,
    fail,
    one_line,
    out_console,
)
from collector.config import CollectorConfigError, TokenEntry, load_collector_config

log = logging.getLogger("collector")

ConfigOption = Annotated[Path | None, typer.Option("--config", help="Collector config YAML (DESIGN §9).")]


def _config(path: Path | None):  # -> CollectorConfig
    if path is not None and not path.is_file():
        raise fail(f"{path}: no such config file")
    try:
        return load_collector_config(path)
    except CollectorConfigError as e:
        raise fail(one_line(e)) from None


def serve(config: ConfigOption = None) -> None:
    """Run the collector service (FastAPI on uvicorn) with its spot-check schedule (服务)."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    cfg = _config(config)
    import uvicorn

    from collector.service import create_app

    try:
        application = create_app(cfg)
    except Exception as e:   # a locked or unreadable data_dir: one line, no traceback
        raise fail(f"{cfg.data_dir}: cannot open the collector's data: {one_line(e)}") from None
    log.info("collector on http://%s:%d, data in %s, %d token(s)", cfg.listen.host, cfg.listen.port,
             cfg.data_dir, len(cfg.tokens))
    from collector.http_protocol import guarded_protocol

    uvicorn.run(application, host=cfg.listen.host, port=cfg.listen.port, log_level="info",
                timeout_graceful_shutdown=10, http=guarded_protocol(cfg.listen), timeout_keep_alive=5)


def check(
    filing_id: Annotated[str, typer.Option("--filing-id", help="A filing uploaded to this collector.")],
    start: Annotated[str | None, typer.Option("--from", help="First day (CST), YYYY-MM-DD.")] = None,
    end: Annotated[str | None, typer.Option("--to", help="Last day (CST), inclusive.")] = None,
    config: ConfigOption = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress to stderr.")] = False,
    engine: Annotated[str, typer.Option("--engine", help="duckdb, or spark: the same checks on Apache Spark "
                                        "(pip install egresswatch[spark], Java 17).")] = "duckdb",
    spark_master: Annotated[str | None, typer.Option(
        "--spark-master", help="Spark master URL for --engine spark (default local[2]).")] = None,
) -> None:
    """Run every check for one filing now and store the report (抽验), as POST /v1/checks/run does."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    if engine not in ("duckdb", "spark"):
        raise fail(f"--engine: {engine!r} is not duckdb or spark")
    if spark_master is not None and engine != "spark":
        raise fail("--spark-master: only with --engine spark")
    cfg = _config(config)
    days = []
    for name, text in (("--from", start), ("--to", end)):
        try:
            days.append(date.fromisoformat(text) if text else None)
        except ValueError:
            raise fail(f"{name}: {text!r} is not a date (YYYY-MM-DD)") from None
    from collector.reports import summary_table
    from collector.spark_session import SparkUnavailable, spark_available
    from collector.spotcheck import CheckRequestError, run_spot_check
    from collector.warehouse import Warehouse

    if engine == "spark" and (problem := spark_available()):
        raise fail(f"--engine spark: {problem}")
    try:
        warehouse = Warehouse(cfg.data_dir, max_records_per_key=cfg.persons.max_records_per_key)
    except Exception as e:   # DuckDB allows one writing process: the running service holds the file
        raise fail(f"{cfg.data_dir}: cannot open the collector's data ({one_line(e)}); while "
                    "`egress-collector serve` runs, use POST /v1/checks/run") from None
    try:
        done = run_spot_check(warehouse, filing_id, start=days[0], end=days[1], trigger="cli", engine=engine,
                              spark_master=spark_master)
    except CheckRequestError as e:
        raise fail(one_line(e)) from None
    except SparkUnavailable as e:
        raise fail(f"--engine spark: {e}") from None
    finally:
        warehouse.close()
    out_console.print(summary_table(done.report))
    out_console.print(f"report {done.report_id} stored in {cfg.data_dir}", markup=False)
    for c in done.report.checks:
        if c.status == "error":
            err_console.print(f"egress-collector: check {c.check} could not run: {c.error}", markup=False)
    ok = done.report.verdict == "consistent" and done.report.complete
    raise typer.Exit(EXIT_OK if ok else EXIT_FINDINGS)


def token(
    name: Annotated[str, typer.Argument(help="A name for the token's holder, e.g. gw-hz-01.")],
    role: Annotated[str, typer.Option("--role", help="agent | enterprise | regulator")],
    enterprise_id: Annotated[str | None, typer.Option("--enterprise-id")] = None,
    ftz_area: Annotated[str | None, typer.Option("--ftz-area")] = None,
    agent_id: Annotated[str | None, typer.Option("--agent-id", help="Role agent: the agent_id of its "
                                                 "agent.yaml; its rows must carry it.")] = None,
) -> None:
    """Create a bearer token: prints the token (give it to its holder) and the config line with its hash."""
    from pydantic import ValidationError

    from collector.auth import new_token, token_digest
    from detectors.inputs import describe

    secret = new_token()
    fields = {"name": name, "sha256": token_digest(secret), "role": role}
    fields |= {k: v for k, v in (("enterprise_id", enterprise_id), ("ftz_area", ftz_area),
                                 ("agent_id", agent_id)) if v}
    try:
        TokenEntry.model_validate(fields)
    except ValidationError as e:
        raise fail(describe(e)) from None
    line = yaml.safe_dump([fields], default_flow_style=None, sort_keys=False, width=1000).strip()
    out_console.print(f"token: {secret}", markup=False)
    out_console.print("# add under `tokens:` in the collector config (only the hash is stored):",
                      markup=False)
    out_console.print(f"  {line}", markup=False)
    raise typer.Exit(EXIT_OK)


__all__ = ["EXIT_BAD_INPUT", "check", "serve", "token"]
