# Rules: ``rtc64 tunnel serve`` and ``rtc64 tunnel connect``. Server flags override the
# ``[tunnel]`` keys of --config (the configuration module validates both: cli.py hands
# in the loader, a service never imports the configuration); client flags are validated
# here. A wrong value raises ConfigError naming the flag (and key), the value and the
# expected form (exit 2, no traceback); OSError at start (no /dev/net/tun, port in use)
# is one line.
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


#: ``tunnel serve`` flags and the ``[tunnel]`` keys they override (flags win over --config)
SERVE_FLAGS: tuple[tuple[str, str, str], ...] = (
    ("--listen", "tunnel.listen", f"udp:HOST:PORT (udp:0.0.0.0:{TSP_PORT})"),
    ("--prefix", "tunnel.prefix", "the /64 tunnel prefix"),
    ("--backend", "tunnel.backend", "tun (a TUN device, default) or routed (no TUN)"),
    ("--tun", "tunnel.device", "TUN device or sink link name (tsp0)"),
    ("--server-ipv4", "tunnel.server_ipv4", "IPv4 address announced to clients"),
    ("--keepalive", "tunnel.keepalive", "keepalive seconds (30)"),
    ("--lifetime", "tunnel.lifetime", "tunnel lifetime seconds (604800)"),
    ("--rate", "tunnel.rate", "packets/s per IPv4 source and destination (500)"),
    ("--burst", "tunnel.burst", "burst per IPv4 source and destination (1000)"),
    ("--icmp-rate", "tunnel.icmp_rate", "ICMPv6 errors/s the server sends (100)"),
)
_LOG_FLAGS = (("--log-level", "general.log_level"), ("--log-format", "general.log_format"))

ServerConfig = tuple[ServerSettings, service.ServeOptions]
#: builds the server's settings from the parsed flags (and ``--config``); given by cli.py
ServerLoader = Callable[[argparse.Namespace, dict[str, object]], ServerConfig]


def add_parser(
    add_command: Callable[..., argparse.ArgumentParser],
    subcommands: Callable[
        [argparse.ArgumentParser, str, str], Callable[..., argparse.ArgumentParser]
    ],
    load: ServerLoader,
) -> None:
    """Register ``tunnel serve`` and ``tunnel connect`` (``subcommands`` gives each the
    global options; ``load`` turns ``tunnel serve``'s overrides into its settings)."""
    tunnel = add_command(
        "tunnel", help="stateless IPv6-over-UDP/IPv4 tunnel (Public TSP profile, RFC 5572)"
    )
    sub = subcommands(tunnel, "tunnel_command", "ACTION")
    serve = sub(
        "serve",
        help="run the tunnel server",
        description="Answers the Public TSP exchange on UDP 3653 and forwards bare IPv6 "
        "packets between the tunnel and the IPv6 side (a TUN device, or with --backend "
        "routed the prefix routed to a sink link, no TUN). No per-client state: a client's "
        "address is PREFIX | IPv4 | port | local part. Settings come from the [tunnel] "
        "section of --config; flags override it.",
    )
    for flag, key, text in SERVE_FLAGS:
        metavar = flag[2:].upper().replace("-", "_")
        serve.add_argument(flag, dest=key, metavar=metavar, default=argparse.SUPPRESS, help=text)
    serve.add_argument(
        "--stats", type=Path, metavar="FILE", help="write counters as JSON to FILE every second"
    )
    serve.set_defaults(handler=lambda args: _serve(args, load))
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


def _tun_name(name: str) -> str:
    if not 0 < len(name) < 16 or not name.replace("-", "").replace("_", "").isalnum():
        raise ConfigError("--tun", name, "an interface name of 1-15 letters/digits")
    return name


def overrides(args: argparse.Namespace) -> dict[str, object]:
    """The configuration keys ``tunnel serve``'s flags set."""
    values = {key: getattr(args, key) for _, key, _ in SERVE_FLAGS if hasattr(args, key)}
    for flag, key in _LOG_FLAGS:
        value = getattr(args, flag[2:].replace("-", "_"), None)
        if value is not None:
            values[key] = value
    return values


def flag_error(exc: ConfigError, given: dict[str, object]) -> ConfigError:
    """``exc`` naming the flag too when the bad value came from one."""
    for flag, key in (*((f, k) for f, k, _ in SERVE_FLAGS), *_LOG_FLAGS):
        if key == exc.key and key in given:
            return ConfigError(f"{flag} ({key})", exc.value, exc.expected)
    return exc


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


def _serve(args: argparse.Namespace, load: ServerLoader) -> int:
    given = overrides(args)
    try:
        settings, options = load(args, given)
    except ConfigError as exc:
        raise flag_error(exc, given) from None
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
