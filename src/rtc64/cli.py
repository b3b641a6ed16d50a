"""Command line: ``rtc64 serve | relay | probe | turn | user | admin | ctl | nat64 | clat |
sip | tunnel``.

Each subcommand validates its arguments, turns configuration errors into one line on
stderr naming the key and the expected form (exit 2), and never shows a traceback for
bad input.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rtc64 import __version__, cli_store, cli_tools, config, ctl, logs, serve, settings
from rtc64.clat import command as clat_command
from rtc64.errors import ConfigError, Rtc64Error
from rtc64.io import interfaces, loop
from rtc64.io import nat64 as nat64_io
from rtc64.io.resolver import Resolver
from rtc64.net import rfc6052
from rtc64.net.address import IPAddress
from rtc64.probe import command as probe_command
from rtc64.relay import ngserver
from rtc64.relay.options import RelaySettings
from rtc64.relay.service import start_relay
from rtc64.tunnel import command as tunnel_command
from rtc64.turnserver.credentials import rest_credentials, turn_uris

if TYPE_CHECKING:
    import asyncio

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2

# (flag, config key, help): one row per command-line flag; a key whose value is a list (or
# a table) takes the flag repeatedly.
Flag = tuple[str, str, str]

_MEDIA_FLAGS: tuple[Flag, ...] = (
    ("--media-address", "media.addresses", "relay address of this host (repeatable)"),
    (
        "--media-advertise",
        "media.advertise",
        "public address SDP carries for a relay behind 1:1 NAT (one per family, repeatable)",
    ),
    ("--media-ports", "media.ports", "relay port range LOW-HIGH"),
    ("--media-workers", "media.workers", "relay worker processes"),
)

# The TURN server's flags (``rtc64 serve``; the listen/external ones also for
# ``rtc64 turn credentials``, whose URIs follow them).
_TURN_URI_FLAGS: tuple[Flag, ...] = (
    (
        "--turn-listen",
        "turn.listen",
        "TURN listen endpoint, e.g. udp:[::]:3478, tcp:0.0.0.0:3478, tls:[::]:5349 "
        "(repeatable; replaces turn.listen)",
    ),
    (
        "--turn-external-address",
        "turn.external_addresses",
        "public address of the relay behind 1:1 NAT (one per family, repeatable)",
    ),
)
TURN_FLAGS: tuple[Flag, ...] = (
    *_TURN_URI_FLAGS,
    (
        "--turn-relay-address",
        "turn.relay_addresses",
        "relay address of this host (one per family, repeatable)",
    ),
    (
        "--turn-secret",
        "turn.secrets",
        "TURN REST shared secret (repeatable for rotation; the first signs new credentials)",
    ),
    (
        "--turn-allow-peer",
        "turn.allow_peers",
        "peer network allowed despite the built-in denies, e.g. 127.0.0.0/8 (repeatable)",
    ),
    (
        "--turn-deny-peer",
        "turn.deny_peers",
        "peer network refused on top of the built-in denies, e.g. 203.0.113.0/25 (repeatable)",
    ),
    ("--turn-tls-cert", "turn.tls_cert", "PEM certificate of the TURN TLS listeners"),
    ("--turn-tls-key", "turn.tls_key", "PEM private key of --turn-tls-cert"),
)

# The settings people change most on the command line of ``rtc64 serve``.
SERVE_FLAGS: tuple[Flag, ...] = (
    ("--sip-listen", "sip.listen", "listen endpoint, e.g. udp:[::]:5060 (repeatable)"),
    ("--domain", "sip.domains", "local SIP domain (repeatable)"),
    ("--trusted-network", "sip.trusted_networks", "trusted source network (repeatable)"),
    ("--upstream", "sip.upstream", "core to forward non-local requests to"),
    ("--store", "store.url", "location store: sqlite, sqlite:///PATH, redis://H:P/DB"),
    *_MEDIA_FLAGS,
    ("--media-policy", "media.policy", "auto, always, never or nat64"),
    ("--sip-workers", "sip.workers", "SIP worker processes (0: one per core; 1: one process)"),
    ("--ng-listen", "ng.listen", "rtpengine ng control socket, e.g. udp:127.0.0.1:2223"),
    ("--dns-server", "dns.servers", "DNS server HOST[:PORT] (repeatable)"),
    ("--nat64-prefix", "nat64.prefix", "NAT64 prefix, e.g. 64:ff9b::/96"),
    (
        "--auth-algorithm",
        "auth.algorithms",
        "digest algorithm to offer: SHA-256 or MD5 (repeatable, in order; replaces "
        "auth.algorithms; MD5 alone for baresip 1.0)",
    ),
    (
        "--keepalive-interval",
        "keepalive.interval",
        "seconds between pinhole keepalives to each registered contact (default 25)",
    ),
    (
        "--keepalive-options-interval",
        "keepalive.options_interval",
        "seconds between OPTIONS liveness checks of each contact (default 120, 0: none)",
    ),
    ("--keepalive", "keepalive.enabled", "false: no keepalives to registered contacts"),
    *TURN_FLAGS,
    ("--hep-collector", "hep.collector", "HEPv3 collector, e.g. udp:[2001:db8::9]:9060"),
    ("--hep-capture-id", "hep.capture_id", "capture agent id in HEP packets"),
    (
        "--sip-trace",
        "sip.trace",
        "log whole SIP messages of this network or AOR, e.g. sip:alice@example.net (repeatable)",
    ),
    ("--drain-seconds", "general.drain_seconds", "SIGTERM: grace for calls in progress"),
    (
        "--web-listen",
        "web.listen",
        "console, REST API and /metrics address, e.g. [::1]:8064 (loopback unless "
        "credentials exist)",
    ),
    (
        "--only",
        "general.services",
        "run only these services: sip, media, turn, tunnel (comma-separated or repeated), "
        "e.g. --only turn",
    ),
)

# The same for ``rtc64 relay``: the media relay alone, driven over the ng protocol.
RELAY_FLAGS: tuple[Flag, ...] = (
    ("--ng-listen", "ng.listen", "ng control socket, e.g. udp:127.0.0.1:2223"),
    (
        "--interface",
        "ng.interfaces",
        "ng direction name and its family, NAME=ipv4|ipv6, e.g. internal=ipv4 (repeatable)",
    ),
    *_MEDIA_FLAGS,
    ("--media-timeout", "media.timeout", "seconds without media that end a call"),
    ("--strict-source", "media.strict_source", "true: drop media from other sources"),
    (
        "--trusted-network",
        "sip.trusted_networks",
        "network whose private SDP addresses are usable as written (repeatable)",
    ),
)


def _common(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """The global options. The top-level parser defines them with ``None`` defaults; every
    subcommand parser inherits them (``_GLOBALS``) with suppressed defaults, so a value
    given before or after any subcommand name is kept and an absent one overwrites nothing."""
    default = argparse.SUPPRESS if suppress else None
    parser.add_argument("--config", type=Path, default=default, help="TOML configuration file")
    parser.add_argument("--log-level", default=default, help="debug, info, warning or error")
    parser.add_argument("--log-format", default=default, help="text or json")
    parser.add_argument(
        "--data-dir",
        dest="general.data_dir",
        metavar="DIR",
        default=default,
        help="directory for the store and generated state",
    )


def _globals() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    _common(parent, suppress=True)
    return parent


_GLOBALS = _globals()


def _subcommands(
    parser: argparse.ArgumentParser,
    dest: str,
    metavar: str,
    shared: Sequence[argparse.ArgumentParser] = (),
) -> Callable[..., argparse.ArgumentParser]:
    """``add_parser`` of a new subcommand group: each subcommand gets the global options
    and the ``shared`` ones of its group (suppressed defaults, like ``_GLOBALS``)."""
    group = parser.add_subparsers(dest=dest, metavar=metavar, required=True)

    def add(
        name: str, *, parents: Sequence[argparse.ArgumentParser] = (), **kwargs: object
    ) -> argparse.ArgumentParser:
        every = [_GLOBALS, *shared, *parents]
        return group.add_parser(name, parents=every, **kwargs)  # type: ignore[arg-type]

    return add


_REPEATABLE = frozenset(k.path for k in config.KEYS if isinstance(k.default, list | dict))


def _add_flags(parser: argparse.ArgumentParser, flags: Sequence[Flag]) -> None:
    """One option per row of a flag table, stored under its configuration key."""
    for flag, key, text in flags:
        action = "append" if key in _REPEATABLE else "store"
        parser.add_argument(flag, dest=key, action=action, help=text)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and documentation)."""
    parser = argparse.ArgumentParser(
        prog="rtc64",
        description="A SIP gateway between IPv4 and IPv6: signalling and RTP media bridged "
        "between the families, and tools for engineers.",
    )
    parser.add_argument("--version", action="version", version=f"rtc64 {__version__}")
    _common(parser, suppress=False)
    add_command = _subcommands(parser, "command", "COMMAND")

    serve = add_command(
        "serve",
        help="run the gateway (SIP proxy/registrar, media relay, TURN server)",
        description="The IPv4/IPv6 SIP gateway: proxy and registrar on UDP/TCP/TLS/WebSocket, "
        "RTP/RTCP relay with SDP rewriting between the families, optional rtpengine ng "
        "control socket. Flags override the configuration file.",
    )
    _add_flags(serve, SERVE_FLAGS)
    serve.add_argument(
        "--turn-open",
        dest="turn.open",
        action="store_const",
        const=True,
        help="TURN without authentication: anyone may allocate (a lab only)",
    )
    serve.set_defaults(handler=_serve)

    turn = add_command("turn", help="TURN server tools")
    turn_sub = _subcommands(turn, "turn_command", "ACTION")
    creds = turn_sub(
        "credentials",
        help="TURN REST credentials as JSON {username, password, ttl, uris}",
        description="Credentials for an application server to hand to a WebRTC client: "
        "username EXPIRY:USER, password base64(HMAC-SHA1(secret, username)) as coturn's "
        "use-auth-secret checks them, and turn:/turns: URIs of the configured listeners.",
    )
    creds.add_argument("--user", required=True, help="the user name inside the credentials")
    creds.add_argument(
        "--ttl", type=int, default=86400, help="seconds the credentials stay valid (86400)"
    )
    creds.add_argument("--secret", help="shared secret (default: the first of turn.secrets)")
    _add_flags(creds, _TURN_URI_FLAGS)
    creds.set_defaults(handler=_turn_credentials)

    relay = add_command(
        "relay",
        help="run the media relay alone, driven over rtpengine's ng protocol",
        description="rtc64's RTP/RTCP relay with its rtpengine-compatible ng control socket "
        "and nothing else, for Kamailio's or OpenSIPS' rtpengine module; runs until "
        "SIGINT/SIGTERM. Flags override the configuration file (media.*, ng.*).",
    )
    _add_flags(relay, RELAY_FLAGS)
    relay.set_defaults(handler=_relay)

    probe_command.add_parser(add_command)
    clat_command.add_parser(add_command)
    tunnel_command.add_parser(add_command, _subcommands, _tunnel_server)

    nat64 = add_command("nat64", help="NAT64 prefix discovery and RFC 6052 address tools")
    nat_sub = _subcommands(nat64, "nat64_command", "ACTION")
    discover = nat_sub("discover", help="find NAT64 prefixes (RFC 7050, PREF64)")
    discover.add_argument(
        "--timeout", type=float, default=3.0, help="seconds to listen for PREF64 RAs (default 3)"
    )
    discover.add_argument(
        "--dns-server", dest="dns.servers", action="append", help="DNS server HOST[:PORT]"
    )
    discover.set_defaults(handler=_nat64_discover)
    synth = nat_sub("synth", help="IPv4 address -> IPv4-embedded IPv6 (RFC 6052)")
    synth.add_argument("ipv4")
    synth.add_argument("--prefix", default=str(rfc6052.WELL_KNOWN_PREFIX))
    synth.set_defaults(handler=cli_tools.nat64_synth)
    extract = nat_sub("extract", help="IPv4-embedded IPv6 -> IPv4 (RFC 6052)")
    extract.add_argument("ipv6")
    extract.add_argument("--prefix", default=str(rfc6052.WELL_KNOWN_PREFIX))
    extract.set_defaults(handler=cli_tools.nat64_extract)

    store = argparse.ArgumentParser(add_help=False)
    store.add_argument(
        "--store", dest="store.url", default=argparse.SUPPRESS, help="store URL (default: config)"
    )
    _user_domain(store, suppress=True)
    user = add_command("user", help="manage digest users in the store", parents=[store])
    user_sub = _subcommands(user, "user_command", "ACTION", shared=[store])
    add = user_sub("add", help="add or change a user (password from stdin if omitted)")
    add.add_argument("name")
    add.add_argument("--password", help="the password (prefer stdin: it stays out of ps)")
    add.add_argument(
        "--realm", help="digest realm (default: as serve resolves it: auth.realm, first domain)"
    )
    add.add_argument(
        "--aor",
        action="append",
        metavar="URI",
        help="another address-of-record the user may register, e.g. sip:sales@example.net "
        "(repeatable; replaces the stored list, which is kept when --aor is not given)",
    )
    add.set_defaults(handler=cli_store.user_add)
    lst = user_sub("list", help="list users with their realm and extra AORs")
    lst.set_defaults(handler=cli_store.user_list)
    rm = user_sub("remove", help="remove a user")
    rm.add_argument("name")
    rm.set_defaults(handler=cli_store.user_remove)

    admin = add_command("admin", help="the web console's admin account")
    admin_sub = _subcommands(admin, "admin_command", "ACTION")
    setpw = admin_sub(
        "set-password",
        help="set the console admin's password (read from stdin; stored scrypt-hashed in "
        "the data directory)",
    )
    setpw.add_argument("--user", default="admin", help="the admin user name (admin)")
    setpw.set_defaults(handler=cli_store.admin_set_password)

    ctl_parser = add_command(
        "ctl",
        help="talk to a running gateway over its local API",
        description="Query or steer a running rtc64 serve through its REST API (web.listen). "
        "Authenticates with web.token (or RTC64_TOKEN); an open loopback console needs none.",
    )
    ctl_sub = _subcommands(ctl_parser, "ctl_command", "ACTION")
    for name, text, arg in (
        ("registrations", "registered contacts (of one AOR when given)", "AOR"),
        ("calls", "calls in progress with their families", None),
        ("relay", "relay sessions: each call's streams, ports, packets, loss, jitter", None),
        ("turn", "TURN allocations", None),
        ("tunnel", "the tunnel server: packets per direction, drops by reason", None),
        ("unblock", "lift the failed-authentication blocks of a SOURCE or USER", "TARGET"),
        ("reload", "ask the gateway to reload its configuration (SIGHUP)", None),
    ):
        sub = ctl_sub(name, help=text)
        if arg == "AOR":
            sub.add_argument("target", nargs="?", metavar=arg)
        elif arg is not None:
            sub.add_argument("target", metavar="SOURCE|USER")
        sub.add_argument("--json", action="store_true", help="the API's JSON as is")
        sub.add_argument("--url", help="the API base URL (default: from web.listen)")
        sub.set_defaults(handler=_ctl)

    sip = add_command("sip", help="SIP tools for engineers")
    sip_sub = _subcommands(sip, "sip_command", "ACTION")
    check = sip_sub("check", help="lint SIP messages: valid or invalid with the reason")
    check.add_argument(
        "files",
        nargs="+",
        metavar="FILE",
        help="a file with one message ('-': standard input); a file without any CR is read "
        "with its LF line endings as CRLF (noted on stderr)",
    )
    check.add_argument("--show", action="store_true", help="print the parsed summary")
    check.set_defaults(handler=cli_tools.sip_check)
    return parser


Handler = Callable[[argparse.Namespace], int]


def _user_domain(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """``--domain`` for the user commands: the realm then resolves as in ``serve``."""
    parser.add_argument(
        "--domain",
        dest="sip.domains",
        action="append",
        default=argparse.SUPPRESS if suppress else None,
        help="local SIP domain, as given to serve (the realm defaults to the first)",
    )


def _overrides(args: argparse.Namespace) -> dict[str, object]:
    values: dict[str, object] = {}
    flags = (*SERVE_FLAGS, *RELAY_FLAGS)
    for key in dict.fromkeys((*(flag[1] for flag in flags), "general.data_dir")):
        value = getattr(args, key, None)
        if value is not None:
            values[key] = value
    if getattr(args, "turn.open", None):
        values["turn.open"] = True
    if args.log_level is not None:
        values["general.log_level"] = args.log_level
    if args.log_format is not None:
        values["general.log_format"] = args.log_format
    return values


def _load(args: argparse.Namespace) -> config.Config:
    cfg = config.load(args.config, _overrides(args))
    logs.setup(cfg.general.log_level, cfg.general.log_format)
    return cfg


def _tunnel_server(
    args: argparse.Namespace, overrides: dict[str, object]
) -> tunnel_command.ServerConfig:
    """``rtc64 tunnel serve``: the ``[tunnel]`` section of --config with the flags'
    ``overrides``, as the server's settings."""
    cfg = config.load(args.config, overrides)
    logs.setup(cfg.general.log_level, cfg.general.log_format)
    return settings.tunnel_settings(cfg.tunnel, stats=args.stats)


def _serve(args: argparse.Namespace) -> int:
    cfg = _load(args)
    log = logging.getLogger("rtc64")

    # picklable: SIP worker processes reload with it too
    reload = functools.partial(config.load, args.config, _overrides(args))

    async def main(stop: asyncio.Event) -> int:
        return await serve.serve(cfg, stop, log, reload)

    return loop.run(main)


def _relay(args: argparse.Namespace) -> int:
    cfg = _load(args)
    log = logging.getLogger("rtc64.ng")
    ng = settings.standalone_ng_settings(cfg.ng)
    host = interfaces.local_addresses()
    relay_settings = settings.standalone_relay_settings(cfg.media, cfg.sip.trusted_networks, host)

    async def main(stop: asyncio.Event) -> int:
        relay = start_relay(relay_settings, log=log.getChild("relay"))
        try:
            listener = await ngserver.start(ng, relay, log)
            log.info(
                "ng server ready on %s: relay on %s, ports %d-%d",
                dataclasses.replace(ng.listen, port=listener.port),
                ", ".join(_shown(relay_settings, a) for a in relay_settings.addresses),
                *relay_settings.ports,
            )
            try:
                await stop.wait()
            finally:
                await listener.stop()
        finally:
            relay.close()
        return EXIT_OK

    try:
        return loop.run(main)
    except OSError as exc:
        log.error("cannot start: %s", exc)
        return EXIT_FAIL


MAX_TTL = 31_536_000


def _turn_credentials(args: argparse.Namespace) -> int:
    cfg = _load(args)
    user: str = args.user
    if not user or ":" in user or any(c.isspace() for c in user):
        raise ConfigError("--user", user, "a user name without ':' or spaces")
    ttl: int = args.ttl
    if not 1 <= ttl <= MAX_TTL:
        raise ConfigError("--ttl", ttl, f"seconds, 1..{MAX_TTL}")
    secret = args.secret if args.secret is not None else next(iter(cfg.turn.secrets), None)
    if not secret:
        raise ConfigError(
            "--secret", secret or "", "a shared secret, or turn.secrets in the configuration"
        )
    cred = rest_credentials(secret, user, ttl, time.time())
    listeners = [(s.transport.value, s.address, s.port) for s in cfg.turn.listen]
    wildcard = any(s.address.is_unspecified for s in cfg.turn.listen)
    host = interfaces.local_addresses() if wildcard else frozenset()
    uris = turn_uris(listeners, cfg.turn.external_addresses, host)
    body = {"username": cred.username, "password": cred.password, "ttl": ttl, "uris": uris}
    print(json.dumps(body, indent=2))
    return EXIT_OK


def _shown(relay: RelaySettings, local: IPAddress) -> str:
    public = relay.sdp_address(local)
    return str(local) if public == local else f"{local} (advertised as {public})"


def _ctl(args: argparse.Namespace) -> int:
    cfg = cli_store.store_config(args)
    url = args.url or ctl.default_url(cfg.web.listen, cfg.web.tls)
    token = ctl.token_from_env() or cfg.web.token or None
    target = getattr(args, "target", None)
    try:
        return ctl.run(ctl.Api(url, token), args.ctl_command, target, as_json=args.json)
    except ctl.CtlError as exc:
        return ctl.fail(str(exc))


def _nat64_discover(args: argparse.Namespace) -> int:
    cfg = _load(args)
    timeout: float = args.timeout
    if not 0 <= timeout <= 600:
        raise ConfigError("--timeout", timeout, "seconds, 0..600")
    configured = [cli_tools.prefix_flag(cfg.nat64.prefix)] if cfg.nat64.prefix else []
    resolver = Resolver(cfg.dns.servers, timeout=max(timeout, 1.0))
    report = loop.run_once(
        lambda: nat64_io.discover_report(resolver, listen_ra=timeout, configured=configured)
    )
    for found in report.prefixes:
        line = f"{found.prefix}  source={found.source}"
        line += cli_tools.nat64_validity(found)
        if found.interface is not None:
            line += f"  interface={found.interface}"
        print(line)
    if not report.prefixes:
        print("no NAT64 prefix found")
    if report.dns64 is not None:
        print(f"DNS64: {report.dns64.describe()}")
    where = ", ".join(report.solicited) or "no interface (needs CAP_NET_RAW)"
    print(f"PREF64: listened {timeout:g}s for Router Advertisements; solicited on {where}")
    return EXIT_OK if report.prefixes else EXIT_FAIL


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rtc64`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except ConfigError as exc:
        print(f"rtc64: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Rtc64Error as exc:
        print(f"rtc64: {exc}", file=sys.stderr)
        return EXIT_FAIL
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
