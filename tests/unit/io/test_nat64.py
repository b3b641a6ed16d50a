"""NAT64 discovery over a fake DNS backend (PREF64 listening is covered by interop tests)."""

from __future__ import annotations

import asyncio
from ipaddress import IPv4Address, IPv6Address, IPv6Network

import pytest

from rtc64 import cli
from rtc64.io import nat64
from rtc64.io.resolver import Resolver
from rtc64.net import rfc6052
from rtc64.net.pref64 import Nat64Prefix
from rtc64.net.rfc3263 import Answer, Query, RdType, Status

PREFIX = IPv6Network("fd64:64:64::/96")
WKA = [rfc6052.synthesize(IPv4Address(a), PREFIX) for a in ("192.0.0.170", "192.0.0.171")]
AAAA = Query("ipv4only.arpa", RdType.AAAA)


def resolver_with(answer: Answer) -> Resolver:
    async def backend(q: Query) -> Answer:
        return answer if q == AAAA else Answer()

    return Resolver(backend=backend, hosts={})


def test_rfc7050_with_dns64() -> None:
    dns64 = asyncio.run(nat64.rfc7050(resolver_with(Answer(tuple(WKA), ttl=300))))
    assert dns64.present and dns64.prefixes == (PREFIX,)
    assert "yes: ipv4only.arpa AAAA fd64:64:64::c000:aa" in dns64.describe()


@pytest.mark.parametrize(
    ("answer", "text"),
    [
        (Answer(ttl=30), "none: ipv4only.arpa has no AAAA record"),
        (Answer((), Status.TIMEOUT), "unknown: DNS timeout for ipv4only.arpa AAAA"),
        (Answer((IPv6Address("2001:db8::1"),), ttl=5), "odd: ipv4only.arpa AAAA 2001:db8::1"),
    ],
)
def test_rfc7050_without_dns64(answer: Answer, text: str) -> None:
    dns64 = asyncio.run(nat64.rfc7050(resolver_with(answer)))
    assert not dns64.present
    assert dns64.describe().startswith(text)


def test_discover_orders_config_then_rfc7050() -> None:
    wkp = IPv6Network("64:ff9b::/96")
    found = asyncio.run(
        nat64.discover(resolver_with(Answer(tuple(WKA), ttl=300)), listen_ra=0, configured=[wkp])
    )
    assert found == [Nat64Prefix(wkp, "config"), Nat64Prefix(PREFIX, "rfc7050", 300.0)]


def test_cli_prints_prefixes_sources_and_dns64(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def fake_report(resolver: Resolver, *, listen_ra: float, configured: object) -> object:
        assert listen_ra == 1.5
        dns64 = nat64.Dns64(Status.NOERROR, tuple(WKA), (PREFIX,), 300.0)
        return nat64.Discovery(
            (
                Nat64Prefix(PREFIX, "rfc7050", 300.0),
                Nat64Prefix(PREFIX, "pref64", 600.0, "eth1"),
            ),
            dns64,
            ("eth1",),
        )

    monkeypatch.setattr(nat64, "discover_report", fake_report)
    assert cli.main(["nat64", "discover", "--timeout", "1.5", "--dns-server", "[::1]:5353"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "fd64:64:64::/96  source=rfc7050  ttl=300s"
    assert out[1] == "fd64:64:64::/96  source=pref64  lifetime=600s  interface=eth1"
    assert out[2].startswith("DNS64: yes: ipv4only.arpa AAAA fd64:64:64::c000:aa")
    assert "solicited on eth1" in out[3]


def test_cli_rejects_a_bad_timeout(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["nat64", "discover", "--timeout", "-1"]) == 2
    assert "--timeout" in capsys.readouterr().err


def test_cli_dns_ttl_zero_is_not_withdrawn_but_pref64_lifetime_zero_is(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """RFC 7050 §5: TTL 0 is a valid answer that must not be cached; RFC 8781 §4: a PREF64
    lifetime of 0 withdraws the prefix."""
    other = IPv6Network("2001:db8:64::/96")

    async def fake_report(resolver: Resolver, *, listen_ra: float, configured: object) -> object:
        dns64 = nat64.Dns64(Status.NOERROR, tuple(WKA), (PREFIX,), 0.0)
        return nat64.Discovery(
            (Nat64Prefix(PREFIX, "rfc7050", 0.0), Nat64Prefix(other, "pref64", 0.0, "eth1")),
            dns64,
            ("eth1",),
        )

    monkeypatch.setattr(nat64, "discover_report", fake_report)
    assert cli.main(["nat64", "discover", "--timeout", "0"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "fd64:64:64::/96  source=rfc7050  ttl=0s (not cacheable)"
    assert out[1] == "2001:db8:64::/96  source=pref64  lifetime=0s (withdrawn)  interface=eth1"
    assert not Nat64Prefix(PREFIX, "rfc7050", 0.0).withdrawn
    assert Nat64Prefix(other, "pref64", 0.0).withdrawn
    assert not Nat64Prefix(other, "pref64", 8.0).withdrawn


def test_discovery_keeps_a_dns_answer_with_ttl_zero() -> None:
    found = asyncio.run(nat64.discover(resolver_with(Answer(tuple(WKA), ttl=0)), listen_ra=0))
    assert found == [Nat64Prefix(PREFIX, "rfc7050", 0.0)]
    assert not found[0].withdrawn
