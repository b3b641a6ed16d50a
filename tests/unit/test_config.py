"""Configuration: defaults, TOML file, overrides, and errors that name key and form."""

from __future__ import annotations

from dataclasses import fields
from ipaddress import ip_address, ip_network
from pathlib import Path

import pytest

from rtc64 import config
from rtc64.errors import ConfigError
from rtc64.net.endpoint import Transport


def test_defaults_need_no_file() -> None:
    cfg = config.load()
    listen = cfg.sip.listen
    assert {(s.transport, s.address.version, s.port) for s in listen} == {
        (Transport.UDP, 4, 5060),
        (Transport.UDP, 6, 5060),
        (Transport.TCP, 4, 5060),
        (Transport.TCP, 6, 5060),
    }
    assert cfg.media.ports == (30000, 40000)
    assert cfg.general.log_format == "text"
    assert cfg.source is None


def test_file_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "rtc64.toml"
    path.write_text(
        """
[general]
log_level = "debug"
[sip]
listen = ["udp:[2001:db8::1]:5070;advertise=sip.example.net:5070"]
domains = ["Example.NET."]
trusted_networks = ["2001:db8::/64", "10.0.0.0/8"]
[auth]
users = [{name = "300", password = "s3cret"}]
"""
    )
    cfg = config.load(path, {"general.log_level": "warning", "media.ports": "40001-40100"})
    assert cfg.general.log_level == "warning"
    (spec,) = cfg.sip.listen
    assert spec.address == ip_address("2001:db8::1")
    assert spec.port == 5070
    assert str(spec) == "udp:[2001:db8::1]:5070;advertise=sip.example.net:5070"
    assert cfg.sip.domains == ("example.net",)
    assert cfg.sip.trusted_networks == (
        ip_network("2001:db8::/64"),
        ip_network("10.0.0.0/8"),
    )
    assert cfg.media.ports == (40002, 40100), "RTP starts on an even port"
    described = dict(cfg.describe())
    assert described["auth.users"] == "300:***", "secrets never reach the log"


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("sip.listen", ["udp:2001:db8::1:5060"], "bad address"),
        ("sip.listen", ["sctp:[::]:5060"], "unknown transport"),
        ("sip.listen", ["udp:example.net:5060"], "must be an IP address"),
        ("media.ports", "5000", "LOW-HIGH"),
        ("media.ports", "40000-30000", "LOW-HIGH"),
        ("media.policy", "sometimes", "auto, always, never, nat64"),
        ("general.log_level", "loud", "debug, info"),
        ("sip.trusted_networks", ["2001:db8::/129"], "CIDR"),
        ("sip.max_transactions", 0, "1..10000000"),
        ("media.strict_source", "maybe", "true or false"),
        ("store.url", "mysql://x", "redis://"),
    ],
)
def test_bad_values_name_key_value_and_form(key: str, value: object, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        config.load(overrides={key: value})
    message = str(info.value)
    assert info.value.key == key
    assert key in message
    assert repr(value) in message
    assert fragment in message


def test_unknown_key_in_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "rtc64.toml"
    path.write_text('[sip]\nlisten_on = ["udp:[::]:5060"]\n')
    with pytest.raises(ConfigError) as info:
        config.load(path)
    assert info.value.key == "sip.listen_on"
    assert "sip.listen" in str(info.value), "the error lists the known keys of the section"


def test_bad_toml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[sip\n")
    with pytest.raises(ConfigError, match="valid TOML"):
        config.load(bad)
    with pytest.raises(ConfigError, match="existing TOML file"):
        config.load(tmp_path / "missing.toml")


def test_cross_key_consistency() -> None:
    with pytest.raises(ConfigError, match=r"registrar\.min_expires"):
        config.load(overrides={"registrar.min_expires": 9000})
    with pytest.raises(ConfigError, match="each endpoint listed once"):
        config.load(overrides={"sip.listen": ["udp:[::]:5060", "udp:[0::0]:5060"]})


def test_data_dir_default_and_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert config.load().data_dir == tmp_path / "rtc64"
    assert config.load(overrides={"general.data_dir": "/srv/x"}).data_dir == Path("/srv/x")


def test_happy_eyeballs_keys() -> None:
    cfg = config.load()
    assert cfg.dns.attempt_delay == 0.25, "RFC 8305 section 5 recommends 250 ms"
    assert cfg.dns.family_penalty == 600.0
    assert cfg.dns.happy_eyeballs is True
    cfg = config.load(
        overrides={
            "dns.family_penalty": "30",
            "dns.happy_eyeballs": "false",
            "dns.attempt_delay": 0.1,
        }
    )
    assert cfg.dns.family_penalty == 30.0
    assert cfg.dns.happy_eyeballs is False
    assert cfg.dns.attempt_delay == 0.1
    assert config.load(overrides={"dns.family_penalty": 0}).dns.family_penalty == 0.0


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("dns.family_penalty", -1.0, "0..86400"),
        ("dns.family_penalty", "soon", "0..86400"),
        ("dns.family_penalty", True, "0..86400"),
        ("dns.happy_eyeballs", "maybe", "true or false"),
        ("dns.happy_eyeballs", 2, "true or false"),
        ("dns.attempt_delay", 0.0, "0.01..10"),
    ],
)
def test_bad_happy_eyeballs_values(key: str, value: object, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        config.load(overrides={key: value})
    assert info.value.key == key
    assert fragment in str(info.value)


def test_every_key_has_exactly_one_typed_field() -> None:
    """KEYS and the section dataclasses describe the same settings, one to one."""
    declared = {f"{name}.{f.name}" for name, cls in config.SECTIONS.items() for f in fields(cls)}
    assert declared == {k.path for k in config.KEYS}


def test_sections_carry_the_typed_values() -> None:
    cfg = config.load(overrides={"media.ports": "40001-40100", "dns.happy_eyeballs": "no"})
    assert cfg.media.ports == (40002, 40100)
    assert cfg.dns.happy_eyeballs is False
    assert cfg.sip.listen == cfg.values["sip.listen"]
    assert cfg.ng.listen is None
