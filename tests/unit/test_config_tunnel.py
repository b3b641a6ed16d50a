"""The [tunnel] section: defaults, errors naming key and form, ``tunnel serve --config``
(flags override the file) and ``rtc64 serve`` running the tunnel when enabled."""

from __future__ import annotations

import argparse
from ipaddress import IPv4Address, IPv6Network, ip_address
from pathlib import Path

import pytest

from rtc64 import cli, config, settings
from rtc64.errors import ConfigError
from rtc64.tunnel import command


def test_tunnel_defaults() -> None:
    cfg = config.load()
    tunnel = cfg.tunnel
    assert not tunnel.enabled and not config.tunnel_runs(cfg)
    assert (str(tunnel.listen), tunnel.prefix, tunnel.backend) == ("udp:0.0.0.0:3653", None, "tun")
    assert (tunnel.device, tunnel.server_ipv4) == ("tsp0", None)
    assert (tunnel.lifetime, tunnel.keepalive) == (604800, 30)
    assert (tunnel.rate, tunnel.burst, tunnel.icmp_rate) == (500.0, 1000.0, 100.0)
    assert "tunnel" in cfg.general.services


def test_file_values_are_typed(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        '[tunnel]\nenabled = true\nprefix = "2001:db8:64::/64"\nbackend = "ROUTED"\n'
        'listen = "udp:[::]:13653"\nserver_ipv4 = "192.0.2.7"\nrate = 10\nburst = 20\n'
    )
    cfg = config.load(path)
    tunnel = cfg.tunnel
    assert config.tunnel_runs(cfg)
    assert tunnel.prefix == IPv6Network("2001:db8:64::/64") and tunnel.backend == "routed"
    assert tunnel.listen.address == ip_address("::") and tunnel.listen.port == 13653
    core, options = settings.tunnel_settings(tunnel)
    assert core.server_ipv4 == IPv4Address("192.0.2.7") and (core.rate, core.burst) == (10, 20)
    assert (options.host, options.port, options.backend) == ("::", 13653, "routed")


def test_server_ipv4_defaults_to_the_listen_address() -> None:
    cfg = config.load(
        overrides={"tunnel.prefix": "fd00:64::/64", "tunnel.listen": "udp:198.51.100.1:3653"}
    )
    core, _ = settings.tunnel_settings(cfg.tunnel)
    assert core.server_ipv4 == IPv4Address("198.51.100.1")


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("tunnel.prefix", "fd00:64::/48", "/64"),
        ("tunnel.prefix", "fd00:64::1/64", "bits set after the prefix"),
        ("tunnel.prefix", "10.0.0.0/8", "/64"),
        ("tunnel.prefix", 64, "/64"),
        ("tunnel.listen", "tcp:0.0.0.0:3653", "udp"),
        ("tunnel.listen", "udp:0.0.0.0:0", "fixed port"),
        ("tunnel.listen", "udp:nowhere:3653", "udp:HOST:PORT"),
        ("tunnel.backend", "tap", "tun or routed"),
        ("tunnel.device", "a/b", "interface name"),
        ("tunnel.device", "x" * 16, "interface name"),
        ("tunnel.server_ipv4", "2001:db8::1", "IPv4"),
        ("tunnel.server_ipv4", "0.0.0.0", "unicast"),
        ("tunnel.keepalive", 0, "1..3600"),
        ("tunnel.lifetime", -5, "seconds"),
        ("tunnel.rate", 0, "> 0"),
        ("tunnel.burst", 0.5, ">= 1"),
        ("tunnel.icmp_rate", "fast", "> 0"),
        ("tunnel.enabled", "maybe", "true or false"),
    ],
)
def test_bad_values_name_key_value_and_form(key: str, value: object, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        config.load(overrides={key: value})
    assert info.value.key == key and fragment in str(info.value)


def test_enabled_needs_a_prefix_and_its_own_port() -> None:
    with pytest.raises(ConfigError) as info:
        config.load(overrides={"tunnel.enabled": True})
    assert info.value.key == "tunnel.prefix"
    with pytest.raises(ConfigError) as info:
        config.load(
            overrides={
                "tunnel.enabled": True,
                "tunnel.prefix": "fd00:64::/64",
                "tunnel.listen": "udp:0.0.0.0:5060",
            }
        )
    assert info.value.key == "tunnel.listen" and "sip.listen" in str(info.value)
    with pytest.raises(ConfigError) as info:
        config.load(overrides={"general.services": "tunnel"})
    assert info.value.key == "tunnel.enabled"
    # disabled, or not among the services: nothing runs, nothing is required
    assert not config.tunnel_runs(config.load(overrides={"general.services": "sip,turn"}))


def test_unknown_tunnel_key_lists_the_known_ones(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[tunnel]\nprefx = "fd00:64::/64"\n')
    with pytest.raises(ConfigError) as info:
        config.load(path)
    assert info.value.key == "tunnel.prefx" and "tunnel.prefix" in str(info.value)


def _serve_args(argv: list[str]) -> argparse.Namespace:
    return cli.build_parser().parse_args(["tunnel", "serve", *argv])


def test_tunnel_serve_reads_the_file_and_flags_win(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        '[tunnel]\nprefix = "fd00:64::/64"\nbackend = "routed"\nkeepalive = 9\n'
        'listen = "udp:127.0.0.1:13653"\n'
    )
    args = _serve_args(["--config", str(path), "--keepalive", "4", "--tun", "tspx"])
    core, options = cli._tunnel_server(args, command.overrides(args))
    assert core.prefix == IPv6Network("fd00:64::/64") and core.keepalive == 4
    assert (options.backend, options.tun, options.port) == ("routed", "tspx", 13653)


@pytest.mark.parametrize(
    ("body", "argv", "named"),
    [
        ('[tunnel]\nbackend = "tap"\n', [], "tunnel.backend"),
        ("[tunnel]\nkeepalive = 0\n", ["--prefix", "fd00:64::/64"], "tunnel.keepalive"),
        ("", [], "tunnel.prefix"),
        ("", ["--prefix", "fd00:64::/64", "--backend", "tap"], "--backend (tunnel.backend)"),
        ("", ["--prefix", "fd00:64::/64", "--icmp-rate", "0"], "--icmp-rate"),
    ],
)
def test_tunnel_serve_errors_name_key_or_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], body: str, argv: list[str], named: str
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(body)
    assert cli.main(["tunnel", "serve", "--config", str(path), *argv]) == 2
    err = capsys.readouterr().err
    assert named in err and "expected" in err and "Traceback" not in err
