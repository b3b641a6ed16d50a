# Wiring of the ng control socket to a media relay, and a stand-alone process that runs
# only the relay and its ng socket (``python -m rtc64.relay.ngserver``), so Kamailio's or
# OpenSIPS' rtpengine module can use rtc64 in place of rtpengine.
#
# Rules: the protocol is ``relay.ng`` (pure), the socket ``io.ng_listener``; this module
# only builds them from configuration (``ng.listen``, ``ng.interfaces``; the relay from
# ``media.*``). The stand-alone process takes the same settings as ``rtc64 serve``'s
# command line and logs "ng server ready" once the socket is bound.
"""Start the ng control listener for a relay; run relay + ng listener alone."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Mapping, Sequence
from ipaddress import ip_network
from pathlib import Path
from typing import TYPE_CHECKING

from rtc64 import config as config_module
from rtc64.errors import ConfigError
from rtc64.io import loop as loop_module
from rtc64.io import ng_listener
from rtc64.io.ng_listener import NgListener
from rtc64.logs import setup as setup_logging
from rtc64.net.address import Family
from rtc64.net.endpoint import ListenSpec
from rtc64.relay.ng import MediaEngine, NgProtocol
from rtc64.relay.options import RelaySettings

if TYPE_CHECKING:
    import asyncio


async def start(
    spec: ListenSpec,
    relay: MediaEngine,
    log: logging.Logger,
    *,
    interfaces: Mapping[str, Family] | None = None,
) -> NgListener:
    """Serve the ng protocol for ``relay`` on ``spec``; ``await listener.stop()`` ends it.

    ``interfaces`` maps ``direction`` names to families (``ng.interfaces``). Raises
    ``OSError`` when the socket cannot be bound.
    """
    protocol = NgProtocol(relay, interfaces=interfaces)
    return await ng_listener.start(spec, protocol, log)


async def start_from_config(
    config: config_module.Config, relay: MediaEngine, log: logging.Logger
) -> NgListener | None:
    """The ng listener ``ng.listen`` asks for, or None when it is off."""
    spec: ListenSpec | None = config["ng.listen"]
    if spec is None:
        return None
    return await start(spec, relay, log, interfaces=dict(config["ng.interfaces"]))


# --- stand-alone process ---

_OPTIONS = (
    ("--ng-listen", "ng.listen", False, "ng control socket, e.g. udp:127.0.0.1:2223"),
    ("--interface", "ng.interfaces", True, "direction name and family, e.g. internal=ipv4"),
    ("--media-address", "media.addresses", True, "relay address (repeatable, one per family)"),
    ("--media-ports", "media.ports", False, "relay port range LOW-HIGH"),
    ("--media-workers", "media.workers", False, "relay worker processes"),
    ("--media-timeout", "media.timeout", False, "seconds without media that end a call"),
    ("--strict-source", "media.strict_source", False, "true: drop media from other sources"),
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m rtc64.relay.ngserver",
        description="rtc64's media relay driven over rtpengine's ng protocol only",
    )
    parser.add_argument("--config", help="TOML configuration file (media.*, ng.*)")
    parser.add_argument("--log-level", default="info", choices=config_module.LOG_LEVELS)
    for flag, key, repeat, text in _OPTIONS:
        parser.add_argument(flag, dest=key, action="append" if repeat else "store", help=text)
    parser.add_argument(
        "--trusted-network",
        action="append",
        default=[],
        help="network whose SDP addresses are usable though private (repeatable)",
    )
    return parser


async def _serve(
    cfg: config_module.Config, trusted: Sequence[str], stop: asyncio.Event, log: logging.Logger
) -> int:
    # The relay service pulls in the forwarders (sockets, worker processes): only the
    # stand-alone process needs them, not the gateway importing ``start``.
    from rtc64.relay.service import start_relay  # noqa: PLC0415

    settings = RelaySettings.from_config(
        cfg, trusted_networks=tuple(ip_network(n, strict=False) for n in trusted)
    )
    if not settings.addresses:
        log.error("no relay address: give --media-address (one per family)")
        return 2
    relay = start_relay(settings, log=log.getChild("relay"))
    try:
        listener = await start_from_config(cfg, relay, log)
        if listener is None:
            log.error("no ng socket: give --ng-listen udp:HOST:PORT")
            return 2
        log.info(
            "ng server ready: relay on %s, ports %d-%d",
            ", ".join(str(a) for a in settings.addresses),
            *settings.ports,
        )
        try:
            await stop.wait()
        finally:
            await listener.stop()
    finally:
        relay.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    overrides = {
        key: getattr(args, key) for _, key, _, _ in _OPTIONS if getattr(args, key) is not None
    }
    try:
        cfg = config_module.load(None if args.config is None else Path(args.config), overrides)
    except ConfigError as exc:
        print(f"rtc64 ngserver: {exc}", file=sys.stderr)
        return 2
    setup_logging(args.log_level)
    log = logging.getLogger("rtc64.ng")
    try:
        return loop_module.run(lambda stop: _serve(cfg, args.trusted_network, stop, log))
    except OSError as exc:
        log.error("cannot start: %s", exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
