# Wiring of the ng control socket to a media relay, so Kamailio's or OpenSIPS' rtpengine
# module can use rtc64 in place of rtpengine (inside ``rtc64 serve`` with ``ng.listen``,
# or alone: ``rtc64 relay``).
#
# Rules: the protocol is ``relay.ng`` (pure), the socket ``io.ng_listener``; this module
# only joins them from an ``NgSettings`` value, which ``rtc64.settings`` builds from the
# typed ``ng`` section (``ng.listen``, ``ng.interfaces``): it never reads configuration.
"""Start the ng control listener for a relay from its settings."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from rtc64.io import ng_listener
from rtc64.io.ng_listener import NgListener
from rtc64.net.address import Family
from rtc64.net.endpoint import ListenSpec
from rtc64.relay.ng import MediaEngine, NgProtocol


@dataclass(frozen=True, slots=True)
class NgSettings:
    """Where the ng socket listens and the ``direction`` names it knows."""

    listen: ListenSpec
    """A UDP endpoint, e.g. ``udp:127.0.0.1:2223``."""
    interfaces: tuple[tuple[str, Family], ...] = ()
    """``direction`` interface names and their families (``ipv4``/``ipv6`` are built in)."""


async def start(settings: NgSettings, relay: MediaEngine, log: logging.Logger) -> NgListener:
    """Serve the ng protocol for ``relay`` as ``settings`` say; ``await listener.stop()``
    ends it. Raises ``OSError`` when the socket cannot be bound."""
    protocol = NgProtocol(relay, interfaces=dict(settings.interfaces))
    return await ng_listener.start(settings.listen, protocol, log)
