"""Who a flow went to: the peer's name (TLS SNI > HTTP Host > DNS answer) and its country.

Countries come from geoip2fast's bundled data (offline, ISO 3166-1 alpha-2; HK, MO and TW are their own
codes and count as outside the mainland, DESIGN §3). The IPv6-capable file is used when the installed
package ships it (it holds the IPv4 ranges too); otherwise IPv6 peers get no country. Addresses that are not
globally routable (RFC 6890: private, loopback, link-local, reserved, documentation…) have no country;
`mainland_networks` (e.g. a domestic proxy) are CN whatever the geo data says.

DNS answers seen on the wire fill a bounded LRU cache from address to the name the client looked up.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MAINLAND = "CN"
_GEO_FILES = ("geoip2fast-ipv6.dat.gz", "geoip2fast.dat.gz")   # first one present wins
_geo: Any = None
_geo_v6 = False
_geo_lock = threading.Lock()


def _geoip() -> tuple[Any, bool]:
    """The process-wide GeoIP2Fast instance, loaded on first use (~0.1 s), and whether it knows IPv6."""
    global _geo, _geo_v6
    if _geo is None:
        with _geo_lock:
            if _geo is None:
                import geoip2fast
                from geoip2fast import GeoIP2Fast

                folder = Path(geoip2fast.__file__).parent
                name = next((f for f in _GEO_FILES if (folder / f).exists()), "")
                _geo_v6 = name == _GEO_FILES[0]
                _geo = GeoIP2Fast(geoip2fast_data_file=name) if name else GeoIP2Fast()
                log.info("geo-IP data loaded from %s (IPv6: %s)", name or "package default", _geo_v6)
    return _geo, _geo_v6


def _strip_port(host: str) -> str:
    if host.startswith("["):                     # [v6]:port
        return host[1:].split("]", 1)[0]
    if host.count(":") == 1:                     # name:port (a bare IPv6 literal has several colons)
        return host.split(":", 1)[0]
    return host


def _is_ip_literal(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


COUNTRY_CACHE = 65_536


class Destinations:
    """Country and name of a flow's destination (docs/internals.md, "destinations")."""

    def __init__(self, mainland_networks: list[str], dns_cache_size: int = 100_000) -> None:
        nets = []
        for cidr in mainland_networks:
            try:
                nets.append(ipaddress.ip_network(cidr, strict=False))
            except ValueError as exc:
                raise ValueError(f"mainland_networks: not a network: {cidr!r}") from exc
        self._mainland = tuple(nets)
        self._dns: OrderedDict[str, str] = OrderedDict()
        self._dns_size = max(1, dns_cache_size)
        self._countries: dict[str, str | None] = {}

    # -- country -----------------------------------------------------------------------------------------

    def country(self, ip: str) -> str | None:
        """ISO 3166-1 alpha-2 code of `ip`, "CN" for mainland_networks, None if unknown or not routable."""
        # Asked when a flow opens and when it ends, and a busy server sees thousands of flows: parsing the
        # address with ipaddress costs more than the geo lookup itself.
        try:
            return self._countries[ip]
        except KeyError:
            pass
        if len(self._countries) >= COUNTRY_CACHE:
            self._countries.clear()
        code = self._countries[ip] = self._lookup(ip)
        return code

    def _lookup(self, ip: str) -> str | None:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return None
        if addr.version == 6 and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        if any(addr in net for net in self._mainland if net.version == addr.version):
            return MAINLAND
        if not addr.is_global or addr.is_multicast:
            return None
        geo, has_v6 = _geoip()
        if addr.version == 6 and not has_v6:
            return None
        try:
            code = geo.lookup(str(addr)).country_code
        except Exception:  # the geo library's own errors must not stop a capture
            log.debug("geo-IP lookup failed for one address", exc_info=True)
            return None
        return code if isinstance(code, str) and len(code) == 2 and code.isalpha() else None

    @staticmethod
    def cross_border(country: str | None) -> bool:
        """True unless the destination is known to be in the mainland (unknown counts as cross-border)."""
        return country != MAINLAND

    # -- names -------------------------------------------------------------------------------------------

    def observe_dns(self, answers: Iterable[tuple[str, str]]) -> None:
        """Remember (name, address) pairs; within one response the first name for an address wins."""
        fresh: set[str] = set()
        for name, addr in answers:
            name = name.lower().rstrip(".")
            if not name or addr in fresh:
                continue
            fresh.add(addr)
            self._dns[addr] = name
            self._dns.move_to_end(addr)
        while len(self._dns) > self._dns_size:
            self._dns.popitem(last=False)

    def dns_name(self, ip: str) -> str | None:
        name = self._dns.get(ip)
        if name is None and ":" in ip:
            try:  # the same IPv6 address may be written differently
                ip = ipaddress.ip_address(ip).compressed
            except ValueError:
                return None
            name = self._dns.get(ip)
        if name is not None:
            self._dns.move_to_end(ip)
        return name

    def server_name(self, sni: str | None, host: str | None, ip: str) -> str | None:
        """TLS SNI, else the HTTP Host (port stripped, lower-case, not an IP literal), else a DNS name."""
        if sni:
            return sni.lower().rstrip(".")
        if host:
            name = _strip_port(host.strip()).lower().rstrip(".")
            if name and not _is_ip_literal(name):
                return name
        return self.dns_name(ip)
