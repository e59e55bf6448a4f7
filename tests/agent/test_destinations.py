"""Destination country (bundled geo-IP) and name choice (SNI > Host > DNS)."""

from __future__ import annotations

import pytest

from agent.destinations import Destinations


@pytest.fixture(scope="module")
def dest() -> Destinations:
    return Destinations(["192.0.2.0/24", "203.0.113.7/32"])


@pytest.mark.parametrize(("ip", "country", "cross_border"), [
    ("8.8.8.8", "US", True),
    ("114.114.114.114", "CN", False),
    ("203.116.1.1", "SG", True),
    ("18.162.0.1", "HK", True),          # HK is its own code and outside the mainland
    ("10.1.2.3", None, True),            # private: unknown, and unknown counts as cross-border
    ("127.0.0.1", None, True),
    ("169.254.1.1", None, True),
    ("100.64.0.1", None, True),          # shared address space (CGN)
    ("224.0.0.251", None, True),
    ("not an ip", None, True),
    ("192.0.2.10", "CN", False),         # mainland_networks override (a documentation range here)
    ("203.0.113.7", "CN", False),
    ("::ffff:8.8.8.8", "US", True),
    ("fe80::1", None, True),
])
def test_country_and_cross_border_table(dest: Destinations, ip: str, country: str | None,
                                        cross_border: bool) -> None:
    assert dest.country(ip) == country
    assert dest.cross_border(dest.country(ip)) is cross_border


def test_ipv6_lookup_uses_the_bundled_ipv6_data(dest: Destinations) -> None:
    assert dest.country("2001:4860:4860::8888") in ("US", None)  # None only if the package lacks v6 data


def test_invalid_mainland_network_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="mainland_networks"):
        Destinations(["10.0.0.0/33"])


@pytest.mark.parametrize(("sni", "host", "ip", "expected"), [
    ("API.Partner.example", "other.example", "8.8.8.8", "api.partner.example"),
    (None, "Shop.Example.com:8080", "8.8.8.8", "shop.example.com"),
    ("", "shop.example.com.", "8.8.8.8", "shop.example.com"),
    (None, "[2001:db8::1]:8443", "9.9.9.9", "cdn.example"),      # an IP literal is not a name
    (None, "9.9.9.9", "9.9.9.9", "cdn.example"),
    (None, None, "9.9.9.9", "cdn.example"),
    (None, None, "1.1.1.1", None),
])
def test_server_name_prefers_sni_then_host_then_dns(sni: str | None, host: str | None, ip: str,
                                                    expected: str | None) -> None:
    dest = Destinations([])
    dest.observe_dns([("cdn.example", "9.9.9.9")])
    assert dest.server_name(sni, host, ip) == expected


def test_dns_cache_keeps_the_queried_name_of_a_cname_chain() -> None:
    dest = Destinations([])
    dest.observe_dns([("www.shop.example", "203.116.1.1"), ("edge.cdn.example", "203.116.1.1")])
    assert dest.dns_name("203.116.1.1") == "www.shop.example"


def test_dns_cache_normalises_ipv6_text() -> None:
    dest = Destinations([])
    dest.observe_dns([("v6.example", "2001:db8::1")])
    assert dest.dns_name("2001:0db8:0:0::1") == "v6.example"


def test_dns_cache_is_bounded_and_evicts_the_least_recently_used() -> None:
    dest = Destinations([], dns_cache_size=3)
    dest.observe_dns([("a", "1.0.0.1"), ("b", "1.0.0.2"), ("c", "1.0.0.3")])
    assert dest.dns_name("1.0.0.1") == "a"          # touch: now the most recent
    dest.observe_dns([("d", "1.0.0.4")])
    assert dest.dns_name("1.0.0.2") is None
    assert [dest.dns_name(f"1.0.0.{i}") for i in (1, 3, 4)] == ["a", "c", "d"]
