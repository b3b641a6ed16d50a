"""The [turn] section and general.services: defaults, types, and errors naming key and form."""

from __future__ import annotations

from ipaddress import ip_address, ip_network
from pathlib import Path

import pytest

from rtc64 import config
from rtc64.errors import ConfigError
from rtc64.net.endpoint import Transport


def test_turn_defaults() -> None:
    cfg = config.load()
    turn = cfg.turn
    assert turn.enabled and config.turn_runs(cfg)
    assert {(s.transport, s.address.version, s.port) for s in turn.listen} == {
        (Transport.UDP, 4, 3478),
        (Transport.UDP, 6, 3478),
        (Transport.TCP, 4, 3478),
        (Transport.TCP, 6, 3478),
    }
    assert all(s.address.is_unspecified for s in turn.listen)
    assert turn.long_term and not turn.open and turn.secrets == ()
    assert (turn.user_quota, turn.max_allocations) == (10, 10000)
    assert (turn.max_permissions, turn.max_channels, turn.max_lifetime) == (32, 64, 3600)
    assert turn.bandwidth > 0
    assert turn.relay_addresses == turn.external_addresses == ()
    assert turn.allow_peers == turn.deny_peers == ()
    assert turn.keep_client_family is False
    assert cfg.general.services == ("sip", "media", "turn", "tunnel")


def test_turn_section_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "rtc64.toml"
    path.write_text(
        """
[general]
services = "turn"
[turn]
listen = ["udp:[::]:3478", "tls:[::]:443"]
relay_addresses = ["192.0.2.10", "2001:db8::10"]
external_addresses = ["198.51.100.10"]
secrets = ["new-secret", "old-secret"]
long_term = false
allow_peers = ["127.0.0.0/8", "::1"]
deny_peers = ["203.0.113.0/25"]
user_quota = 3
bandwidth = 0
keep_client_family = ["udp:[::]:3478"]
"""
    )
    cfg = config.load(path)
    turn = cfg.turn
    assert cfg.general.services == ("turn",)
    assert [str(s) for s in turn.listen] == ["udp:[::]:3478", "tls:[::]:443"]
    assert turn.relay_addresses == (ip_address("192.0.2.10"), ip_address("2001:db8::10"))
    assert turn.external_addresses == (ip_address("198.51.100.10"),)
    assert turn.secrets == ("new-secret", "old-secret")
    assert turn.allow_peers == (ip_network("127.0.0.0/8"), ip_network("::1/128"))
    assert turn.deny_peers == (ip_network("203.0.113.0/25"),)
    assert (turn.user_quota, turn.bandwidth) == (3, 0)
    assert isinstance(turn.keep_client_family, tuple)
    assert [str(s) for s in turn.keep_client_family] == ["udp:[::]:3478"]


def test_secrets_never_reach_the_log() -> None:
    cfg = config.load(overrides={"turn.secrets": ["hunter2-very-secret"]})
    described = dict(cfg.describe())
    assert "hunter2" not in described["turn.secrets"]
    assert "1 secret" in described["turn.secrets"]
    assert "hunter2" not in repr(cfg.turn)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("turn", ("turn",)),
        (["turn"], ("turn",)),
        (["sip,media"], ("sip", "media")),
        (["SIP", " turn "], ("sip", "turn")),
        (["turn", "turn"], ("turn",)),
    ],
)
def test_services(value: object, expected: tuple[str, ...]) -> None:
    assert config.load(overrides={"general.services": value}).general.services == expected


def test_keep_client_family_true_or_false() -> None:
    assert config.load(overrides={"turn.keep_client_family": True}).turn.keep_client_family is True
    assert config.load(overrides={"turn.keep_client_family": "yes"}).turn.keep_client_family is True
    off = config.load(overrides={"turn.keep_client_family": "false"})
    assert off.turn.keep_client_family is False


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("turn.listen", ["ws:[::]:80"], "udp, tcp or tls"),
        ("turn.listen", ["udp:[::]:3478;advertise=192.0.2.1"], "turn.external_addresses"),
        ("turn.listen", ["udp:2001:db8::1:3478"], "[v6]"),
        ("turn.relay_addresses", ["relay.example.net"], "IP addresses"),
        ("turn.deny_peers", ["203.0.113.5/25"], "did you mean 203.0.113.0/25"),
        ("turn.allow_peers", ["127.0.0.0/33"], "CIDR"),
        ("turn.secrets", [""], "non-empty"),
        ("turn.secrets", [" padded "], "spaces"),
        ("turn.max_lifetime", 300, "600..86400"),
        ("turn.max_channels", 5000, "1..4096"),
        ("turn.user_quota", 0, "1..1000000"),
        ("turn.bandwidth", -1, "bytes per second"),
        ("turn.open", "maybe", "true or false"),
        ("turn.keep_client_family", ["sctp:[::]:1"], "turn.listen endpoints"),
        ("general.services", ["sip", "web"], "unknown service 'web'"),
        ("general.services", [], "non-empty"),
    ],
)
def test_bad_turn_values_name_key_value_and_form(key: str, value: object, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        config.load(overrides={key: value})
    message = str(info.value)
    assert info.value.key == key
    assert key in message
    assert repr(value) in message
    assert fragment in message


@pytest.mark.parametrize(
    ("overrides", "key", "fragment"),
    [
        (
            {"turn.relay_addresses": ["192.0.2.1", "192.0.2.2"]},
            "turn.relay_addresses",
            "one address per family",
        ),
        (
            {"turn.external_addresses": ["2001:db8::1", "2001:db8::2"]},
            "turn.external_addresses",
            "one address per family",
        ),
        ({"turn.relay_addresses": ["::"]}, "turn.relay_addresses", "unicast"),
        ({"turn.external_addresses": ["127.0.0.1"]}, "turn.external_addresses", "peers reach"),
        (
            {"turn.listen": ["udp:[::]:3478", "udp:[0::0]:3478"]},
            "turn.listen",
            "each endpoint listed once",
        ),
        ({"turn.listen": ["udp:[::]:5060"]}, "turn.listen", "sip.listen does not use"),
        (
            {"turn.keep_client_family": ["udp:[::]:9999"]},
            "turn.keep_client_family",
            "endpoints of turn.listen",
        ),
        ({"turn.long_term": False}, "turn.long_term", "turn.open"),
        (
            {"general.services": ["turn"], "turn.enabled": False},
            "turn.enabled",
            "only turn",
        ),
        ({"turn.listen": []}, "turn.listen", "at least one"),
    ],
)
def test_turn_consistency(overrides: dict[str, object], key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        config.load(overrides=overrides)
    assert info.value.key == key
    assert fragment in str(info.value)


def test_authentication_method_or_open() -> None:
    # no long-term credentials: a REST secret or an open lab server will do
    assert config.load(overrides={"turn.long_term": False, "turn.secrets": ["s"]})
    assert config.load(overrides={"turn.long_term": False, "turn.open": True}).turn.open
    # TURN not running: no authentication method needed
    assert config.load(overrides={"turn.long_term": False, "general.services": ["sip"]})
    assert config.load(overrides={"turn.long_term": False, "turn.enabled": False})
    # the SIP port conflict only matters when both run
    assert config.load(overrides={"turn.listen": ["udp:[::]:5060"], "general.services": "turn"})
