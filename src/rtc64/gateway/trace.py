# SIP message tracing for chosen sources and AORs (``sip.trace``), as Kamailio's siptrace
# or sngrep do for a filter: whole messages in the log, logger ``rtc64.trace``.
#
# Rules:
# - A message is traced when its remote address (source of one received, destination of
#   one sent) is in a listed network, or its From or To URI is a listed AOR (scheme,
#   user and host compared case-insensitively, URI parameters ignored).
# - The rules are replaced as a whole on reload (``rules``); no rule costs nothing more
#   than one emptiness check per message.
"""A transport tap that logs whole SIP messages for listed networks and AORs."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from ipaddress import IPv4Network, IPv6Network

from rtc64.gateway.calllog import printable
from rtc64.net.address import unmap
from rtc64.net.endpoint import Flow

_FROM_TO = (b"from", b"f", b"to", b"t")


def _header_uris(data: bytes) -> list[bytes]:
    """The URIs of the From and To headers of a SIP message, lowercased."""
    head = data.split(b"\r\n\r\n", 1)[0]
    found: list[bytes] = []
    for line in head.split(b"\r\n")[1:]:
        name, colon, value = line.partition(b":")
        if not colon or name.strip().lower() not in _FROM_TO:
            continue
        value = value.strip()
        if b"<" in value:
            value = value.split(b"<", 1)[1].split(b">", 1)[0]
        else:
            value = value.split(b";", 1)[0]
        found.append(value.split(b";", 1)[0].strip().lower())
    return found


class Tracer:
    """Logs the SIP messages matching ``rules`` (networks or ``sip:user@host`` AORs)."""

    def __init__(self, rules: Sequence[IPv4Network | IPv6Network | str], log: logging.Logger):
        self.log = log
        self.networks: tuple[IPv4Network | IPv6Network, ...] = ()
        self.aors: frozenset[bytes] = frozenset()
        self.rules = rules

    @property
    def rules(self) -> tuple[IPv4Network | IPv6Network | str, ...]:
        return (*self.networks, *sorted(a.decode() for a in self.aors))

    @rules.setter
    def rules(self, rules: Sequence[IPv4Network | IPv6Network | str]) -> None:
        self.networks = tuple(r for r in rules if not isinstance(r, str))
        self.aors = frozenset(r.lower().encode() for r in rules if isinstance(r, str))

    def _matches(self, data: bytes, flow: Flow) -> bool:
        if not self.networks and not self.aors:
            return False
        remote = unmap(flow.remote[0])
        if any(remote in net for net in self.networks):
            return True
        return bool(self.aors) and any(u in self.aors for u in _header_uris(data))

    def received(self, data: bytes, flow: Flow, now: float) -> None:
        if self._matches(data, flow):
            self._log("received from", data, flow)

    def sent(self, data: bytes, flow: Flow, now: float) -> None:
        if self._matches(data, flow):
            self._log("sent to", data, flow)

    def _log(self, direction: str, data: bytes, flow: Flow) -> None:
        remote = f"{flow.remote[0]}:{flow.remote[1]}"
        self.log.info(
            "SIP %s %s (%s %s):\n%s",
            direction,
            remote,
            flow.transport.value,
            flow.family.label,
            printable(data.decode("utf-8", "replace").replace("\r\n", "\n")),
            extra={
                "event": "sip-trace",
                "direction": "in" if direction.startswith("received") else "out",
                "remote": remote,
                "transport": flow.transport.value,
                "family": flow.family.label,
            },
        )
