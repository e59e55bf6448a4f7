"""The agent's configuration (`configs/agent.yaml`, DESIGN §8), validated once at start.

Every key is optional; the defaults are the ones DESIGN documents. A bad file gives a `ConfigError` whose
message is one line naming the file and the key path, never a traceback (read and worded by
detectors/inputs.py, as every config is).
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import socket
from pathlib import Path

from pydantic import Field, field_validator

from agent.anomalies import DEFAULT_MAX_PER_FLOW
from detectors.inputs import InputError, Strict, read_yaml, validate


class ConfigError(InputError):
    """A configuration file that cannot be used; `str()` is one line: file: path: problem."""


class Sampling(Strict):
    flow_rate: float = Field(1.0, gt=0.0, le=1.0)
    max_payload_bytes_per_flow: int = Field(1_048_576, ge=0)


class Limits(Strict):
    # Open flows held at once; past it the least recently used one is evicted (written, counted in
    # capture_stats.flows_evicted). Measured memory per open flow (tests/agent/test_memory.py; RSS over
    # 400,000 flows, allocator overhead included): ~1.0 KB for a flow without payload (a SYN flood, a scan)
    # and ~2.5 KB for one in the middle of an HTTP request (session and parser made at its first payload
    # byte). 400,000 x 2.5 KB is about 1 GB: the budget this default keeps (DESIGN §8 said 10^6, which
    # was ~3.7 GB at the 3.7 KB a flow cost before sessions were made lazily and the per-flow objects
    # slotted). Raise it with the memory to match: bytes ~= max_flows x 2.5 KB.
    max_flows: int = Field(400_000, ge=1)
    idle_timeout_s: float = Field(120.0, gt=0)
    # A flow open longer than this is written as an interval row and goes on under a new flow id
    # (flow_id of interval n > 0: "<first id>.<n>"), so a week-long connection shows up before it ends.
    active_timeout_s: float = Field(3600.0, gt=0)
    max_decompressed_bytes: int = Field(16_777_216, ge=0)
    # Anomaly records per flow; past it one `anomalies_suppressed` record at the flow's end says how many
    # more there were, so that one connection of bad header lines cannot fill the run's records.
    max_anomalies_per_flow: int = Field(DEFAULT_MAX_PER_FLOW, ge=1)


class Live(Strict):
    """Live capture (`egress-agent run --iface`)."""

    promiscuous: bool = True
    flush_interval_s: float = Field(30.0, gt=0)     # records reach the spool at least this often
    stats_interval_s: float = Field(60.0, gt=0)     # counters logged and written as capture_stats
    ship_interval_s: float = Field(10.0, gt=0)      # how often the shipper looks at the spool


class Tls(Strict):
    """Decryption with logged secrets (agent/keylog.py, agent/protocols/tls_decrypt.py)."""

    # NSS key log files (SSLKEYLOGFILE), read at start and followed while they grow; `--keylog` adds more.
    # They hold secrets like the subject key: read only here, never copied to the spool or the collector.
    keylog_files: list[str] = Field(default_factory=list)
    # How long, and how many bytes of a flow's ciphertext, to hold for keys not logged yet; then no_secrets.
    key_wait_s: float = Field(10.0, ge=0)
    key_wait_bytes: int = Field(1_048_576, ge=0)


class CollectorTarget(Strict):
    url: str | None = None
    token_file: str | None = None


def _check_cidrs(values: list[str]) -> list[str]:
    for v in values:
        ipaddress.ip_network(v, strict=False)  # raises ValueError with the offending text
    return values


class Icap(Strict):
    """The ICAP service (`egress-agent icap`, agent/icap.py; DESIGN §8)."""

    listen: str = "127.0.0.1:1344"
    # Proxies that may connect; any other peer is refused before a byte is read.
    allow: list[str] = Field(default_factory=lambda: ["127.0.0.1/32"])
    # Body bytes read per transaction; past it the rest is still read off the socket (so the proxy is not
    # stalled) but not kept, and the flow carries a `body_truncated` anomaly.
    max_body_bytes: int = Field(16_777_216, ge=0)
    # The proxy's own egress addresses, when this agent also captures the wire beyond the proxy: those
    # wire flows carry the bytes and are not inspected there (their content comes over ICAP), and the
    # ICAP flows carry no bytes, so nothing is counted twice (DESIGN §8, agent/handover.py).
    proxy_networks: list[str] = Field(default_factory=list)
    # How long a request's flow waits for the proxy to name the server's address (Squid: with the
    # RESPMOD of its answer) before the agent resolves the name itself.
    address_wait_s: float = Field(30.0, ge=0)
    # Connections served at once (OPTIONS says so; one more is answered 503 and closed).
    max_connections: int = Field(100, ge=1, le=10_000)
    # The preview asked for in OPTIONS: Squid sends previews only to a service that names a size. A body
    # that fits is answered at once (no 100 Continue round trip); an internal client's download is
    # answered 204 after it, unread.
    preview_bytes: int = Field(4096, ge=0, le=1_048_576)
    # How long the proxy may cache the OPTIONS answer.
    options_ttl_s: int = Field(3600, ge=1)
    # Silence allowed mid-request (and for a whole ICAP head to arrive): past it 408 and close.
    idle_timeout_s: float = Field(30.0, gt=0)
    # Silence allowed between requests of a kept-alive connection (longer than the proxy's own pconn
    # timeout, so the proxy is the one that closes an idle connection).
    keepalive_timeout_s: float = Field(300.0, gt=0)

    _cidrs = field_validator("allow", "proxy_networks")(_check_cidrs)


class AgentConfig(Strict):
    agent_id: str = Field(default_factory=socket.gethostname, min_length=1)
    enterprise_id: str | None = None
    internal_networks: list[str] = Field(
        default_factory=lambda: ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"])
    mainland_networks: list[str] = Field(default_factory=list)
    subject_key_file: str = "./egresswatch.key"
    sampling: Sampling = Sampling()
    limits: Limits = Limits()
    collector: CollectorTarget = CollectorTarget()
    out: str = "./spool"
    # The spool's cap: past it, new batches are dropped with an error log and counted in capture_stats
    # (spool_rows_dropped) until the shipper frees space. Never a silent loss.
    spool_max_bytes: int = Field(1 << 30, ge=1 << 20)
    live: Live = Live()
    tls: Tls = Tls()
    icap: Icap = Icap()
    # Processes that run the detectors beside the capture process (0: inline, in the capture process).
    detector_workers: int = Field(2, ge=0, le=64)

    _cidrs = field_validator("internal_networks", "mainland_networks")(_check_cidrs)


def load_agent_config(path: Path | None, **overrides: object) -> AgentConfig:
    """Load `path` (or the defaults when None), apply `overrides` (e.g. enterprise_id from a filing)."""
    data: dict = {}
    if path is not None:
        data = read_yaml(path, ConfigError, what="of settings", empty_ok=True)
    data.update({k: v for k, v in overrides.items() if v is not None})
    return validate(AgentConfig, data, path if path is not None else "(defaults)", ConfigError)


def with_keylogs(cfg: AgentConfig, keylogs: list[Path] | None) -> AgentConfig:
    """`cfg` with `keylogs` (command line `--keylog`, repeatable) after the config's own key log files."""
    if not keylogs:
        return cfg
    files = [*cfg.tls.keylog_files, *(str(p) for p in keylogs)]
    return cfg.model_copy(update={"tls": cfg.tls.model_copy(update={"keylog_files": files})})


def load_subject_key(path: str | Path) -> bytes:
    """The deployment key for keyed hashes; created 0600 with 32 random bytes if absent (DESIGN §3)."""
    p = Path(path)
    if not p.exists():
        p.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(32))
    key = p.read_bytes()
    if len(key) < 16:
        raise ConfigError(f"{p}: subject key is shorter than 16 bytes")
    return key
