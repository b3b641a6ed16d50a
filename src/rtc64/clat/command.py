"""``rtc64 clat run | status | cleanup``: argument parsing and the three handlers.

Rules: flag errors name the flag, the value and the expected form (``ConfigError``, exit 2);
``run`` needs root (namespaces, links); ``cleanup`` removes every ``rtc64-clat*`` namespace
and ``r64clat*`` link, whatever process made them; ``status`` reads the running daemon's
``status.json`` and exits 1 when no daemon runs or no link has a CLAT.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rtc64 import logs
from rtc64.errors import ConfigError, Rtc64Error
from rtc64.io import clat_engine, loop
from rtc64.io.resolver import Resolver
from rtc64.net import rfc6052

from .service import STATE_DIR, ClatService, ClatSettings, read_status

EXIT_OK, EXIT_FAIL = 0, 1
MTU_RANGE = (1260, 9000)
PKG = {"ip": "iproute2", "tayga": "tayga", "nft": "nftables"}
NS_HELP = "namespace names are PREFIX<slot> (default rtc64-clat)"


def add_parser(add_command: Callable[..., argparse.ArgumentParser]) -> None:
    p = add_command(
        "clat",
        help="CLAT (464XLAT) orchestrator: IPv4 for this host on IPv6-only networks",
        description="One translator (tayga) per uplink in its own network namespace, "
        "driven by netlink: PREF64, RFC 7050, IPv4 presence, link changes.",
    )
    sub = p.add_subparsers(dest="clat_command", metavar="ACTION", required=True)
    run = sub.add_parser("run", help="run the CLAT daemon (root)")
    run.add_argument(
        "--interface", action="append", default=[], metavar="IF", help="uplink (repeatable)"
    )
    run.add_argument("--prefix", help="NAT64 prefix to use when neither PREF64 nor DNS64 says")
    run.add_argument("--mtu", type=int, default=1260, help="IPv4 MTU of the CLAT (default 1260)")
    run.add_argument(
        "--dns-server", action="append", default=[], help="DNS server for RFC 7050 HOST[:PORT]"
    )
    run.add_argument("--no-dns64", action="store_true", help="do not ask RFC 7050")
    run.add_argument(
        "--no-dhcpv4",
        action="store_true",
        help="do not probe uplinks for DHCPv4 option 108 (RFC 8925; no lease is ever taken)",
    )
    run.add_argument("--state-dir", type=Path, default=STATE_DIR)
    run.add_argument("--netns-prefix", default=clat_engine.NS_PREFIX, help=NS_HELP)
    run.add_argument("--log-level", dest="clat_log_level", default="info")
    run.set_defaults(handler=_run)
    status = sub.add_parser("status", help="per link: state, prefix, addresses, counters")
    status.add_argument("--json", action="store_true")
    status.add_argument("--state-dir", type=Path, default=STATE_DIR)
    status.set_defaults(handler=_status)
    cleanup = sub.add_parser("cleanup", help="remove what a crashed daemon left")
    cleanup.add_argument("--netns-prefix", default=clat_engine.NS_PREFIX, help=NS_HELP)
    cleanup.add_argument("--state-dir", type=Path, default=STATE_DIR)
    cleanup.set_defaults(handler=_cleanup)


def _settings(args: argparse.Namespace) -> ClatSettings:
    prefix = None
    if args.prefix is not None:
        try:
            prefix = rfc6052.parse_prefix(args.prefix)
        except ValueError as exc:
            raise ConfigError("--prefix", args.prefix, f"an RFC 6052 prefix ({exc})") from None
    if not MTU_RANGE[0] <= args.mtu <= MTU_RANGE[1]:
        raise ConfigError("--mtu", args.mtu, f"an IPv4 MTU {MTU_RANGE[0]}..{MTU_RANGE[1]}")
    for name in args.interface:
        if not name or len(name) > 15 or "/" in name:
            raise ConfigError("--interface", name, "a Linux interface name (1-15 characters)")
    if not args.netns_prefix.replace("-", "").isalnum() or len(args.netns_prefix) > 40:
        raise ConfigError("--netns-prefix", args.netns_prefix, "letters, digits and '-'")
    return ClatSettings(
        ns_prefix=args.netns_prefix,
        interfaces=tuple(args.interface),
        prefix=prefix,
        mtu=args.mtu,
        state_dir=args.state_dir,
        dns_servers=tuple(args.dns_server),
        dhcpv4=not args.no_dhcpv4,
    )


def _run(args: argparse.Namespace) -> int:
    clat_settings = _settings(args)
    if os.geteuid() != 0:
        raise Rtc64Error("clat run needs root (network namespaces, links, addresses)")
    for tool in ("ip", "tayga", "nft"):
        if shutil.which(tool) is None:
            raise Rtc64Error(f"clat run needs {tool} on PATH (Debian: apt install {PKG[tool]})")
    logs.setup(args.clat_log_level, "text")
    log = logging.getLogger("rtc64.clat")
    resolver = None if args.no_dns64 else Resolver(clat_settings.dns_servers, timeout=2.0)
    service = ClatService(clat_settings, clat_engine.Tayga(), log, resolver)

    async def main(stop: asyncio.Event) -> int:
        await service.run(stop)
        return EXIT_OK

    return loop.run(main)


def _status(args: argparse.Namespace) -> int:
    status = read_status(args.state_dir)
    if status is None:
        if args.json:
            print(json.dumps({"running": False, "links": []}))
        else:
            print(f"no CLAT daemon running (no live status in {args.state_dir})")
        return EXIT_FAIL
    links: list[dict[str, Any]] = status.get("links", [])
    for link in links:  # live counters: the status file is written on changes only
        if isinstance(link.get("host_link"), str):
            counters = clat_engine.link_counters(link["host_link"])
            if counters is not None:
                link["counters"] = dataclasses.asdict(counters)
    if args.json:
        print(json.dumps({"running": True, **status}, indent=2))
    else:
        for link in links:
            print(_line(link))
    return EXIT_OK if any(link.get("state") == "running" for link in links) else EXIT_FAIL


def _line(link: dict[str, Any]) -> str:
    head = f"{link.get('interface')}: {link.get('state')}"
    dhcp = f"; DHCPv4: {link['dhcpv4']}" if link.get("dhcpv4") else ""
    if link.get("state") != "running":
        detail = f" ({link['detail']})" if link.get("detail") else ""
        return f"{head}: {link.get('reason')}{detail}{dhcp}"
    counters = link.get("counters") or {}
    return (
        f"{head}: IPv4 {link['ipv4']} -> {link['clat_ipv6']} ({link.get('policy')}) via "
        f"{link['prefix']} ({link['prefix_source']}), engine {link['engine']} in "
        f"{link['namespace']}, MTU {link['mtu']}, packets out "
        f"{counters.get('to_clat_packets', '?')} in {counters.get('from_clat_packets', '?')}"
        f"{dhcp}"
    )


def _cleanup(args: argparse.Namespace) -> int:
    removed = clat_engine.cleanup_all(args.netns_prefix, args.state_dir)
    status = args.state_dir / "status.json"
    if status.exists() and read_status(args.state_dir) is None:
        status.unlink()
        removed.append(f"stale {status}")
    for what in removed:
        print(f"removed {what}")
    if not removed:
        print("nothing to remove")
    return EXIT_OK
