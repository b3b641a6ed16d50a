"""The TURN builders of ``rtc64.settings``: relay addresses from the host (never the
client's socket), external addresses, authentication required unless open, limits."""

from __future__ import annotations

from dataclasses import dataclass, replace
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network

import pytest

from rtc64.errors import ConfigError
from rtc64.net.address import Family, IPAddress
from rtc64.net.endpoint import ListenSpec, Transport, parse_listen
from rtc64.settings import (
    turn_credential_settings,
    turn_peer_policy,
    turn_relay_addresses,
    turn_service_settings,
)

HOST = frozenset(
    ip_address(a) for a in ("127.0.0.1", "::1", "192.0.2.10", "2001:db8::10", "fe80::1")
)


@dataclass(frozen=True)
class Turn:
    listen: tuple[ListenSpec, ...] = (parse_listen("udp:[::]:3478"),)
    relay_addresses: tuple[IPAddress, ...] = ()
    external_addresses: tuple[IPAddress, ...] = ()
    secrets: tuple[str, ...] = ()
    long_term: bool = True
    open: bool = False
    allow_peers: tuple[IPv4Network | IPv6Network, ...] = ()
    deny_peers: tuple[IPv4Network | IPv6Network, ...] = ()
    max_allocations: int = 100
    user_quota: int = 3
    max_permissions: int = 8
    max_channels: int = 9
    max_lifetime: int = 1200
    bandwidth: int = 50_000
    keep_client_family: bool | tuple[ListenSpec, ...] = False


def test_relay_addresses_derived_from_the_host_one_per_family() -> None:
    got = turn_relay_addresses(Turn(), HOST)
    assert sorted(got, key=str) == [ip_address("192.0.2.10"), ip_address("2001:db8::10")]
    only_loopback = turn_relay_addresses(Turn(), {ip_address("127.0.0.1"), ip_address("::1")})
    assert set(only_loopback) == {ip_address("127.0.0.1"), ip_address("::1")}
    # a specific listen address names its family's relay; the other family from the host
    lab = Turn(listen=(parse_listen("udp:127.0.0.1:3478"), parse_listen("tcp:[::]:3478")))
    assert turn_relay_addresses(lab, HOST) == (ip_address("127.0.0.1"), ip_address("2001:db8::10"))


def test_configured_relay_addresses_must_be_this_hosts() -> None:
    turn = Turn(relay_addresses=(ip_address("192.0.2.10"),))
    assert turn_relay_addresses(turn, HOST) == (ip_address("192.0.2.10"),)
    for bad in ("198.51.100.1", "0.0.0.0", "::"):
        with pytest.raises(ConfigError) as err:
            turn_relay_addresses(Turn(relay_addresses=(ip_address(bad),)), HOST)
        assert err.value.key == "turn.relay_addresses"


def test_service_settings_and_external_addresses() -> None:
    relays = (ip_address("192.0.2.10"), ip_address("2001:db8::10"))
    turn = Turn(external_addresses=(ip_address("203.0.113.5"),))
    settings = turn_service_settings(turn, realm="example.net", relays=relays, ports=(1000, 2000))
    core = settings.core
    assert core.realm == "example.net" and not core.open
    assert core.relay_families == frozenset((Family.INET, Family.INET6))
    assert core.external_addresses == ((ip_address("192.0.2.10"), ip_address("203.0.113.5")),)
    assert (core.max_allocations, core.user_quota, core.max_permissions) == (100, 3, 8)
    assert (core.max_channels, core.max_lifetime) == (9, 1200)
    assert settings.bandwidth == 50_000 and settings.ports == (1000, 2000)
    assert settings.relay_addresses == relays
    assert not core.keep_client_family and not core.keep_client_family_on
    kept = turn_service_settings(
        replace(turn, keep_client_family=(parse_listen("udp:[::]:3478"),)),
        realm="r",
        relays=relays,
        ports=(1, 2),
    )
    assert kept.core.keep_client_family_on == frozenset({(Transport.UDP, (ip_address("::"), 3478))})
    everywhere = replace(turn, keep_client_family=True)
    assert turn_service_settings(
        everywhere, realm="r", relays=relays, ports=(1, 2)
    ).core.keep_client_family
    short = turn_service_settings(
        replace(turn, max_lifetime=300), realm="r", relays=relays, ports=(1, 2)
    )
    assert short.core.default_lifetime == 300 == short.core.max_lifetime
    for bad in (
        (ip_address("203.0.113.5"), ip_address("203.0.113.6")),  # two IPv4
        (ip_address("2001:db8:1::1"),),  # no IPv6 relay
    ):
        with pytest.raises(ConfigError) as err:
            turn_service_settings(
                Turn(external_addresses=bad),
                realm="r",
                relays=relays[:1] if len(bad) == 1 else relays,
                ports=(1, 2),
            )
        assert err.value.key == "turn.external_addresses"


def test_refuses_to_run_without_authentication_unless_open() -> None:
    with pytest.raises(ConfigError) as err:
        turn_service_settings(
            Turn(long_term=False), realm="r", relays=(ip_address("127.0.0.1"),), ports=(1, 2)
        )
    assert err.value.key == "turn.long_term"
    assert "turn.open" in str(err.value)
    rest = turn_service_settings(
        Turn(long_term=False, secrets=("s3cret",)),
        realm="r",
        relays=(ip_address("127.0.0.1"),),
        ports=(1, 2),
    )
    assert not rest.core.open
    lab = turn_service_settings(
        Turn(long_term=False, open=True), realm="r", relays=(ip_address("127.0.0.1"),), ports=(1, 2)
    )
    assert lab.core.open


def test_credentials_and_peer_policy() -> None:
    creds = turn_credential_settings(Turn(secrets=("a", "b"), long_term=False), "example.net")
    assert creds.secrets == (b"a", b"b") and not creds.long_term and creds.realm == "example.net"
    policy = turn_peer_policy(
        Turn(allow_peers=(ip_network("127.0.0.0/8"),), deny_peers=(ip_network("198.51.100.0/25"),)),
        own=(ip_address("192.0.2.10"),),
        nat64=IPv6Network("2a00:1::/96"),
    )
    assert policy.allowed(ip_address("127.0.0.5"))
    assert not policy.allowed(ip_address("198.51.100.7"))
    assert not policy.allowed(ip_address("192.0.2.10"))  # the server itself
    assert not policy.allowed(ip_address("2a00:1::a00:1"))  # 10.0.0.1 behind the NAT64 prefix
    assert policy.allowed(ip_address("2a00:1::808:808"))
    plain = turn_peer_policy(Turn(), own=(), nat64=None)
    assert plain.allowed(ip_address("2a00:1::a00:1"))  # no NAT64 there: a global IPv6 peer
