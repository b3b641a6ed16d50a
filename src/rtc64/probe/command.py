"""``rtc64 probe TARGET...``: arguments, settings, the run, and what is printed.

Rules (issue 13): targets are ``sip:``/``sips:`` URIs (a bare domain is SIP), ``turn:``/
``turns:``/``stun:`` URIs, ``http(s)://`` URLs and ``network``. ``--json`` prints the
versioned document (docs/probe-schema.md) instead of the table; ``--html FILE`` writes
the self-contained page as well. Exit codes: 0 no failure (warnings allowed), 1 failures,
2 local error (bad arguments, a target that cannot be parsed), 3 a target unreachable.
Bad values name the flag, the value and the expected form.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from rtc64.errors import ConfigError
from rtc64.io import loop
from rtc64.io.resolver import Resolver
from rtc64.probe import report, runner, terminal
from rtc64.probe.context import Probe, ProbeSettings
from rtc64.probe.network import parse_target
from rtc64.probe.verdict import EXIT_LOCAL, Report, exit_code

EXAMPLES = """examples:
  rtc64 probe sip:example.net
  rtc64 probe --family 6 turn:turn.example.net --turn-secret S3CRET
  rtc64 probe https://meet.example.net network --html report.html
  rtc64 probe --json sips:example.net > report.json
"""


def add_parser(add_command: Callable[..., argparse.ArgumentParser]) -> None:
    p = add_command(
        "probe",
        help="IPv6 readiness report for SIP, TURN, web conferencing and the local network",
        description="Checks what works for IPv6-only, dual-stack and NAT64 clients and why "
        "not: DNS, SIP OPTIONS per family and transport, TURN allocations per relay family, "
        "web redirects and WebSocket endpoints, DNS64/PREF64/NAT64/CLAT on this network.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "targets",
        nargs="+",
        metavar="TARGET",
        help="sip:DOMAIN, sips:..., turn:HOST, turns:, stun:, https://URL or network",
    )
    p.add_argument("--json", action="store_true", help="print the JSON report (schema 1.0)")
    p.add_argument("--html", type=Path, metavar="FILE", help="also write an HTML report")
    p.add_argument(
        "--family",
        choices=("4", "6"),
        help="test one family only (6: act as an IPv6-only client on a dual-stack host)",
    )
    p.add_argument(
        "--dns-server",
        action="append",
        default=[],
        metavar="HOST[:PORT]",
        help="DNS server to use instead of the system's (repeatable)",
    )
    p.add_argument(
        "--transport",
        action="append",
        default=[],
        choices=("udp", "tcp", "tls", "ws", "wss"),
        help="SIP/TURN transports to test (repeatable; default udp, tcp, tls; ws/wss only "
        "when asked: WebSocket has no SRV)",
    )
    p.add_argument(
        "--ws-path",
        default="/",
        metavar="PATH",
        help="HTTP path of the SIP WebSocket endpoint (default /)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=3.0,
        metavar="SECONDS",
        help="per-check timeout (default 3)",
    )
    p.add_argument(
        "--deadline",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="bound on the whole run (default 60)",
    )
    p.add_argument(
        "--concurrency",
        type=int,
        default=8,
        metavar="N",
        help="network operations at once (default 8; at most 2 per server)",
    )
    p.add_argument("--user", help="SIP user to REGISTER as (sip:USER@DOMAIN) over each family")
    p.add_argument("--password", help="SIP digest password for --user")
    p.add_argument(
        "--call",
        metavar="URI",
        help="with --user: a test call to URI over each family; its SDP answer is checked",
    )
    p.add_argument("--turn-user", help="TURN long-term username")
    p.add_argument("--turn-password", help="TURN long-term password")
    p.add_argument("--turn-secret", help="TURN REST API shared secret (coturn static-auth-secret)")
    p.add_argument(
        "--ice-server",
        action="append",
        default=[],
        metavar="URI",
        help="a TURN/STUN URI the web app uses; probed as a target too (repeatable)",
    )
    p.add_argument("--cafile", type=Path, help="CA certificates (PEM) to trust for TLS")
    p.add_argument(
        "--nat64-target",
        metavar="IPV4:PORT",
        help="IPv4 TCP service to reach through NAT64 (default 1.1.1.1:443)",
    )
    p.add_argument(
        "--ra-listen",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="how long to listen for PREF64 router advertisements (default 2)",
    )
    p.add_argument(
        "--no-dhcp",
        dest="dhcp",
        action="store_false",
        help="network: do not send a DHCPv4 DISCOVER for option 108 (sent only as root)",
    )
    p.add_argument(
        "--browser",
        action="store_true",
        help="also load web targets in headless Chromium (Playwright)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="list every check")
    p.set_defaults(handler=run_command)


def settings_from(args: argparse.Namespace) -> ProbeSettings:
    if not 0 < args.timeout <= 60:
        raise ConfigError("--timeout", args.timeout, "seconds, more than 0 and at most 60")
    if not 0 < args.deadline <= 3600:
        raise ConfigError("--deadline", args.deadline, "seconds, more than 0 and at most 3600")
    if not 1 <= args.concurrency <= 64:
        raise ConfigError("--concurrency", args.concurrency, "1..64")
    if not 0 <= args.ra_listen <= 30:
        raise ConfigError("--ra-listen", args.ra_listen, "seconds, 0..30")
    if not args.ws_path.startswith("/"):
        raise ConfigError("--ws-path", args.ws_path, "an absolute path such as /ws")
    if (args.user is None) != (args.password is None):
        raise ConfigError("--user/--password", args.user or "***", "both given together")
    if args.call is not None and (args.user is None or not args.call.startswith(("sip:", "sips:"))):
        raise ConfigError("--call", args.call, "a sip: URI, with --user and --password")
    if args.turn_password is not None and not args.turn_user:
        raise ConfigError("--turn-password", "***", "given together with --turn-user")
    if args.cafile is not None and not args.cafile.is_file():
        raise ConfigError("--cafile", str(args.cafile), "a readable PEM file")
    for uri in args.ice_server:
        if runner.kind_of(uri) != "turn":
            raise ConfigError("--ice-server", uri, "a turn:, turns:, stun: or stuns: URI")
    if args.nat64_target is not None:
        try:
            parse_target(args.nat64_target)
        except ValueError:
            raise ConfigError("--nat64-target", args.nat64_target, "IPV4:PORT") from None
    return ProbeSettings(
        families=frozenset((int(args.family),)) if args.family else frozenset((4, 6)),
        dns_servers=tuple(args.dns_server),
        timeout=args.timeout,
        deadline=args.deadline,
        concurrency=args.concurrency,
        transports=tuple(dict.fromkeys(args.transport)),
        user=args.user,
        password=args.password,
        call=args.call,
        turn_user=args.turn_user,
        turn_password=args.turn_password,
        turn_secret=args.turn_secret,
        ice_servers=tuple(args.ice_server),
        cafile=str(args.cafile) if args.cafile else None,
        nat64_target=args.nat64_target,
        ra_listen=args.ra_listen,
        browser=args.browser,
        ws_path=args.ws_path,
        dhcp=args.dhcp,
    )


def run_command(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    resolver = Resolver(settings.dns_servers, timeout=settings.timeout)  # ConfigError: names it
    progress = terminal.Progress(quiet=args.json)

    async def main() -> Report:
        with progress:
            return await runner.run(
                args.targets, settings, on_check=progress, probe=Probe(settings, resolver)
            )

    result = loop.run_once(main)
    if args.json:
        print(report.dumps(result))
    else:
        terminal.show(result, sys.stdout, verbose=args.verbose)
    if args.html is not None:
        try:
            args.html.write_text(report.to_html(result), encoding="utf-8")
        except OSError as exc:
            print(f"rtc64: --html {args.html}: {exc.strerror}", file=sys.stderr)
            return EXIT_LOCAL
    return exit_code(result)
