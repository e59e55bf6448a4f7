"""tshark as the oracle for the decryption tests, and key-log variants built from a real key log.

tshark 4.0 with `-o tls.keylog_file:K` decrypts TLS 1.2 / 1.3 (KeyUpdate included) and QUIC; it decodes
HTTP/1.1 and HTTP/2 (h2c too) but not QPACK, so for HTTP/3 it counts requests as the client-initiated
bidirectional QUIC streams (ids 0, 4, 8, …) that carried data. Connections are named by the client's port
(one client address), which is how the tests join them with the agent's flow records.
"""

from __future__ import annotations

import secrets
import subprocess
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

TSHARK = "tshark"
CLIENT_IP = "10.77.0.2"


@dataclass
class Seen:
    """What tshark decoded on one connection."""

    transport: str
    dst_port: int
    requests: int = 0
    authorities: set[str] = field(default_factory=set)


def _fields(pcap: Path, keylog: Path | None, display_filter: str, *names: str) -> list[list[str]]:
    argv = [TSHARK, "-n", "-r", str(pcap)]
    if keylog is not None:
        argv += ["-o", f"tls.keylog_file:{keylog}"]
    argv += ["-Y", display_filter, "-T", "fields", "-E", "separator=|", "-E", "occurrence=a"]
    for name in names:
        argv += ["-e", name]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=True)
    return [line.split("|") for line in r.stdout.splitlines()]


def requests_by_connection(pcap: Path, keylog: Path | None) -> dict[tuple[str, int], Seen]:
    """(transport, client port) -> requests and Host/:authority values tshark decoded (with `keylog`,
    or only from secrets inside the pcapng when None)."""
    seen: dict[tuple[str, int], Seen] = {}
    streams_of: dict[tuple[str, int], set[str]] = defaultdict(set)
    client = f"ip.src=={CLIENT_IP}"
    for sport, dport, method, host, types, sids, authorities in _fields(
            pcap, keylog, f"{client} && tcp && (http.request || http2.type==1)", "tcp.srcport", "tcp.dstport",
            "http.request.method", "http.host", "http2.type", "http2.streamid", "http2.headers.authority"):
        conn = seen.setdefault(("tcp", int(sport)), Seen("tcp", int(dport)))
        if method:               # an HTTP/1.x request (the h2c Upgrade GET included)
            conn.requests += 1
            conn.authorities.add(host)
        for t, sid in zip(types.split(","), sids.split(","), strict=False):
            if t == "1":         # a HEADERS frame the client sent: one request per stream
                streams_of[("tcp", int(sport))].add(sid)
        conn.authorities.update(a for a in authorities.split(",") if a)
    for key, streams in streams_of.items():
        seen[key].requests += len(streams)
    for sport, dport, quic_ids in _fields(pcap, keylog, f"{client} && quic.stream.stream_id", "udp.srcport",
                                      "udp.dstport", "quic.stream.stream_id"):
        conn = seen.setdefault(("udp", int(sport)), Seen("udp", int(dport)))
        streams_of[("udp", int(sport))].update(s for s in quic_ids.split(",") if int(s) % 4 == 0)
    for key, streams in streams_of.items():
        if key[0] == "udp":
            seen[key].requests = len(streams)
    return seen


def client_randoms(pcap: Path) -> dict[tuple[str, int], str]:
    """(transport, client port) -> the ClientHello random (hex) of every TLS and QUIC connection whose
    ClientHello tshark could read (QUIC Initials are decrypted with the public keys)."""
    out = {}
    for sport, uport, rnd in _fields(pcap, None, f"ip.src=={CLIENT_IP} && tls.handshake.type==1",
                                     "tcp.srcport", "udp.srcport", "tls.handshake.random"):
        key = ("tcp", int(sport)) if sport else ("udp", int(uport))
        out[key] = rnd.split(",")[0].replace(":", "")
    return out


# ---------------------------------------------------------------------------------------------- key logs

def _lines(keylog: Path) -> list[list[str]]:
    return [line.split() for line in keylog.read_text().splitlines() if line and not line.startswith("#")]


def keep_randoms(keylog: Path, keep: set[str], out: Path) -> Path:
    """A partial key log: only the lines of the connections whose client random is in `keep`."""
    out.write_text("".join(" ".join(p) + "\n" for p in _lines(keylog) if len(p) == 3 and p[1] in keep))
    return out


def wrong_secrets(keylog: Path, out: Path) -> Path:
    """The same client randoms and labels, every secret replaced by random bytes of its length: keys that
    derive, and AEAD tags that fail."""
    out.write_text("".join(f"{p[0]} {p[1]} {secrets.token_hex(len(p[2]) // 2)}\n"
                           for p in _lines(keylog) if len(p) == 3))
    return out


def other_capture(keylog: Path, out: Path) -> Path:
    """A well-formed key log for another capture: the same labels and lengths, other client randoms."""
    out.write_text("".join(f"{p[0]} {secrets.token_hex(32)} {secrets.token_hex(len(p[2]) // 2)}\n"
                           for p in _lines(keylog) if len(p) == 3))
    return out


def drop_labels(keylog: Path, labels: set[str], out: Path) -> Path:
    out.write_text("".join(" ".join(p) + "\n" for p in _lines(keylog) if p[0] not in labels))
    return out


def inject_secrets(pcapng: Path, keylog: Path, out: Path) -> Path:
    """`editcap --inject-secrets tls,KEYLOG`: the secrets in a Decryption Secrets Block of the pcapng."""
    subprocess.run(["editcap", "--inject-secrets", f"tls,{keylog}", str(pcapng), str(out)], check=True,
                   capture_output=True, timeout=60)
    return out
