"""DNS fallbacks counted by ``NextHops`` (kind and the family used) for /metrics."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network

from rtc64.gateway.identity import Identity, Listener
from rtc64.gateway.proxy.nexthop import NextHops
from rtc64.gateway.stats import Fallbacks
from rtc64.net.address import Family, IPAddress
from rtc64.net.endpoint import ListenSpec, Transport
from rtc64.net.rfc3263 import Target, UriLike
from rtc64.sip.uri import SipUri, parse_uri

V4_ONLY = Listener(ListenSpec(Transport.UDP, IPv4Address("192.0.2.1"), 5060), 5060)
V6_ONLY = Listener(ListenSpec(Transport.UDP, IPv6Address("2001:db8::1"), 5060), 5060)
NAT64 = ip_network("64:ff9b::/96")


class Resolver:
    def __init__(self, addresses: Sequence[str]) -> None:
        self.found = [ip_address(a) for a in addresses]

    async def addresses(self, name: str) -> tuple[IPAddress, ...]:
        return tuple(self.found)

    async def targets(self, uri: UriLike) -> list[Target]:
        return [Target(Transport.UDP, a, 5060, "callee.example") for a in self.found]


def _first(
    listeners: list[Listener], addresses: Sequence[str], uri: str
) -> tuple[object, Fallbacks]:
    counted = Fallbacks()
    hops = NextHops(
        Resolver(addresses),
        Identity(listeners, source_for=lambda _: None),
        connected=lambda *_: False,
        nat64=NAT64 if listeners == [V6_ONLY] else None,
        fallbacks=counted,
    )
    target = parse_uri(uri.encode())
    assert isinstance(target, SipUri)
    return asyncio.run(hops.first(target)), counted


def test_the_first_named_family_has_no_listener() -> None:
    hop, counted = _first([V4_ONLY], ["2001:db8::9", "198.51.100.9"], "sip:bob@callee.example")
    assert hop.ip == ip_address("198.51.100.9")  # type: ignore[attr-defined]
    assert counted.dns == {("family", Family.INET): 1}


def test_an_ipv4_only_target_through_the_nat64() -> None:
    hop, counted = _first([V6_ONLY], ["198.51.100.9"], "sip:bob@callee.example")
    assert hop.ip == ip_address("64:ff9b::c633:6409")  # type: ignore[attr-defined]
    assert counted.dns == {("nat64", Family.INET6): 1}


def test_no_fallback_when_the_first_address_is_usable() -> None:
    _, counted = _first([V4_ONLY, V6_ONLY], ["2001:db8::9", "198.51.100.9"], "sip:b@callee.example")
    assert not counted.dns and not counted.happy_eyeballs
