# Rules: ``rtc64 tunnel serve`` and ``rtc64 tunnel connect``: flags are validated here
# and a wrong one raises ConfigError naming the flag, the value and the expected form
# (exit 2, no traceback); OSError at start (no /dev/net/tun, port in use) is one line.
"""The ``rtc64 tunnel`` subcommands."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Network
from pathlib import Path

from rtc64 import logs
from rtc64.errors import ConfigError
from rtc64.io import loop
from rtc64.tunnel import service
from rtc64.tunnel.server import ServerSettings
from rtc64.tunnel.tsp import TSP_PORT

log = logging.getLogger("rtc64.tunnel")


def add_parser(
    add_command: Callable[..., argparse.ArgumentParser],
    subcommands: Callable[
        [argparse.ArgumentParser, str, str], Callable[..., argparse.ArgumentParser]
    ],
) -> None:
    """Register ``tunnel serve`` and ``tunnel connect`` (``subcommands`` gives each the
    global options)."""
    tunnel = add_command(
        "tunnel", help="stateless IPv6-over-UDP/IPv4 tunnel (Public TSP profile, RFC 5572)"
    )
    sub = subcommands(tunnel, "tunnel_command", "ACTION")
    serve = sub(
        "serve",
        help="run the tunnel server",
        description="Answers the Public TSP exchange on UDP 3653 and forwards bare IPv6 "
        "packets between the tunnel and a TUN device carrying the /64 prefix. No per-client "
        "state: a client's address is PREFIX | IPv4 | port | local part.",
    )
    serve.add_argument("--listen", default=f"udp:0.0.0.0:{TSP_PORT}", help="udp:HOST:PORT")
    serve.add_argument("--prefix", required=True, help="the /64 tunnel prefix")
    serve.add_argument("--tun", default="tsp0", help="TUN device name (tsp0)")
    serve.add_argument("--server-ipv4", help="IPv4 address announced to clients")
    serve.add_argument("--keepalive", type=int, default=30, help="keepalive seconds (30)")
    serve.add_argument("--lifetime", type=int, default=604800, help="tunnel lifetime seconds")
    serve.add_argument("--rate", type=float, default=500.0, help="packets/s per IPv4 source")
    serve.add_argument("--burst", type=float, default=1000.0, help="burst per IPv4 source")
    serve.add_argument("--stats", type=Path, help="write counters as JSON to FILE every second")
    serve.set_defaults(handler=_serve)
    connect = sub(
        "connect",
        help="connect to a tunnel server: IPv6 through an IPv4-only network",
        description="Runs the exchange with SERVER, creates a TUN device with the assigned "
        "address and the default IPv6 route (or --route prefixes), keeps the NAT mapping "
        "alive, re-runs the exchange when the mapping changes, removes it all on exit.",
    )
    connect.add_argument("server", metavar="SERVER", help=f"IPv4[:PORT] (port {TSP_PORT})")
    connect.add_argument("--tun", default="tsp0", help="TUN device name (tsp0)")
    connect.add_argument(
        "--route", action="append", default=[], help="IPv6 prefix to route (default ::/0)"
    )
    connect.add_argument("--stats", type=Path, help="write counters as JSON to FILE")
    connect.set_defaults(handler=_connect)


def _listen(text: str) -> tuple[str, int]:
    scheme, _, rest = text.partition(":")
    host, _, port = rest.rpartition(":")
    host = host.strip("[]")
    if scheme != "udp" or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError("--listen", text, "udp:HOST:PORT, e.g. udp:0.0.0.0:3653")
    return host, int(port)


def _positive(flag: str, value: float) -> None:
    if not value > 0:
        raise ConfigError(flag, value, "a number > 0")


def _tun_name(name: str) -> str:
    if not 0 < len(name) < 16 or not name.replace("-", "").replace("_", "").isalnum():
        raise ConfigError("--tun", name, "an interface name of 1-15 letters/digits")
    return name


def settings_from(args: argparse.Namespace) -> tuple[ServerSettings, service.ServeOptions]:
    """Validated server settings from the parsed flags."""
    host, port = _listen(args.listen)
    try:
        prefix = IPv6Network(args.prefix)
    except ValueError:
        prefix = None
    if prefix is None or prefix.prefixlen != 64:
        raise ConfigError("--prefix", args.prefix, "an IPv6 /64 like 2001:db8:64::/64")
    if args.server_ipv4 is None:
        server_ipv4 = service.server_ipv4_for(host)
    else:
        try:
            server_ipv4 = IPv4Address(args.server_ipv4)
        except ValueError:
            raise ConfigError("--server-ipv4", args.server_ipv4, "an IPv4 address") from None
    for flag, value in (("--keepalive", args.keepalive), ("--lifetime", args.lifetime)):
        _positive(flag, value)
    _positive("--rate", args.rate)
    if args.burst < 1:
        raise ConfigError("--burst", args.burst, "a number >= 1")
    settings = ServerSettings(
        prefix, server_ipv4, args.lifetime, args.keepalive, rate=args.rate, burst=args.burst
    )
    return settings, service.ServeOptions(host, port, _tun_name(args.tun), args.stats)


def connect_options(args: argparse.Namespace) -> service.ConnectOptions:
    """Validated client options from the parsed flags."""
    host, _, port = args.server.partition(":")
    try:
        IPv4Address(host)
    except ValueError:
        raise ConfigError("SERVER", args.server, "IPv4[:PORT] like 192.0.2.1:3653") from None
    if port and (not port.isdigit() or not 0 < int(port) < 65536):
        raise ConfigError("SERVER", args.server, "IPv4[:PORT] with a port 1-65535")
    routes: list[IPv6Network] = []
    for text in args.route or ["::/0"]:
        try:
            routes.append(IPv6Network(text))
        except ValueError:
            raise ConfigError("--route", text, "an IPv6 prefix like 2001:db8::/32") from None
    return service.ConnectOptions(
        host, int(port or TSP_PORT), _tun_name(args.tun), tuple(routes), args.stats
    )


def _logging(args: argparse.Namespace) -> None:
    level = getattr(args, "log_level", None) or "info"
    fmt = getattr(args, "log_format", None) or "text"
    if level not in ("debug", "info", "warning", "error"):
        raise ConfigError("--log-level", level, "debug, info, warning or error")
    if fmt not in ("text", "json"):
        raise ConfigError("--log-format", fmt, "text or json")
    logs.setup(level, fmt)


def _serve(args: argparse.Namespace) -> int:
    settings, options = settings_from(args)
    _logging(args)
    try:
        return loop.run(lambda stop: service.serve(settings, options, stop))
    except OSError as exc:
        print(f"rtc64: tunnel serve: cannot start: {exc}", file=sys.stderr)
        return 1


def _connect(args: argparse.Namespace) -> int:
    options = connect_options(args)
    _logging(args)
    try:
        return loop.run(lambda stop: service.connect(options, stop))
    except OSError as exc:
        print(f"rtc64: tunnel connect: {exc}", file=sys.stderr)
        return 1
