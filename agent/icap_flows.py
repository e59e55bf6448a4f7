"""What one ICAP transaction hands over, as the flow agent/handover.py records (DESIGN §3, §8).

The server (agent/icap.py) reads a transaction and queues an `Exchange` (the ICAP request, the body bytes it
kept); the recorder thread turns it into a `HandedFlow` here: who sent it (`X-Client-IP`), which server it
went to (`X-SNI`, else the request's Host, `:authority` or absolute URI), on which port, over TLS or not,
and the body with its content codings undone (agent/protocols/codings.py, within
`limits.max_decompressed_bytes`, as on the wire). Decoding happens in the recorder thread, never in the
event loop. Proxy meta headers are read as data: an address that is not one is ignored, a name that is not
a host name is not used.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from agent.handover import UNKNOWN_ADDRESS, HandedFlow, HandedMessage, handed_address
from agent.icap_wire import HttpHead, IcapRequest
from agent.protocols.http_body import BodyBudget, MessageBody
from agent.protocols.http_syntax import tokens, valid_host, valid_hostname

__all__ = ["Exchange", "Named", "Problem", "exchange_flow", "meta_ip"]

DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class Exchange:
    """A completed REQMOD (a request going out) or a pull's RESPMOD (an answer going to a client abroad)."""

    key: str                  # "<service start ns>:<counter>"
    ts_start: float
    ts_end: float
    icap: IcapRequest
    body: bytes               # the body as read, at most icap.max_body_bytes
    body_size: int            # body bytes on the wire, kept or not
    pull: bool
    aborted: bool = False     # the proxy gave up before the body's end: its whole length is unknown

    @property
    def cut(self) -> bool:
        return self.aborted or self.body_size > len(self.body)

    @property
    def whole_size(self) -> int | None:
        """The whole body's length when it was cut and is known."""
        return self.body_size if self.cut and not self.aborted else None


@dataclass(frozen=True, slots=True)
class Named:
    """A RESPMOD named the server address of the request `correlation` (X-Transaction-ID)."""

    correlation: str
    ip: str


@dataclass(frozen=True, slots=True)
class Problem:
    """A request the server refused as malformed: an `icap` anomaly (detail: lengths and names only)."""

    name: str
    detail: str


def meta_ip(request: IcapRequest, name: str) -> str | None:
    """An address from a proxy's meta header (`X-Client-IP`, `X-Server-IP`); None: absent or no address."""
    return handed_address(request.value(name))


def _authority(text: str) -> tuple[str, int | None] | None:
    """(host, port) of a Host value or authority that names a server, else None."""
    text = text.strip(" \t")
    if not text or not valid_host(text):
        return None
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:]
    else:
        host, _, port = text.partition(":")
    return host.lower().rstrip("."), (int(port) if port and int(port) < 65536 else None)


def _server(icap: IcapRequest, head: HttpHead | None) -> tuple[str | None, int, bool, str]:
    """(server name, port, over TLS, request-target path and query) of the encapsulated request."""
    sni = icap.value("x-sni")
    sni = sni.lower().rstrip(".") if sni and valid_hostname(sni.rstrip(".")) else None
    if head is None:
        return sni, 443 if sni else 80, bool(sni), ""
    method, target = head.start[0], head.start[1]
    name: str | None = None
    port: int | None = None
    scheme = ""
    path = target
    if method == "CONNECT":
        found = _authority(target)
        name, port, path = (found[0], found[1], "") if found else (None, None, "")
        scheme = "https"
    elif "://" in target[:16]:
        try:
            parts = urlsplit(target)
            scheme = parts.scheme.lower()
            name, port = (parts.hostname or None), parts.port
        except ValueError:
            pass
        path = target.split("://", 1)[1]
        path = "/" + path.split("/", 1)[1] if "/" in path else "/"
    for field in ("host", ":authority"):
        value = head.value(field)
        found = _authority(value) if value else None
        if found:
            name, port = found[0], port if port is not None else found[1]
            break
    encrypted = scheme == "https" or sni is not None
    if port is None:
        port = DEFAULT_PORTS.get(scheme, 443 if encrypted else 80)
    return sni or name, port, encrypted, path


def _content(exchange: Exchange, head: HttpHead | None, limit: int,
             anomaly: Callable[[str, str], None]) -> tuple[bytes, str | None, bool]:
    """The body as inspected (codings undone), its Content-Type, whether it is cut."""
    if head is None:
        return exchange.body, None, exchange.cut
    codings = tokens(head.values("content-encoding"))
    body = MessageBody(BodyBudget(len(exchange.body)), codings, limit, anomaly)
    body.add(exchange.body)
    content = body.finish(anomaly, limit)
    return content, head.value("content-type"), exchange.cut or body.truncated


def exchange_flow(exchange: Exchange, max_decompressed_bytes: int,
                  anomaly: Callable[[str, str], None]) -> tuple[HandedFlow, str | None]:
    """The flow of one exchange and the correlation id it waits under for its server's address (None: the
    address is known, or nobody will name it)."""
    icap = exchange.icap
    client = meta_ip(icap, "x-client-ip") or UNKNOWN_ADDRESS
    server_ip = meta_ip(icap, "x-server-ip")
    correlation = icap.value("x-transaction-id") or None
    name, port, encrypted, target = _server(icap, icap.req_hdr)
    if exchange.pull:
        # The answer is the export: src is the internal server (address from X-Server-IP), dst the client.
        res = icap.res_hdr
        body, content_type, cut = _content(exchange, res, max_decompressed_bytes, anomaly)
        message = HandedMessage("", body, content_type, cut, exchange.whole_size)
        flow = HandedFlow(key=exchange.key, visibility="proxy", ts_start=exchange.ts_start,
                          ts_end=exchange.ts_end, server_name=name, dst_port=port, messages=(message,),
                          src_ip=client, dst_ip=server_ip, encrypted=encrypted, initiator="external",
                          bytes_out=(len(res.raw) if res else 0) + exchange.body_size,
                          bytes_in=len(icap.req_hdr.raw) if icap.req_hdr else 0)
        return flow, None
    body, content_type, cut = _content(exchange, icap.req_hdr, max_decompressed_bytes, anomaly)
    message = HandedMessage(target, body, content_type, cut, exchange.whole_size)
    flow = HandedFlow(key=exchange.key, visibility="proxy", ts_start=exchange.ts_start,
                      ts_end=exchange.ts_end, server_name=name, dst_port=port, messages=(message,),
                      src_ip=client, dst_ip=server_ip, encrypted=encrypted,
                      bytes_out=(len(icap.req_hdr.raw) if icap.req_hdr else 0) + exchange.body_size)
    return flow, (correlation if server_ip is None else None)
