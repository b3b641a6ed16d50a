"""``[tunnel]``: the Public TSP server (``rtc64 tunnel serve``, and ``rtc64 serve`` when
enabled): keys, section and checks."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Network
from typing import TYPE_CHECKING

from rtc64.config.convert import (
    DetailError,
    Key,
    as_bool,
    as_listen,
    as_str,
    choice,
    float_range,
    int_range,
    strict_network,
)
from rtc64.config.turn import turn_runs
from rtc64.errors import ConfigError
from rtc64.net.endpoint import ListenSpec, Transport

if TYPE_CHECKING:
    from rtc64.config import Config

TUNNEL_BACKENDS = ("tun", "routed")


def _tunnel_listen(value: object) -> ListenSpec:
    spec = as_listen(value)
    if spec.transport is not Transport.UDP or spec.advertise is not None:
        raise DetailError("the tunnel listens on udp, without ;advertise=")
    if spec.port == 0:
        raise DetailError("a fixed port (clients are configured with it)")
    return spec


def _tunnel_prefix(value: object) -> IPv6Network | None:
    text = as_str(value).strip()
    if not text:
        return None
    network = strict_network(text)
    if not isinstance(network, IPv6Network) or network.prefixlen != 64:
        raise ValueError
    return network


def _ipv4_or_empty(value: object) -> IPv4Address | None:
    text = as_str(value).strip()
    return IPv4Address(text) if text else None


def _interface_name(value: object) -> str:
    name = as_str(value)
    if not 0 < len(name) < 16 or not name.replace("-", "").replace("_", "").isalnum():
        raise ValueError
    return name


TUNNEL_KEYS: tuple[Key, ...] = (
    Key(
        "tunnel.enabled",
        False,
        as_bool,
        "true or false",
        "run the tunnel server in rtc64 serve (rtc64 tunnel serve runs it regardless)",
    ),
    Key(
        "tunnel.listen",
        "udp:0.0.0.0:3653",
        _tunnel_listen,
        "udp:HOST:PORT, e.g. udp:0.0.0.0:3653",
        "the Public TSP port (UDP 3653 on IPv4)",
    ),
    Key(
        "tunnel.prefix",
        "",
        _tunnel_prefix,
        "an IPv6 /64 like 2001:db8:64::/64 (no host bits)",
        "the tunnel prefix: a client's address is PREFIX | IPv4 | port | 1",
    ),
    Key(
        "tunnel.backend",
        "tun",
        choice(*TUNNEL_BACKENDS),
        "tun or routed",
        "the IPv6 side: a TUN device, or the prefix routed to a sink link (packet tap + raw "
        "socket, no TUN)",
    ),
    Key(
        "tunnel.device",
        "tsp0",
        _interface_name,
        "an interface name of 1-15 letters, digits, - or _",
        "the TUN device (backend tun) or sink link (backend routed) rtc64 creates",
    ),
    Key(
        "tunnel.server_ipv4",
        "",
        _ipv4_or_empty,
        "an IPv4 address (empty: the listen address unless it is a wildcard)",
        "the server IPv4 address announced to clients",
    ),
    Key(
        "tunnel.lifetime",
        604800,
        int_range(1, 2**31 - 1),
        "seconds, 1..2147483647",
        "tunnel lifetime announced to clients",
    ),
    Key(
        "tunnel.keepalive",
        30,
        int_range(1, 3600),
        "seconds, 1..3600",
        "keepalive interval announced to clients (holds their NAT mapping)",
    ),
    Key(
        "tunnel.rate",
        500.0,
        float_range(0.001, 1e9),
        "packets per second, > 0",
        "rate limit per IPv4 source and per IPv4 destination",
    ),
    Key(
        "tunnel.burst",
        1000.0,
        float_range(1.0, 1e9),
        "packets, >= 1",
        "burst allowed above tunnel.rate",
    ),
    Key(
        "tunnel.icmp_rate",
        100.0,
        float_range(0.001, 1e9),
        "ICMPv6 errors per second, > 0",
        "rate limit of the ICMPv6 errors the server generates (all destinations together)",
    ),
)
_BY_PATH = {k.path: k for k in TUNNEL_KEYS}


@dataclass(frozen=True, slots=True)
class TunnelSection:
    enabled: bool
    listen: ListenSpec
    prefix: IPv6Network | None
    backend: str
    device: str
    server_ipv4: IPv4Address | None
    lifetime: int
    keepalive: int
    rate: float
    burst: float
    icmp_rate: float


def tunnel_runs(cfg: Config) -> bool:
    """True when ``rtc64 serve`` starts the tunnel server."""
    return cfg.tunnel.enabled and "tunnel" in cfg.general.services


def check_tunnel(cfg: Config) -> None:
    tunnel = cfg.tunnel
    if cfg.general.services == ("tunnel",) and not tunnel.enabled:
        raise ConfigError("tunnel.enabled", False, "true when general.services is only tunnel")
    if tunnel_runs(cfg) and tunnel.prefix is None:
        raise ConfigError("tunnel.prefix", "", _BY_PATH["tunnel.prefix"].expected)
    address = tunnel.server_ipv4
    if address is not None and (address.is_unspecified or address.is_multicast):
        raise ConfigError("tunnel.server_ipv4", str(address), "a unicast IPv4 address")
    if not tunnel_runs(cfg):
        return
    mine = (Transport.UDP, tunnel.listen.address, tunnel.listen.port)
    for key, specs, runs in (
        ("sip.listen", cfg.sip.listen, "sip" in cfg.general.services),
        ("turn.listen", cfg.turn.listen, turn_runs(cfg)),
    ):
        for spec in specs:
            if runs and (spec.transport, spec.address, spec.port) == mine:
                expected = f"an endpoint {key} does not use"
                raise ConfigError("tunnel.listen", str(tunnel.listen), expected)
