"""SOCKS5 (RFC 1928) with username/password authentication (RFC 1929): whom a proxied connection is for.

`Socks5Client` follows the client's half of the handshake as its bytes arrive: the greeting (version 5 and
the methods offered), an optional username/password sub-negotiation, and the request (CONNECT, BIND or UDP
ASSOCIATE to an IPv4 address, a domain name or an IPv6 address). What it hands back is the request's target
and the bytes after it: after a CONNECT they are the tunnelled protocol, which the session chooses afresh
(agent/protocols/session.py). `Socks5Server` follows the server's half (method selection, sub-negotiation
status, reply) the same way.

The client's bytes alone are enough to name the flow: a client sends the request only after the server has
chosen a method (the first byte then tells a request, 5, from a sub-negotiation, 1), and tunnelled bytes only
after a success reply (RFC 1928 §6). The agent's sessions receive the client's direction only today; the
server half is ready for when the reply direction reaches them.

Credentials: the sub-negotiation is skipped by its length fields. Neither the username nor the password is
kept, copied into a result or described in an anomaly.

Bounds: every message has a size fixed by its own length bytes (greeting ≤ 257, sub-negotiation ≤ 513,
request ≤ 262), the handshake has at most three messages, and anything that is not the next expected message
ends the handshake with a `problem` (an anomaly name and a detail without payload) instead of an exception.

`sniff` is the registry's content match (agent/protocols/registry.py): on the SOCKS port a plausible greeting
is enough; elsewhere the greeting must be complete and followed by the start of a request or sub-negotiation.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

from agent.anomalies import shape
from agent.protocols.handler import Handler, HandlerContext, Summary
from agent.protocols.http_syntax import valid_hostname

VERSION = 5
AUTH_VERSION = 1                  # RFC 1929 sub-negotiation
NO_AUTH, GSSAPI, USERPASS, NO_ACCEPTABLE = 0x00, 0x01, 0x02, 0xFF
CONNECT, BIND, UDP_ASSOCIATE = 1, 2, 3
IPV4, DOMAIN, IPV6 = 1, 3, 4
_ADDRESS_SIZES = {IPV4: 4, IPV6: 16}
# IANA "SOCKS Methods": 0x00-0x09 assigned, 0x0A-0x7F unassigned, 0x80-0xFE private use.
_REGISTERED_METHODS = frozenset(range(0x0A)) | frozenset(range(0x80, 0xFF))

_GREETING, _NEGOTIATED, _REQUEST = range(3)                        # client steps
_SELECTION, _AUTH_STATUS, _REPLY = range(3)                        # server steps


@dataclass(frozen=True, slots=True)
class Socks5Target:
    """A request's destination. Only checked names leave this module: `host` is a domain that is a host name
    (lower-case, no trailing dot), `ip` an address (an address sent as a domain counts as one), and a domain
    that is neither is only described by its shape in `rejected`."""

    command: int                  # CONNECT, BIND or UDP_ASSOCIATE
    port: int
    host: str | None = None
    ip: str | None = None
    rejected: str | None = None


class _Malformed(Exception):
    def __init__(self, detail: str, name: str = "malformed_socks5") -> None:
        super().__init__(detail)
        self.name, self.detail = name, detail


def _address(buf: bytearray, off: int, command: int) -> tuple[int, Socks5Target] | None:
    """ATYP, address and port at `off` (RFC 1928 §4, §5): (end offset, target); None while incomplete."""
    atyp = buf[off]
    if atyp in _ADDRESS_SIZES:
        end = off + 1 + _ADDRESS_SIZES[atyp] + 2
        if len(buf) < end:
            return None
        ip = str(ipaddress.ip_address(bytes(buf[off + 1: end - 2])))
        return end, Socks5Target(command, int.from_bytes(buf[end - 2: end], "big"), ip=ip)
    if atyp != DOMAIN:
        raise _Malformed(f"address type {atyp}")
    if len(buf) < off + 2:
        return None
    if buf[off + 1] == 0:
        raise _Malformed("empty domain name")
    end = off + 2 + buf[off + 1] + 2
    if len(buf) < end:
        return None
    port = int.from_bytes(buf[end - 2: end], "big")
    name = bytes(buf[off + 2: end - 2]).decode("latin-1")
    try:
        return end, Socks5Target(command, port, ip=str(ipaddress.ip_address(name)))
    except ValueError:
        pass
    if valid_hostname(name):
        return end, Socks5Target(command, port, host=name.lower().rstrip("."))
    return end, Socks5Target(command, port, rejected=shape(name))


class _Stream:
    """A handshake half: buffered bytes, one step per message, a problem instead of an exception."""

    __slots__ = ("_buf", "_step", "problem")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._step = 0
        self.problem: tuple[str, str] | None = None   # (anomaly name, detail) once the handshake is broken

    @property
    def pending(self) -> int:
        """Bytes of an unfinished message."""
        return len(self._buf)

    def _run(self, data: bytes) -> bool:
        """Feed `data`; True once the handshake half is complete (the rest stays in `_buf`)."""
        if self.problem is not None:
            return False
        self._buf += data
        try:
            while self._buf and not self._complete():
                used = self._message()
                if not used:
                    return False
                del self._buf[:used]
        except _Malformed as e:
            self.problem = (e.name, e.detail)
            self._buf.clear()
            return False
        return self._complete()

    def _complete(self) -> bool:
        raise NotImplementedError

    def _message(self) -> int:
        """Bytes the next message took (it is consumed), 0 while it is incomplete."""
        raise NotImplementedError


class Socks5Client(_Stream):
    """The client's half of one connection's handshake."""

    __slots__ = ("_methods", "target")

    def __init__(self) -> None:
        super().__init__()
        self._methods = b""
        self.target: Socks5Target | None = None

    def feed(self, data: bytes) -> bytes | None:
        """Once the request is complete: the bytes after it (the tunnel's start, maybe empty), and the target
        in `target`. None while more is needed, after that, or when the handshake broke (see `problem`)."""
        if self.target is not None or not self._run(data):
            return None
        rest, self._buf = bytes(self._buf), bytearray()
        return rest

    def _complete(self) -> bool:
        return self.target is not None

    def _message(self) -> int:
        buf = self._buf
        if self._step == _GREETING:
            if buf[0] != VERSION:
                raise _Malformed(f"greeting version {buf[0]}")
            if len(buf) < 2 or len(buf) < 2 + buf[1]:
                return 0
            methods = bytes(buf[2: 2 + buf[1]])
            if not methods:
                raise _Malformed("greeting offers no method")
            if NO_ACCEPTABLE in methods:
                raise _Malformed("greeting offers method 255 (the server's 'no acceptable methods')")
            self._methods, self._step = methods, _NEGOTIATED
            return 2 + len(methods)
        if self._step == _NEGOTIATED and buf[0] != VERSION:
            # Which method the server chose is in its own bytes; the client's next message says it as well.
            if buf[0] == AUTH_VERSION and USERPASS in self._methods:
                return self._userpass()
            others = sorted(set(self._methods) - {NO_AUTH, USERPASS})
            if others:
                raise _Malformed(f"sub-negotiation of method {others[0]} is not followed",
                                 "unsupported_socks5_auth")
            raise _Malformed(f"message type {buf[0]} after the greeting")
        return self._request()

    def _userpass(self) -> int:
        # RFC 1929: VER ULEN UNAME PLEN PASSWD, skipped by its lengths: the name and password bytes are never
        # looked at, and are dropped with the message.
        buf = self._buf
        if len(buf) < 2:
            return 0
        if buf[1] == 0:
            raise _Malformed("username/password sub-negotiation without a username")
        if len(buf) < 3 + buf[1]:
            return 0
        end = 3 + buf[1] + buf[2 + buf[1]]
        if len(buf) < end:
            return 0
        self._step = _REQUEST
        return end

    def _request(self) -> int:
        buf = self._buf
        self._step = _REQUEST
        if buf[0] != VERSION:
            raise _Malformed(f"request version {buf[0]}")
        if len(buf) > 1 and buf[1] not in (CONNECT, BIND, UDP_ASSOCIATE):
            raise _Malformed(f"request command {buf[1]}")
        if len(buf) > 2 and buf[2] != 0:
            raise _Malformed("request reserved byte is not 0")
        if len(buf) < 5:
            return 0
        got = _address(buf, 3, buf[1])
        if got is None:
            return 0
        end, self.target = got
        return end


class Socks5Server(_Stream):
    """The server's half: the method chosen, the sub-negotiation's status, the reply code (RFC 1928 §6)."""

    __slots__ = ("method", "reply")

    def __init__(self) -> None:
        super().__init__()
        self.method: int | None = None
        self.reply: int | None = None          # REP: 0 succeeded, 1..8 the failures of §6

    @property
    def refused(self) -> bool:
        """The server accepted no method, or the credentials: no request follows."""
        return self._step < 0

    def feed(self, data: bytes) -> bool:
        """True once the reply (or a refusal) is complete."""
        return self._run(data)

    def _complete(self) -> bool:
        return self.reply is not None or self.refused

    def _message(self) -> int:
        buf = self._buf
        if self._step == _SELECTION:
            if buf[0] != VERSION:
                raise _Malformed(f"method selection version {buf[0]}")
            if len(buf) < 2:
                return 0
            self.method = buf[1]
            if self.method not in (NO_AUTH, USERPASS, NO_ACCEPTABLE):
                raise _Malformed(f"sub-negotiation of method {self.method} is not followed",
                                 "unsupported_socks5_auth")
            self._step = -1 if self.method == NO_ACCEPTABLE else _AUTH_STATUS if self.method else _REPLY
            return 2
        if self._step == _AUTH_STATUS:
            if len(buf) < 2:
                return 0
            if buf[0] != AUTH_VERSION:
                raise _Malformed(f"authentication status version {buf[0]}")
            self._step = _REPLY if buf[1] == 0 else -1
            return 2
        if buf[0] != VERSION:
            raise _Malformed(f"reply version {buf[0]}")
        if len(buf) < 5:
            return 0
        got = _address(buf, 3, 0)
        if got is None:
            return 0
        self.reply = buf[1]
        return got[0]


def sniff(prefix: bytes, on_port: bool) -> bool | None:
    """Is `prefix` (the first client bytes) a SOCKS5 greeting? None: not enough bytes to tell."""
    if prefix[0] != VERSION:
        return False
    if len(prefix) < 2:
        return None
    methods = prefix[2: 2 + prefix[1]]
    if prefix[1] == 0 or NO_ACCEPTABLE in methods:
        return False
    if on_port:
        return True
    if len(set(methods)) != len(methods) or not _REGISTERED_METHODS.issuperset(methods):
        return False
    after = prefix[2 + prefix[1]:]
    if len(methods) < prefix[1] or not after:
        return None
    if after[0] == AUTH_VERSION:                   # a username/password sub-negotiation: ULEN is not 0
        return (USERPASS in methods and after[1] > 0) if len(after) > 1 else None
    # A request: VER CMD RSV ATYP.
    expected = (lambda b: b == VERSION, lambda b: b in (CONNECT, BIND, UDP_ASSOCIATE), lambda b: b == 0,
                lambda b: b in (IPV4, DOMAIN, IPV6))
    if not all(ok(b) for ok, b in zip(expected, after, strict=False)):
        return False
    return True if len(after) >= len(expected) else None


class Socks5Handler:
    """The SOCKS5 handler of a flow (agent/protocols/handler.py): the client's handshake names the target;
    after a CONNECT the tunnelled bytes go to an inner handler chosen afresh by `tunnel` with the target's
    port for the port hints. Records keep the proxy's address (see agent/protocols/session.py)."""

    __slots__ = ("_client", "_host", "_inner", "_target_ip", "_tunnel", "ctx", "wants_client", "wants_server")

    def __init__(self, ctx: HandlerContext, tunnel: Callable[[int], Handler]) -> None:
        self.ctx = ctx
        self._tunnel = tunnel
        self._client: Socks5Client | None = Socks5Client()
        self._inner: Handler | None = None
        self._host: str | None = None
        self._target_ip: str | None = None
        self.wants_client, self.wants_server = True, False

    def feed(self, data: bytes, from_client: bool) -> None:
        if self._inner is not None:
            self._inner.feed(data, from_client)
            self._sync()
            return
        client = self._client
        if client is None or not from_client:
            return
        rest = client.feed(data)
        ctx = self.ctx
        if client.problem is not None:
            ctx.anomalies.add("socks5", *client.problem, flow_id=ctx.flow_id)
            self._stop()
            return
        if rest is None:
            return
        self._client = None
        target = client.target
        assert target is not None
        if target.rejected is not None:
            ctx.anomalies.add("socks5", "bad_host", f"domain {target.rejected} is no host name",
                              flow_id=ctx.flow_id)
        if target.command != CONNECT:
            # BIND (a peer connects in, after a second reply) and UDP ASSOCIATE (datagrams elsewhere) are not
            # followed: what this connection carries next is not the client's request to a server.
            self._stop()
            return
        self._host, self._target_ip = target.host, target.ip
        self._inner = self._tunnel(target.port)
        if rest:
            self._inner.feed(rest, True)
        self._sync()

    def gap(self, n: int, from_client: bool) -> None:
        if self._inner is not None:
            self._inner.gap(n, from_client)
            self._sync()
        elif from_client and self._client is not None:
            self.ctx.anomalies.add("socks5", "socks5_incomplete", f"{n} bytes missing in the handshake",
                                   flow_id=self.ctx.flow_id)
            self._stop()

    def close(self) -> None:
        if self._inner is not None:
            self._inner.close()
        elif self._client is not None:
            self.ctx.anomalies.add("socks5", "socks5_incomplete", f"handshake cut by the close, "
                                                                  f"{self._client.pending} bytes pending",
                                   flow_id=self.ctx.flow_id)
        self._stop()

    def summary(self) -> Summary:
        own = Summary(app="socks5", host=self._host, target_ip=self._target_ip)
        return own if self._inner is None else own.inside(self._inner.summary())

    def _stop(self) -> None:
        self._client = None
        self.wants_client = self.wants_server = False

    def _sync(self) -> None:
        inner = self._inner
        assert inner is not None
        self.wants_client, self.wants_server = inner.wants_client, inner.wants_server
