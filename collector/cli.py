"""egress-collector: the collector's command line (DESIGN §8).

    egress-collector selfcheck (PCAP… | HAR… | --records DIR) --filing F [--agent-config F] [--keylog F…]
                               [--out DIR] [--format json|html|table]
    egress-collector validate FILE…          (filings, negative lists, catalogs, policies, agent configs)

Exit codes: 0 consistent (or every file valid), 1 findings (or a check that could not run), 2 bad input.
Every error is one line naming the file and the field; nothing below this module prints or exits, and no
traceback reaches the user: errors are caught here, at the boundary.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from collector import cli_service
from collector.cli_common import (
    EXIT_BAD_INPUT,
    EXIT_FINDINGS,
    EXIT_OK,
    err_console,
    fail,
    internal,
    named,
    one_line,
    out_console,
)
from collector.models import load_filing
from detectors.inputs import InputError, read_yaml

app = typer.Typer(
    name="egress-collector", help="Cross-border export consistency checks against filings (备案一致性抽验).",
    add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
)
log = logging.getLogger("collector")


class Format(StrEnum):
    json = "json"
    html = "html"
    table = "table"


def _capture_records(pcaps: list[Path], agent_config: Path | None, enterprise_id: str, work: Path,
                     keylogs: list[Path] | None = None) -> Path:
    """Run the agent pipeline in-process over the inputs (captures and HAR archives, DESIGN §8: a `.har`
    file, or one whose first non-space byte is `{`, is a HAR); returns the records directory."""
    for p in pcaps:
        if not p.is_file():
            raise InputError(f"{p}: no such capture file")
    try:  # the agent is a library here; imported lazily so --records works without its heavy deps
        from agent.config import load_agent_config, with_keylogs
        from agent.har import is_har
        from agent.har_import import run_inputs
        from agent.keylog import check_readable
        from agent.pipeline import run_capture
        from agent.progress import watching
    except ImportError as e:
        raise InputError(f"capture input needs the agent pipeline, which is not available ({e}); "
                         "use --records DIR") from None
    config = load_agent_config(agent_config, enterprise_id=enterprise_id)   # ConfigError names the file
    config = with_keylogs(config, keylogs)
    check_readable(config.tls.keylog_files)     # KeyLogError names the file
    hars = [p for p in pcaps if is_har(p)]
    captures = [p for p in pcaps if p not in hars]
    # A bar on a terminal, log lines otherwise. CaptureFormatError, HarError (name the file), CatalogError,
    # ConfigError: InputErrors, one line each.
    with watching(captures, err_console):
        if not hars:
            return Path(run_capture(list(captures), config, work))
        return Path(run_inputs(captures, hars, config, work).records_dir)


@app.command()
def selfcheck(
    filing: Annotated[Path, typer.Option("--filing", help="Filing record YAML (zjftz.filing/v1).")],
    pcaps: Annotated[list[Path] | None, typer.Argument(help="Capture files (pcap, pcapng, gzip'd), HAR "
                                                                        "archives.",
                                                        show_default=False)] = None,
    records: Annotated[Path | None, typer.Option("--records", help="An agent spool directory.")] = None,
    agent_config: Annotated[Path | None, typer.Option("--agent-config", help="Agent config YAML.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write report.json and report.html here.")] = None,
    keylog: Annotated[list[Path] | None, typer.Option("--keylog", help="TLS key log file (SSLKEYLOGFILE "
                                                      "format) for the captures; repeatable.")] = None,
    fmt: Annotated[Format, typer.Option("--format", help="What to print.")] = Format.table,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress to stderr.")] = False,
) -> None:
    """Self-check: captures or records + your filing -> the consistency report (自查)."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    from collector.store import RecordsError

    try:
        report = _selfcheck(pcaps or [], filing, records, agent_config, out, keylog)
    except (InputError, RecordsError) as e:
        raise fail(one_line(e)) from None
    except OSError as e:   # an output directory that cannot be written, a capture that cannot be read
        raise fail(one_line(e)) from None
    except Exception as e:  # the boundary: never a traceback, and a bug is not the user's bad input
        raise internal(e) from None

    from collector.reports import render_html, render_json, summary_table

    if fmt is Format.json:
        sys.stdout.write(render_json(report))
    elif fmt is Format.html:
        sys.stdout.write(render_html(report))
    else:
        out_console.print(summary_table(report))
        if out is not None:
            out_console.print(f"report: {out / 'report.json'}, {out / 'report.html'}", markup=False)
    for c in report.checks:
        if c.status == "error":
            err_console.print(f"egress-collector: check {c.check} could not run: {c.error}", markup=False)
    raise typer.Exit(EXIT_OK if report.verdict == "consistent" and report.complete else EXIT_FINDINGS)


def _selfcheck(pcaps: list[Path], filing_path: Path, records: Path | None, agent_config: Path | None,
               out: Path | None, keylogs: list[Path] | None = None):
    # -> Report (imports kept lazy for a fast `validate`)
    from collector.selfcheck import run_selfcheck

    if bool(pcaps) == (records is not None):
        raise InputError("give either capture files or --records DIR, not both or neither")
    if records is not None and keylogs:
        raise InputError("--keylog decrypts capture files: it does not go with --records")
    filing = load_filing(filing_path)
    if records is not None:
        if not records.is_dir():
            raise InputError(f"{records}: --records is not a directory")
        return run_selfcheck(records, filing, out)
    work = out / "records" if out is not None else Path(tempfile.mkdtemp(prefix="egresswatch-"))
    records_dir = _capture_records(pcaps, agent_config, filing.processor.id, work, keylogs)
    return run_selfcheck(records_dir, filing, out)


def _validate_one(path: Path) -> str:
    """Validate one file by what it is; returns a short description or raises with one line."""
    data = read_yaml(path)
    schema = data.get("schema")
    if schema == "zjftz.filing/v1":
        f = load_filing(path)
        return f"filing {f.filing_id}: {len(f.recipients)} recipient(s), {len(f.scenarios)} scenario(s)"
    if schema == "ftz.negative_list/v1":
        from collector.negative_lists import parse_negative_list

        nl = parse_negative_list(data, str(path))
        entries = sum(len(s.entries) for s in nl.sectors)
        note = ", illustrative" if nl.illustrative else ""
        return f"negative list {nl.list_id}: {len(nl.sectors)} sector(s), {entries} entr(ies){note}"
    if "field_types" in data:
        try:
            from detectors.catalog import load_catalog
        except ImportError:
            raise InputError(f"{path}: field type catalogs need detectors.catalog (not available)") from None
        load_catalog(path)
        return "field type catalog"
    if path.name.startswith("policy") or {"resident_id_is_sensitive", "sensitive_overrides"} & set(data):
        from detectors.catalog import load_policy

        load_policy(path)
        return "policy"
    if path.name.startswith("agent") or {"agent_id", "internal_networks", "subject_key_file"} & set(data):
        try:
            from agent.config import load_agent_config
        except ImportError:
            raise InputError(f"{path}: agent configs need agent.config (not available)") from None
        load_agent_config(path)
        return "agent config"
    if path.name.startswith("collector") or {"data_dir", "tokens", "listen"} & set(data):
        from collector.config import load_collector_config

        cfg = load_collector_config(path)
        return f"collector config: {len(cfg.tokens)} token(s), schedule {cfg.schedule.spot_checks!r}"
    raise InputError(f"{path}: schema: unknown document kind {schema!r} (expected 'zjftz.filing/v1', "
                     "'ftz.negative_list/v1', a field type catalog, a policy, an agent or collector config)")


@app.command()
def validate(
    files: Annotated[list[Path], typer.Argument(
        help="Filings, negative lists, field_types.yaml, agent.yaml.")],
) -> None:
    """Validate filings, negative lists and configs: every error names the file and the field (校验)."""
    bad = 0
    for path in files:
        try:
            what = _validate_one(path)
        except InputError as e:   # every loader's error derives from it and names the file
            bad += 1
            err_console.print(f"egress-collector: {named(path, e)}", markup=False)
        except Exception as e:  # a bug: said so, and not counted as a bad file
            raise internal(e) from None
        else:
            out_console.print(f"{path}: ok ({what})", markup=False)
    raise typer.Exit(EXIT_BAD_INPUT if bad else EXIT_OK)


# serve, check and token live in their own module; registered after these two (the order of --help).
for _command in (cli_service.serve, cli_service.check, cli_service.token):
    app.command()(_command)


def main() -> None:  # pragma: no cover - console script entry point is `app`
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
