"""`egress-agent`: run the agent over capture files (DESIGN §8).

Errors are one readable line on stderr and exit code 2; never a traceback. With `--collector URL
--token-file F` (or `collector:` in the config) the spool is shipped after the run (agent/shipper.py); exit
code 1 when batches stay in the spool or were refused. Live capture (`--iface`) comes with its own issue.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from agent.config import ConfigError, load_agent_config

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="egresswatch agent: outbound flows in, Parquet records out.")
console = Console(soft_wrap=True)   # one line per message, whatever the terminal width


def fail(message: str) -> None:
    """One line on stderr and exit 2: the contract for bad input."""
    typer.echo(f"egress-agent: error: {message}", err=True)
    raise typer.Exit(2)


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress.")] = False) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@app.command()
def run(
    pcap: Annotated[list[Path], typer.Option("--pcap", help="Capture file(s): pcap, pcapng, gzip'd.")],
    config: Annotated[Path | None, typer.Option("--config", help="Agent config (YAML).")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Spool folder for the records.")] = None,
    enterprise_id: Annotated[str | None, typer.Option("--enterprise-id")] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Raise on the first anomaly (for debugging).")]
    = False,
    collector: Annotated[str | None, typer.Option("--collector", help="Collector URL to ship the spool to.")]
    = None,
    token_file: Annotated[Path | None, typer.Option("--token-file", help="File holding the agent's token.")]
    = None,
) -> None:
    """Read capture files, write flows, detections, pi_values and anomalies as Parquet to --out."""
    from agent.capture import CaptureFormatError
    from agent.pipeline import run_capture_stats
    from agent.shipper import ShipperError, read_token
    from detectors.catalog import CatalogError

    try:
        cfg = load_agent_config(config, enterprise_id=enterprise_id)
        url = collector or cfg.collector.url
        token_path = token_file or (Path(cfg.collector.token_file) if cfg.collector.token_file else None)
        if url and token_path is None:
            raise ShipperError("--collector needs --token-file (or collector.token_file in the config)")
        token = read_token(token_path) if url and token_path else None
        missing = [p for p in pcap if not p.is_file()]
        if missing:
            raise CaptureFormatError(missing[0], "no such file")
        stats = run_capture_stats(pcap, cfg, out or Path(cfg.out))
    except (ConfigError, CaptureFormatError, CatalogError, ShipperError) as e:
        fail(str(e))
    except (OSError, RuntimeError) as e:
        # Disk full, a detector worker that died: one line, the type and what the OS said (no payload).
        fail(f"{type(e).__name__}: {getattr(e, 'strerror', None) or e}")
    console.print(f"{stats.packets} packets, {stats.flows} flows ({stats.inspected_flows} inspected), "
              f"{stats.detections} detections, {stats.pi_values} PI values, {stats.anomalies} anomalies "
              f"-> {stats.records_dir}", highlight=False)
    if url and token:
        _ship(url, token, Path(stats.records_dir))


def _ship(url: str, token: str, spool: Path) -> None:
    from agent.shipper import Shipper

    with Shipper(url, token, spool) as shipper:
        result = shipper.ship_pending()
    console.print(f"shipped {result.shipped} batch(es) to {url} ({result.already_stored} already stored), "
                  f"{result.pending} pending, {result.rejected} rejected", highlight=False)
    if result.pending or result.rejected:
        typer.echo(f"egress-agent: error: {result.errors[-1]}", err=True)
        raise typer.Exit(1)


if __name__ == "__main__":  # pragma: no cover
    app()
