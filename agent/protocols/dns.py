"""DNS answers: which addresses a name resolved to (RFC 1035 §4; AAAA: RFC 3596; CNAME: RFC 1034 §3.6.2).

`parse_answers(payload)` reads one DNS message (dpkt.dns does the wire format, compression pointers
included) and returns (name, address) pairs for A and AAAA answers. CNAME chains are followed, so the name
the client asked for maps to the final addresses, and so does every alias on the way: a flow to one of
those addresses can then be named by what the client looked up. Malformed input gives [].
"""

from __future__ import annotations

import logging
import socket

import dpkt

from agent.protocols.handler import HandlerContext, Summary

log = logging.getLogger(__name__)

_MAX_CHAIN = 16   # CNAME hops followed (RFC 1034 allows chains; loops are possible in bad data)
_ADDRESS_TYPES = {dpkt.dns.DNS_A: (socket.AF_INET, "ip", 4), dpkt.dns.DNS_AAAA: (socket.AF_INET6, "ip6", 16)}


def _norm(name: str) -> str:
    return name.lower().rstrip(".")


def _chain(name: str, cnames: dict[str, str]) -> list[str]:
    """`name` and the names its CNAME chain leads to, in order, without loops."""
    out = [name]
    while len(out) <= _MAX_CHAIN and (nxt := cnames.get(out[-1])) is not None and nxt not in out:
        out.append(nxt)
    return out


def parse_answers(payload: bytes) -> list[tuple[str, str]]:
    """(name, address) for every A/AAAA answer, queried names and aliases first; [] if malformed."""
    try:
        msg = dpkt.dns.DNS(payload)
        if msg.qr != dpkt.dns.DNS_R or not msg.an:
            return []
        cnames: dict[str, str] = {}
        addresses: dict[str, list[str]] = {}
        order: list[str] = [_norm(q.name) for q in msg.qd]
        for rr in msg.an:
            owner = _norm(rr.name)
            if rr.type == dpkt.dns.DNS_CNAME:
                cnames.setdefault(owner, _norm(rr.cname))
            elif rr.type in _ADDRESS_TYPES:
                family, attr, size = _ADDRESS_TYPES[rr.type]
                raw = getattr(rr, attr, b"")
                if len(raw) != size:
                    continue
                addresses.setdefault(owner, []).append(socket.inet_ntop(family, raw))
            else:
                continue
            order.append(owner)
    except Exception as exc:  # dpkt raises many types on bad input; a bad message is just no answers
        log.debug("unparsable DNS message: %s (%d bytes)", type(exc).__name__, len(payload))
        return []
    pairs: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for name in dict.fromkeys(order):
        for hop in _chain(name, cnames):
            for addr in addresses.get(hop, ()):
                if name and (name, addr) not in seen:
                    seen.add((name, addr))
                    pairs.append((name, addr))
    return pairs


class DnsHandler:
    """The DNS handler of a UDP flow (agent/protocols/handler.py): queries are counted as requests, answers
    feed name resolution (`ctx.on_dns`). Each `feed` is one datagram."""

    __slots__ = ("_queries", "ctx", "wants_client", "wants_server")

    def __init__(self, ctx: HandlerContext) -> None:
        self.ctx = ctx
        self._queries = 0
        self.wants_client = self.wants_server = True

    def feed(self, data: bytes, from_client: bool) -> None:
        if from_client:
            self._queries += 1
            return
        answers = parse_answers(data)
        if answers:
            self.ctx.on_dns(answers)

    def gap(self, n: int, from_client: bool) -> None:
        return None

    def close(self) -> None:
        self.wants_client = self.wants_server = False

    def summary(self) -> Summary:
        return Summary(app="dns", requests=self._queries)
