"""The live tests' client: POSTs a deterministic set of JSON exports and writes the truth of what it sent.

    ip netns exec ewc-<id> .venv/bin/python tests/live/exporter.py --truth FILE
        [--seed N] [--pace-ms 5] [--connection keep-alive|close] [--port 80] [--timeout 5]

What is sent, to whom, and the filing it is checked against: tests/live/plan.py. There is no DNS: each
request goes straight to its destination's address (plan.DESTINATIONS) with the Host header set to the
server name, so the agent names the flow by its HTTP Host (DESIGN §3, server_name).

HTTP/1.1. By default (`keep-alive`) one TCP connection per server name carries all of that name's requests,
one after the other (each waits for its response), and is closed by the client at the end, so the agent sees
every flow end with a FIN before it is stopped. `--connection close` opens one connection per request
instead, with `Connection: close`. Requests are `--pace-ms` apart.

The truth file (JSON, plan.truth) holds counts only: per server name requests, connections, records,
persons_nonsensitive / persons_sensitive and, per field type, distinct values, occurrences and persons;
the same per scenario and over every cross-border destination. No raw value is written or printed
anywhere: stdout gets one summary line, a failure one line on stderr and exit status 1 (no truth file).
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import time
from pathlib import Path

sys.dont_write_bytecode = True
HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import plan  # noqa: E402  (a sibling module: this file runs as a script)

USER_AGENT = "egresswatch-live-exporter/1"


class ExportError(RuntimeError):
    """A request that did not get its 200; the message names the server name and request, never a body."""


def _post(conn: http.client.HTTPConnection, msg: plan.Message, close: bool) -> None:
    headers = {"Host": msg.server_name, "User-Agent": USER_AGENT, "Accept": "application/json",
               "Content-Type": plan.CONTENT_TYPE, "Connection": "close" if close else "keep-alive"}
    conn.request("POST", msg.path, body=msg.body, headers=headers)
    resp = conn.getresponse()
    resp.read()
    if resp.status != 200:
        raise ExportError(f"{msg.server_name}{msg.path}: HTTP {resp.status}")


def export(seed: int, pace_s: float, close: bool, port: int, timeout: float) -> tuple[list[plan.Message],
                                                                                     dict[str, int]]:
    """Send every message of plan.messages(seed); returns what was acknowledged and connections per name."""
    sent: list[plan.Message] = []
    connections: dict[str, int] = {}
    conn: http.client.HTTPConnection | None = None
    current = ""
    try:
        for msg in plan.messages(seed):
            if conn is None or close or msg.server_name != current:
                if conn is not None:
                    conn.close()
                current = msg.server_name
                conn = http.client.HTTPConnection(plan.BY_NAME[current].ip, port, timeout=timeout)
                connections[current] = connections.get(current, 0) + 1
            try:
                _post(conn, msg, close)
            except OSError as e:   # connection refused, reset, timeout: name the request, not the body
                raise ExportError(f"{msg.server_name}{msg.path}: {type(e).__name__}: {e}") from None
            except http.client.HTTPException as e:
                raise ExportError(f"{msg.server_name}{msg.path}: {type(e).__name__}") from None
            sent.append(msg)
            time.sleep(pace_s)
    finally:
        if conn is not None:
            conn.close()
    return sent, connections


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--truth", type=Path, required=True, help="where to write the truth (JSON)")
    parser.add_argument("--seed", type=int, default=plan.SEED)
    parser.add_argument("--pace-ms", type=float, default=5.0, help="pause after each request")
    parser.add_argument("--connection", choices=("keep-alive", "close"), default="keep-alive")
    parser.add_argument("--port", type=int, default=plan.PORT)
    parser.add_argument("--timeout", type=float, default=5.0, help="per socket operation, seconds")
    args = parser.parse_args(argv)
    close = args.connection == "close"
    started = time.time()
    try:
        sent, connections = export(args.seed, args.pace_ms / 1000, close, args.port, args.timeout)
    except ExportError as e:
        print(f"exporter: {e}", file=sys.stderr)
        return 1
    header = {"truth_version": 1, "generator": "tests/live/exporter.py", "seed": args.seed,
              "connection": args.connection, "pace_ms": args.pace_ms, "port": args.port,
              "client_ip": plan.CLIENT_IP, "filing_id": plan.FILING_ID, "enterprise_id": plan.ENTERPRISE_ID,
              "started_at": started, "finished_at": time.time(), "semantics": plan.TRUTH_SEMANTICS}
    doc = plan.truth(sent, connections, header)
    args.truth.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(doc, ensure_ascii=False, indent=2, sort_keys=True) + "\n"
    args.truth.write_text(text, encoding="utf-8")
    print(f"exporter: {len(sent)} requests to {len(connections)} server names, "
          f"{sum(connections.values())} connections; truth in {args.truth}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
