"""Resolver: RFC 3263 targets over an injected DNS backend, caching, errors; no network."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from ipaddress import ip_address
from typing import Any

import dns.message
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import pytest

from rtc64.errors import ConfigError
from rtc64.io import resolver as resolver_mod
from rtc64.io.resolver import NEGATIVE_TTL, ResolveError, Resolver
from rtc64.net.endpoint import Transport
from rtc64.net.rfc3263 import Answer, Naptr, Query, RdType, Record, Srv, Status, Target
from rtc64.sip.uri import SipUri, parse_uri

V6 = ip_address("2001:db8::5")
V4 = ip_address("192.0.2.5")


def run_async(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test in a fresh event loop (no pytest plugin needed)."""

    @functools.wraps(fn)
    def wrapper(*args: object, **kwargs: object) -> None:
        asyncio.run(fn(*args, **kwargs))

    return wrapper


def q(name: str, rdtype: str) -> Query:
    return Query(name, RdType(rdtype))


@dataclass
class Backend:
    """A fake DNS: answers from a table (missing: NODATA), counts queries and concurrency."""

    table: Mapping[Query, Answer]
    delay: float = 0.01
    asked: list[Query] = field(default_factory=list)
    active: int = 0
    most_active: int = 0

    async def __call__(self, query: Query) -> Answer:
        self.asked.append(query)
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.active -= 1
        return self.table.get(query, Answer((), Status.NOERROR, 30))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Lowest:
    def randint(self, a: int, b: int) -> int:
        return a


def ok(*records: Record, ttl: float = 300) -> Answer:
    return Answer(records, Status.NOERROR, ttl)


def uri(text: str) -> SipUri:
    parsed = parse_uri(text.encode())
    assert isinstance(parsed, SipUri)
    return parsed


ZONE = {
    q("example.net", "NAPTR"): ok(
        Naptr(10, 10, "s", "SIP+D2T", "", "_sip._tcp.example.net"),
        Naptr(20, 10, "s", "SIP+D2U", "", "_sip._udp.example.net"),
    ),
    q("_sip._tcp.example.net", "SRV"): ok(Srv(0, 0, 5060, "pbx.example.net")),
    q("_sip._udp.example.net", "SRV"): ok(Srv(0, 0, 5060, "pbx.example.net")),
    q("pbx.example.net", "AAAA"): ok(V6, ttl=60),
    q("pbx.example.net", "A"): ok(V4, ttl=120),
}


def make(table: Mapping[Query, Answer] = ZONE, **kw: object) -> tuple[Resolver, Backend, Clock]:
    backend = Backend(table)
    clock = Clock()
    resolver = Resolver(backend=backend, clock=clock, rng=Lowest(), hosts={}, **kw)  # type: ignore[arg-type]
    return resolver, backend, clock


@run_async
async def test_targets_follow_rfc3263_and_query_in_parallel() -> None:
    resolver, backend, _ = make()
    targets = await resolver.targets(uri("sip:alice@example.net"))
    assert targets == [
        Target(Transport.TCP, V6, 5060, "pbx.example.net"),
        Target(Transport.TCP, V4, 5060, "pbx.example.net"),
        Target(Transport.UDP, V6, 5060, "pbx.example.net"),
        Target(Transport.UDP, V4, 5060, "pbx.example.net"),
    ]
    assert backend.asked[0] == q("example.net", "NAPTR")
    assert backend.most_active == 2  # SRV pair, then AAAA + A together
    assert len(backend.asked) == 5


@run_async
async def test_answers_are_cached_for_their_ttl() -> None:
    resolver, backend, clock = make()
    await resolver.targets(uri("sip:example.net"))
    await resolver.targets(uri("sip:example.net"))
    assert len(backend.asked) == 5
    clock.now += 61  # the AAAA (TTL 60) expired, nothing else did
    await resolver.targets(uri("sip:example.net"))
    assert backend.asked[5:] == [q("pbx.example.net", "AAAA")]


@run_async
async def test_negative_answers_are_cached() -> None:
    table = {q("gone.example", "NAPTR"): Answer((), Status.NXDOMAIN, 15)}
    resolver, backend, clock = make(table)
    for _ in range(2):
        with pytest.raises(ResolveError) as info:
            await resolver.targets(uri("sip:gone.example"))
        assert (info.value.status, info.value.reason) == (
            404,
            "Not Found: gone.example does not exist",
        )
    assert len(backend.asked) == 1
    clock.now += 16
    with pytest.raises(ResolveError):
        await resolver.targets(uri("sip:gone.example"))
    assert len(backend.asked) == 2


@run_async
async def test_nodata_without_soa_ttl_uses_the_default_negative_ttl() -> None:
    resolver, backend, clock = make({q("x.example", "A"): Answer((), Status.NOERROR, 0)})
    await resolver.query(q("x.example", "A"))
    clock.now += NEGATIVE_TTL - 1
    await resolver.query(q("x.example", "A"))
    assert len(backend.asked) == 1


@run_async
async def test_timeout_is_503_naming_the_query_and_cached_briefly() -> None:
    table = {q("_sip._udp.example.org", "SRV"): Answer((), Status.TIMEOUT)}
    resolver, backend, clock = make(table, supported=(Transport.UDP,), failure_ttl=5.0)
    with pytest.raises(ResolveError) as info:
        await resolver.targets(uri("sip:example.org"))
    assert info.value.status == 503
    assert info.value.reason == "Service Unavailable: DNS timeout for _sip._udp.example.org SRV"
    assert str(info.value).startswith("503 Service Unavailable")
    asked = len(backend.asked)
    with pytest.raises(ResolveError):
        await resolver.targets(uri("sip:example.org"))
    assert len(backend.asked) == asked  # served from the failure cache
    clock.now += 6
    with pytest.raises(ResolveError):
        await resolver.targets(uri("sip:example.org"))
    assert len(backend.asked) > asked
    assert resolver.failures == 3


@run_async
async def test_servfail_is_503() -> None:
    table = {q("example.org", "NAPTR"): Answer((), Status.SERVFAIL)}
    resolver, _, _ = make(table)
    with pytest.raises(ResolveError) as info:
        await resolver.targets(uri("sip:example.org"))
    assert info.value.reason == (
        "Service Unavailable: DNS server failure (SERVFAIL) for example.org NAPTR"
    )


@run_async
async def test_concurrent_identical_queries_are_shared() -> None:
    resolver, backend, _ = make()
    await asyncio.gather(*(resolver.targets(uri("sip:example.net")) for _ in range(5)))
    assert len(backend.asked) == 5


@run_async
async def test_names_in_hosts_never_reach_dns() -> None:
    backend = Backend({})
    resolver = Resolver(backend=backend, hosts={"localhost": (ip_address("::1"),)})
    targets = await resolver.targets(uri("sip:localhost"))
    assert targets == [Target(Transport.UDP, ip_address("::1"), 5060, "localhost")]
    assert backend.asked == []


@run_async
async def test_addresses_keeps_working() -> None:
    resolver, backend, _ = make()
    assert await resolver.addresses("192.0.2.1") == (ip_address("192.0.2.1"),)
    assert await resolver.addresses("PBX.example.net.") == (V6, V4)
    assert set(backend.asked) == {q("pbx.example.net", "AAAA"), q("pbx.example.net", "A")}
    with pytest.raises(ResolveError) as info:
        await resolver.addresses("none.example.net")
    assert info.value.status == 404
    assert "has no A or AAAA record" in info.value.reason


@run_async
async def test_addresses_failure_is_503() -> None:
    table = {q("slow.example", t): Answer((), Status.TIMEOUT) for t in ("A", "AAAA")}
    resolver, _, _ = make(table)
    with pytest.raises(ResolveError) as info:
        await resolver.addresses("slow.example")
    assert info.value.status == 503
    assert "DNS timeout for slow.example" in info.value.reason


@pytest.mark.parametrize(
    ("servers", "nameservers", "port"),
    [
        (["192.0.2.53"], ["192.0.2.53"], 53),
        (["[2001:db8::53]:5353", "192.0.2.53:5353"], ["2001:db8::53", "192.0.2.53"], 5353),
    ],
)
def test_configured_servers(servers: list[str], nameservers: list[str], port: int) -> None:
    resolver = Resolver(servers)
    assert resolver._dns is not None
    assert resolver._dns.nameservers == nameservers
    assert resolver._dns.port == port


@pytest.mark.parametrize("servers", [["dns.example"], ["2001:db8::53"], ["1.2.3.4", "[::1]:54"]])
def test_bad_servers_are_config_errors(servers: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        Resolver(servers)
    assert info.value.key == "dns.servers"


def test_dnspython_rdata_become_records() -> None:
    def rd(rdtype: str, text: str) -> object:
        return dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.from_text(rdtype), text)

    assert resolver_mod._record(rd("A", "192.0.2.1")) == ip_address("192.0.2.1")
    assert resolver_mod._record(rd("AAAA", "2001:db8::1")) == ip_address("2001:db8::1")
    assert resolver_mod._record(rd("SRV", "1 2 5060 PBX.Example.net.")) == Srv(
        1, 2, 5060, "pbx.example.net"
    )
    assert resolver_mod._record(rd("SRV", "0 0 0 .")) == Srv(0, 0, 0, ".")
    assert resolver_mod._record(
        rd("NAPTR", '50 50 "s" "SIPS+D2T" "" _sips._tcp.example.com.')
    ) == Naptr(50, 50, "s", "SIPS+D2T", "", "_sips._tcp.example.com")
    assert resolver_mod._record(rd("TXT", '"x"')) is None


def test_negative_ttl_from_soa() -> None:
    response = dns.message.from_text(
        "id 1\nopcode QUERY\nrcode NXDOMAIN\nflags QR AA\n;QUESTION\nx.example. IN A\n"
        ";AUTHORITY\nexample. 900 IN SOA ns.example. h.example. 1 2 3 4 120\n"
    )
    assert resolver_mod._negative_ttl({"x": response}) == 120.0
    assert resolver_mod._negative_ttl({}) == NEGATIVE_TTL
