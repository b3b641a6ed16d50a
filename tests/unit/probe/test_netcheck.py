"""Network verdicts from recorded facts (an IPv6-only host with and without NAT64 and CLAT)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, IPv6Network

from rtc64.probe.netcheck import NetFacts, checks
from rtc64.probe.verdict import Status

PREFIX = IPv6Network("64:ff9b::/96")


def by_id(facts: NetFacts) -> dict[str, tuple[Status, str]]:
    return {c.id: (c.status, c.reason) for c in checks(facts)}


def test_ipv6_only_without_dns64_fails_and_asks_for_nat64() -> None:
    got = by_id(NetFacts(v6_source=IPv6Address("2001:db8::2")))
    assert got["net.ipv6"] == (Status.PASS, "net.ipv6-default-route")
    assert got["net.ipv4"] == (Status.INFO, "net.ipv4-absent")
    assert got["net.dns64"] == (Status.FAIL, "net.no-dns64")
    assert got["net.pref64"] == (Status.WARN, "net.no-pref64")
    assert got["net.nat64"] == (Status.WARN, "net.no-nat64")


def test_ipv6_only_with_dns64_pref64_working_nat64_but_no_clat() -> None:
    facts = NetFacts(
        v6_source=IPv6Address("2001:db8::2"),
        dns64_prefixes=(PREFIX,),
        pref64=((PREFIX, 600.0, "eth0"),),
        nat64_target="192.0.2.1:443",
        nat64_result=("64:ff9b::c000:201", "ok", "TCP connected"),
    )
    got = by_id(facts)
    assert got["net.dns64"] == (Status.PASS, "net.dns64")
    assert got["net.pref64"] == (Status.PASS, "net.pref64")
    assert got["net.nat64"] == (Status.PASS, "net.nat64-ok")
    assert got["net.clat"] == (Status.WARN, "net.no-clat")


def test_a_clat_counts_as_no_native_ipv4() -> None:
    facts = NetFacts(
        v6_source=IPv6Address("2001:db8::2"),
        v4_source=IPv4Address("192.0.0.2"),
        addresses=(IPv4Address("192.0.0.2"),),
        dns64_prefixes=(PREFIX,),
        nat64_result=("64:ff9b::c000:201", "error", "timeout"),
    )
    assert facts.ipv6_only
    got = by_id(facts)
    assert got["net.clat"] == (Status.PASS, "net.clat")
    assert got["net.nat64"] == (Status.FAIL, "net.nat64-broken")


def test_dual_stack_host_needs_no_translator_but_its_private_source_leaks() -> None:
    facts = NetFacts(
        v6_source=IPv6Address("2001:db8::2"),
        v4_source=IPv4Address("192.168.1.20"),
        addresses=(IPv4Address("192.168.1.20"), IPv6Address("fd00::5")),
    )
    got = by_id(facts)
    assert got["net.dns64"] == (Status.INFO, "net.no-dns64")
    assert got["net.nat64"] == (Status.INFO, "net.no-nat64")
    assert got["net.leaks"] == (Status.WARN, "net.leak")


def test_no_ipv6_route_fails() -> None:
    got = by_id(NetFacts(v4_source=IPv4Address("203.0.113.5")))
    assert got["net.ipv6"] == (Status.FAIL, "net.no-ipv6-route")
    assert got["net.leaks"] == (Status.PASS, "net.no-leak")
