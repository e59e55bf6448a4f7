"""Start and stop the real `egress-collector serve` process for tests (DESIGN §9).

`start_collector(tmp, tokens=…, enterprises=…, **config)` writes a collector.yaml with fresh tokens, starts
the service on a free port and waits until /healthz answers (never a fixed sleep); `stop()` sends SIGTERM
and asserts a clean shutdown with no traceback in the log.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from collector.auth import new_token, token_digest
from tests.conftest import BIN, ROOT

__all__ = ["ENTERPRISES", "TOKENS", "CollectorServer", "demo_filing", "free_port", "start_collector"]

# Three enterprises in two areas: hz-demo and hz-other in Hangzhou, nb-other in Ningbo.
ENTERPRISES = [
    {"enterprise_id": "hz-demo", "name": "杭州某跨境电商有限公司", "ftz_area": "hangzhou"},
    {"enterprise_id": "hz-other", "name": "杭州另一企业", "ftz_area": "hangzhou"},
    {"enterprise_id": "nb-other", "name": "宁波某企业", "ftz_area": "ningbo"},
]
TOKENS: dict[str, dict[str, str]] = {
    "agent": {"role": "agent", "enterprise_id": "hz-demo", "agent_id": "gw-hz-01"},
    "agent-2": {"role": "agent", "enterprise_id": "hz-demo", "agent_id": "gw-hz-02"},
    "agent-hz-other": {"role": "agent", "enterprise_id": "hz-other", "agent_id": "gw-hzo-01"},
    "agent-other": {"role": "agent", "enterprise_id": "nb-other", "agent_id": "gw-nb-01"},
    "regulator": {"role": "regulator", "ftz_area": "hangzhou"},
    "regulator-ningbo": {"role": "regulator", "ftz_area": "ningbo"},
    "enterprise": {"role": "enterprise", "enterprise_id": "hz-demo"},
    "enterprise-hz-other": {"role": "enterprise", "enterprise_id": "hz-other"},
    "enterprise-other": {"role": "enterprise", "enterprise_id": "nb-other"},
}


def demo_filing(**changes: Any) -> dict[str, Any]:
    """The demo filing (hz-demo, Hangzhou) as JSON-safe data (YAML dates as the ISO strings JSON carries),
    valid today whenever the suite runs (the schedule checks active filings), with top-level `changes`."""
    filing = yaml.safe_load((ROOT / "configs" / "filings" / "demo.yaml").read_text(encoding="utf-8"))
    filing["valid_until"] = "2099-12-31"
    return {**json.loads(json.dumps(filing, default=str)), **changes}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class CollectorServer:
    url: str
    tokens: dict[str, str]
    proc: subprocess.Popen[str]
    data_dir: Path
    log: Path
    config_path: Path
    facts: dict[str, Any] = field(default_factory=dict)

    def client(self, who: str | None, timeout: float = 120) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"} if who else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def call(self, who: str | None, method: str, path: str, **kw: Any) -> httpx.Response:
        with self.client(who) as c:
            return c.request(method, path, **kw)

    def stop(self, *, expect_clean: bool = True) -> str:
        """SIGTERM, wait, and return the log; with `expect_clean`, assert a graceful stop, no traceback."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                raise
        else:
            code = self.proc.returncode
        text = self.log.read_text(encoding="utf-8", errors="replace")
        if expect_clean:
            assert code in (0, -signal.SIGTERM) and "Application shutdown complete" in text, text[-2000:]
            assert "Traceback" not in text, text[-4000:]
        return text


def wait_healthy(url: str, proc: subprocess.Popen[str], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"collector did not start:\n{log.read_text(errors='replace')[-4000:]}")
        time.sleep(0.2)


def start_collector(tmp: Path, *, tokens: dict[str, dict[str, str]] | None = None,
                    enterprises: list[dict[str, str]] | None = None, data_dir: Path | None = None,
                    listen_extra: dict[str, Any] | None = None, **config: Any) -> CollectorServer:
    """A running collector with a fresh token per entry of `tokens` (default TOKENS); extra keyword
    arguments go into collector.yaml as they are (schedule, max_upload_bytes, limits, …)."""
    specs = TOKENS if tokens is None else tokens
    secrets = {name: new_token() for name in specs}
    port = free_port()
    data = data_dir or tmp / "data"
    body = {
        "data_dir": str(data), "listen": {"host": "127.0.0.1", "port": port, **(listen_extra or {})},
        "enterprises": ENTERPRISES if enterprises is None else enterprises,
        "tokens": [{"name": n, "sha256": token_digest(secrets[n]), **spec} for n, spec in specs.items()],
        "schedule": {"spot_checks": None},
        **config,
    }
    cfg = tmp / "collector.yaml"
    cfg.write_text(yaml.safe_dump(body, allow_unicode=True), encoding="utf-8")
    log = tmp / "serve.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen([str(BIN / "egress-collector"), "serve", "--config", str(cfg)], cwd=tmp,
                                stdout=fh, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, log)
    except AssertionError:
        proc.kill()
        raise
    return CollectorServer(url, secrets, proc, data, log, cfg)
