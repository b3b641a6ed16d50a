# RFC 5923 connection reuse between servers: the alias table of the SIP transport layer.
#
# Rules (RFC 5923 §5-6, RFC 5922 §7 for the name check):
# - A request arriving on a TLS connection the peer opened whose top Via carries
#   ``;alias`` asks us to reuse that connection for requests to the Via's sent-by host and
#   port (5061 when absent). It is recorded only when the handshake verified the peer's
#   client certificate against the configured client CAs and that certificate names the
#   host (SAN URI/DNS/IP, no wildcards); otherwise nothing is recorded, the refusal is
#   counted (``aliases_refused``) and logged. Connections we opened record nothing.
# - Keys are (normalised name, port): the name a send is for (its SIP domain, or the
#   address of a numeric target). A connection holds at most ``MAX_ALIASES``; they leave
#   the table when it closes.
"""The RFC 5923 alias table: authenticated (name, port) -> a connection the peer opened."""

from __future__ import annotations

import logging
from collections.abc import Callable

from rtc64.errors import RemoteProtocolError
from rtc64.io.connection import Connection
from rtc64.io.stats import TransportStats
from rtc64.net.address import format_hostport
from rtc64.sip import tls_identity
from rtc64.sip.grammar import has_param
from rtc64.sip.message import Request
from rtc64.sip.via import via_host_text

MAX_ALIASES = 8
"""Aliases one connection may hold (one name, a few ports)."""
TLS_DEFAULT_PORT = 5061

AliasKey = tuple[str, int]


class AliasTable:
    """Aliases recorded from verified peers (see the module rules)."""

    __slots__ = ("_by_key", "log", "on_recorded", "stats")

    def __init__(self, stats: TransportStats, log: logging.Logger) -> None:
        self.stats = stats
        self.log = log
        self._by_key: dict[AliasKey, int] = {}
        self.on_recorded: Callable[[AliasKey, int], None] | None = None
        """Told of each alias recorded (SIP workers: the other workers learn it)."""

    def __len__(self) -> int:
        return len(self._by_key)

    def snapshot(self) -> dict[AliasKey, int]:
        """(authenticated name, port) -> connection id."""
        return dict(self._by_key)

    def find(self, name: str, port: int) -> int | None:
        """The connection id aliased for ``name`` (a domain or an IP text) and ``port``."""
        return self._by_key.get((tls_identity.normalise(name), port))

    def offer(self, msg: Request, conn: Connection) -> None:
        """A request arrived on ``conn`` (TLS): record the alias its top Via asks for, if
        the peer proved the Via's host with a verified certificate."""
        try:
            via = msg.via
        except (RemoteProtocolError, IndexError):
            return  # the proxy answers the malformed request
        if not has_param(via.params, b"alias") or conn.outbound or conn.is_closing():
            return
        name = tls_identity.normalise(via_host_text(via))
        key = (name, via.port or TLS_DEFAULT_PORT)
        if self._by_key.get(key) == conn.id:
            return
        if conn.peer_cert is None:
            why = "no verified client certificate"
        elif not tls_identity.peercert_matches(name, conn.peer_cert):
            why = "its certificate does not name that host"
        elif len(conn.aliases) >= MAX_ALIASES:
            why = f"already {MAX_ALIASES} aliases"
        else:
            self._by_key[key] = conn.id
            conn.aliases.append(key)
            self.stats.aliases += 1
            self.log.info("RFC 5923: %s reused for %s", conn, format_hostport(name, key[1]))
            if self.on_recorded is not None:
                self.on_recorded(key, conn.id)
            return
        self.stats.aliases_refused += 1
        self.log.info("RFC 5923: no alias %s for %s: %s", format_hostport(name, key[1]), conn, why)

    def forget(self, conn: Connection) -> None:
        """``conn`` closed: its aliases leave the table."""
        for key in conn.aliases:
            if self._by_key.get(key) == conn.id:
                del self._by_key[key]
