"""`egress-agent`: run the agent over capture files (DESIGN §8).

Errors are one readable line on stderr and exit code 2; never a traceback. With `--collector URL
--token-file F` (or `collector:` in the config) the spool is shipped after the run (agent/shipper.py); exit
code 1 when batches stay in the spool or were refused. `--iface IFACE [--bpf EXPR]` captures live until
SIGINT/SIGTERM (agent/runner.py), shipping as it goes. `icap` serves ICAP to a proxy until SIGINT/SIGTERM
(agent/icap_service.py).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from agent.config import AgentConfig, load_agent_config, with_keylogs
from detectors.inputs import InputError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="egresswatch agent: outbound flows in, Parquet records out.")
console = Console(soft_wrap=True)   # one line per message, whatever the terminal width
err_console = Console(stderr=True)  # the progress bar over capture files (log lines when not a terminal)


class UsageError(InputError):
    """Options that do not go together."""


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
    pcap: Annotated[list[Path] | None, typer.Option("--pcap", help="Capture file(s): pcap, pcapng, gzip'd.")]
    = None,
    iface: Annotated[str | None, typer.Option("--iface", help="Capture live on this interface until "
                                              "SIGINT/SIGTERM.")] = None,
    bpf: Annotated[str | None, typer.Option("--bpf", help="BPF filter for --iface (tcpdump syntax).")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="Agent config (YAML).")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Spool folder for the records.")] = None,
    enterprise_id: Annotated[str | None, typer.Option("--enterprise-id")] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Raise on the first anomaly (for debugging).")]
    = False,
    collector: Annotated[str | None, typer.Option("--collector", help="Collector URL to ship the spool to.")]
    = None,
    token_file: Annotated[Path | None, typer.Option("--token-file", help="File holding the agent's token.")]
    = None,
    keylog: Annotated[list[Path] | None, typer.Option("--keylog", help="TLS key log file (SSLKEYLOGFILE "
                                                      "format; repeatable), followed as it grows.")] = None,
) -> None:
    """Capture files or a live interface in; flows, detections, pi_values, anomalies and capture_stats out
    as Parquet in --out (and to the collector with --collector)."""
    from agent.capture import CaptureFormatError
    from agent.keylog import check_readable
    from agent.live import LiveCaptureError
    from agent.shipper import ShipperError, read_token

    try:
        if bool(pcap) == bool(iface):
            raise UsageError("give either --pcap FILE… or --iface IFACE")
        if bpf and not iface:
            raise UsageError("--bpf filters a live capture: it needs --iface")
        cfg = with_keylogs(load_agent_config(config, enterprise_id=enterprise_id), keylog)
        check_readable(cfg.tls.keylog_files)     # KeyLogError: one line naming the file
        url = collector or cfg.collector.url
        token_path = token_file or (Path(cfg.collector.token_file) if cfg.collector.token_file else None)
        if url and token_path is None:
            raise ShipperError("--collector needs --token-file (or collector.token_file in the config)")
        token = read_token(token_path) if url and token_path else None
        spool = out or Path(cfg.out)
        if iface:
            _live(iface, bpf, cfg, spool, (url, token) if url and token else None)
            return
        assert pcap is not None
        missing = [p for p in pcap if not p.is_file()]
        if missing:
            raise CaptureFormatError(missing[0], "no such file")
        from agent.pipeline import run_capture_stats
        from agent.progress import watching

        with watching(pcap, err_console):
            stats = run_capture_stats(pcap, cfg, spool)
    except (InputError, ShipperError, LiveCaptureError) as e:   # configs, catalogs, captures, options
        fail(str(e))
    except (OSError, RuntimeError) as e:
        # Disk full, a detector worker that died: one line, the type and what the OS said (no payload).
        fail(f"{type(e).__name__}: {getattr(e, 'strerror', None) or e}")
    console.print(f"{stats.packets} packets, {stats.flows} flows ({stats.inspected_flows} inspected), "
                  f"{stats.detections} detections, {stats.pi_values} PI values, {stats.anomalies} anomalies "
                  f"-> {stats.records_dir}", highlight=False)
    if url and token:
        _ship(url, token, Path(stats.records_dir))


def _live(iface: str, bpf: str | None, cfg: AgentConfig, spool: Path, collector: tuple[str, str] | None
          ) -> None:
    from agent.runner import run_live

    # The live agent is a service: its progress goes to the log (journald) whatever -v says.
    logging.getLogger().setLevel(min(logging.getLogger().level, logging.INFO))
    stats = run_live(iface, bpf, cfg, spool, collector=collector)
    console.print(f"{iface}: {stats.packets} packets ({stats.kernel_dropped} dropped by the kernel), "
                  f"{stats.flows} flows ({stats.inspected_flows} inspected), {stats.detections} detections, "
                  f"{stats.pi_values} PI values -> {spool}; shipped {stats.shipped}, {stats.pending} pending",
                  highlight=False)
    if stats.pending:
        raise typer.Exit(1)


@app.command()
def icap(
    listen: Annotated[str | None, typer.Option("--listen", help="HOST:PORT to serve ICAP on (default: "
                                               "icap.listen, 127.0.0.1:1344).")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="Agent config (YAML).")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Spool folder for the records.")] = None,
    enterprise_id: Annotated[str | None, typer.Option("--enterprise-id")] = None,
    collector: Annotated[str | None, typer.Option("--collector", help="Collector URL to ship the spool to.")]
    = None,
    token_file: Annotated[Path | None, typer.Option("--token-file", help="File holding the agent's token.")]
    = None,
) -> None:
    """Serve ICAP (RFC 3507) to a TLS-inspecting proxy until SIGINT/SIGTERM: what it hands over is inspected
    like a capture's content, records go to --out (and to the collector with --collector)."""
    from agent.icap_service import run_icap
    from agent.shipper import ShipperError, read_token

    # A service: its progress goes to the log (journald) whatever -v says.
    logging.getLogger().setLevel(min(logging.getLogger().level, logging.INFO))
    try:
        cfg = load_agent_config(config, enterprise_id=enterprise_id)
        url = collector or cfg.collector.url
        token_path = token_file or (Path(cfg.collector.token_file) if cfg.collector.token_file else None)
        if url and token_path is None:
            raise ShipperError("--collector needs --token-file (or collector.token_file in the config)")
        token = read_token(token_path) if url and token_path else None
        spool = out or Path(cfg.out)
        stats = run_icap(cfg, spool, listen=listen, collector=(url, token) if url and token else None)
    except (InputError, ShipperError) as e:
        fail(str(e))
    except (OSError, RuntimeError) as e:
        fail(f"{type(e).__name__}: {getattr(e, 'strerror', None) or e}")
    console.print(f"icap: {stats.transactions} transactions ({stats.errors} refused as malformed, "
                  f"{stats.refused} peers refused), {stats.flows} flows ({stats.inspected_flows} inspected), "
                  f"{stats.detections} detections, {stats.pi_values} PI values -> {spool}; shipped "
                  f"{stats.shipped}, {stats.pending} pending", highlight=False)
    if stats.pending:
        raise typer.Exit(1)


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
