"""What the live TLS clients send: one session (= one connection) per client / TLS version / cipher /
protocol combination, carrying the live plan's planted messages (tests/live/plan.py), and the truth.

Imported by tests/live/tls_clients.py (a script in the client namespace, as `tls_sessions`) and by the
tests (as `tests.live.tls_sessions`), so it has no package-relative imports. Some messages are sent twice
(over another client): persons, distinct values and findings do not change, only occurrences and requests.

Two sets:
- `mixed`: every combination the issue names (TLS 1.2 / 1.3, AES-GCM / ChaCha20, h1 / h2 / h3, h2c by
  prior knowledge and by Upgrade, gRPC, a TLS 1.3 KeyUpdate and a QUIC key update mid-connection, a
  truncated handshake), to the four destinations of the plan; the findings are plan.EXPECTED_FINDINGS.
- `demo`: the bundled demo (fixtures/make_demo_tls.py): an HTTP/2-over-TLS export of crm-sync records
  (resident IDs, which configs/filings/demo.yaml does not declare) and one plain HTTP/1.1 order push.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

if __package__:                 # tests.live.tls_sessions (the tests)
    from . import plan
else:                           # tls_sessions, beside the script tls_clients.py
    import plan  # type: ignore[no-redef]


@dataclass(frozen=True, slots=True)
class Session:
    name: str
    client: str                  # httpx | curl | pyssl | s_client | aioquic | truncated
    server_name: str
    port: int                    # 443 (TLS / QUIC), 80 (cleartext), 8443 (openssl s_server, 0-RTT)
    tls: str | None              # "1.2" | "1.3" | None (cleartext)
    cipher: str                  # OpenSSL name (1.2), TLS 1.3 suite name, or "" (client default)
    alpn: str | None             # h2 | http/1.1 | h3 | None (cleartext)
    mode: str                    # "" | h2c | h2c-upgrade | grpc | ticket | 0rtt
    messages: tuple[plan.Message, ...]
    key_update: bool = False     # keys updated between consecutive requests

    @property
    def requests(self) -> int:
        """HTTP requests on the connection: the messages, and the body-less GET that upgrades to h2c or
        travels as 0-RTT early data."""
        return len(self.messages) + (self.mode in ("h2c-upgrade", "0rtt"))

    @property
    def transport(self) -> str:
        return "udp" if self.alpn == "h3" else "tcp"

    @property
    def app(self) -> str:
        if self.client == "truncated":
            return "tls"
        if self.mode == "grpc":
            return "grpc"
        return {"h2": "http2", "h3": "http3", "http/1.1": "http"}.get(self.alpn or "", "http2")

    @property
    def with_keys(self) -> str:
        """The visibility a correct agent gives this connection when it has the key log."""
        if self.client == "truncated" or self.mode == "ticket":
            return "none"
        return "decrypted" if self.tls or self.alpn == "h3" else "plaintext"


def content_type(session: Session) -> str:
    return "application/grpc" if session.mode == "grpc" else plan.CONTENT_TYPE


# ---------------------------------------------------------------------------------------------- gRPC

def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload     # wire type 2: length-delimited


def grpc_message(msg: plan.Message) -> plan.Message:
    """The same records as protobuf, hand-built: ExportRequest { repeated Record records = 1; } with
    Record's string fields numbered 1, 2, … in the JSON key order (ref = 1), in one gRPC length-prefixed
    message (flag 0, 4-byte big-endian length). The planted values do not change."""
    rows = json.loads(msg.body)
    records = b"".join(_field(1, b"".join(_field(i + 1, str(v).encode()) for i, v in enumerate(row.values())))
                       for row in rows)
    body = b"\x00" + len(records).to_bytes(4, "big") + records
    return plan.Message(msg.server_name, "/egress.v1.Export/Push", body, msg.planted, msg.records)


# ---------------------------------------------------------------------------------------------- sets

PARTNER, CRM, ADS, DOMESTIC = (d.server_name for d in plan.DESTINATIONS)
ZERO_RTT_PORT = 8443
HYPERCORN_PORTS = (443, 80)


def mixed() -> list[Session]:
    m = plan.messages()
    S = Session
    return [
        S("s_client-h1-tls13-aes128-keyupdate", "s_client", PARTNER, 443, "1.3", "TLS_AES_128_GCM_SHA256",
          "http/1.1", "", (m[0], m[1]), key_update=True),
        S("curl-h1-tls12-chacha20", "curl", PARTNER, 443, "1.2", "ECDHE-RSA-CHACHA20-POLY1305", "http/1.1",
          "", (m[2],)),
        S("curl-h2-tls12-aes128gcm", "curl", PARTNER, 443, "1.2", "ECDHE-RSA-AES128-GCM-SHA256", "h2", "",
          (m[0],)),
        S("truncated-clienthello", "truncated", PARTNER, 443, "1.3", "", "h2", "", ()),
        # s_server (not hypercorn) on 8443: 0-RTT needs a server that accepts early data
        S("s_client-ticket", "s_client-0rtt", PARTNER, ZERO_RTT_PORT, "1.3", "", "http/1.1", "ticket", ()),
        S("s_client-0rtt", "s_client-0rtt", PARTNER, ZERO_RTT_PORT, "1.3", "", "http/1.1", "0rtt", (m[2],)),
        S("httpx-h2-tls13-aes256gcm", "httpx", CRM, 443, "1.3", "", "h2", "", (m[3], m[4])),
        S("pyssl-h1-tls12-aes256gcm", "pyssl", CRM, 443, "1.2", "ECDHE-RSA-AES256-GCM-SHA384", "http/1.1",
          "", (m[5],)),
        S("curl-h2-tls13-chacha20", "curl", CRM, 443, "1.3", "TLS_CHACHA20_POLY1305_SHA256", "h2", "",
          (m[3],)),
        S("aioquic-h3-keyupdate", "aioquic", CRM, 443, "1.3", "", "h3", "", (m[4], m[5]), key_update=True),
        S("httpx-grpc-tls13", "httpx", ADS, 443, "1.3", "", "h2", "grpc", (grpc_message(m[6]),)),
        S("curl-h2c-prior-knowledge", "curl", ADS, 80, None, "", None, "h2c", (m[7],)),
        S("curl-h2c-upgrade", "curl", ADS, 80, None, "", None, "h2c-upgrade", (m[6],)),
        S("httpx-h2c-prior-knowledge", "httpx", DOMESTIC, 80, None, "", None, "h2c", (m[8],)),
        S("pyssl-h1-tls13", "pyssl", DOMESTIC, 443, "1.3", "", "http/1.1", "", (m[8],)),
    ]


def demo() -> list[Session]:
    m = plan.messages()
    return [
        Session("httpx-h2-tls13", "httpx", CRM, 443, "1.3", "", "h2", "", (m[3], m[4])),
        Session("curl-h1-plain", "curl", PARTNER, 80, None, "", None, "http/1.1", (m[0],)),
    ]


def demo_plain() -> list[Session]:
    """The demo's messages, all in cleartext HTTP/1.1: what the demo must give once decrypted."""
    return [Session(f"curl-h1-plain-{n}", "curl", s.server_name, 80, None, "", None, "http/1.1", s.messages)
            for n, s in enumerate(demo())]


SETS: dict[str, Callable[[], list[Session]]] = {"mixed": mixed, "demo": demo, "demo_plain": demo_plain}


# ---------------------------------------------------------------------------------------------- truth

def truth(set_name: str, sessions: list[Session], started: float) -> dict[str, Any]:
    """plan.truth over every message sent, plus one `flows` entry per connection (counts only)."""
    sent = [msg for s in sessions for msg in s.messages]
    connections: dict[str, int] = {}
    for s in sessions:
        connections[s.server_name] = connections.get(s.server_name, 0) + 1
    header = {"truth_version": 1, "generator": "tests/live/tls_clients.py", "set": set_name,
              "seed": plan.SEED, "client_ip": plan.CLIENT_IP, "filing_id": plan.FILING_ID,
              "enterprise_id": plan.ENTERPRISE_ID, "started_at": started}
    doc = plan.truth(sent, connections, header)
    doc["flows"] = [{"session": s.name, "client": s.client, "server_name": s.server_name,
                     "dst_ip": plan.BY_NAME[s.server_name].ip, "dst_port": s.port, "transport": s.transport,
                     "tls": s.tls, "cipher": s.cipher or None, "alpn": s.alpn, "mode": s.mode or None,
                     "app": s.app, "requests": s.requests, "key_update": s.key_update,
                     "cross_border": plan.BY_NAME[s.server_name].country != "CN",
                     "body_bytes": sum(len(msg.body) for msg in s.messages),
                     "visibility_with_keys": s.with_keys}
                    for s in sessions]
    return doc
