# Rules: a Flow names where a SIP message came from and how to answer on the same path
# (RFC 3261 §18.2.2: responses go back over the connection the request arrived on, or from
# the listener it reached; RFC 5626 §3: a flow is (transport, local, remote) and, for
# connection-oriented transports, one connection). Addresses are normalised (ip, port)
# pairs: ``ipaddress`` objects compare as binary values; IPv6 scope ids stay in the address.
"""The flow a SIP message travelled on: transport, local and remote address, connection."""

from __future__ import annotations

from dataclasses import dataclass

from rtc64.net.address import Family, IPAddress, family_of, format_hostport
from rtc64.net.endpoint import Transport

SockAddr = tuple[IPAddress, int]
"""A normalised socket address: ``(ip, port)``."""


@dataclass(frozen=True, slots=True)
class Flow:
    """Transport, local ``(ip, port)``, remote ``(ip, port)`` and connection id.

    ``connection_id`` is ``None`` for UDP; for TCP/TLS/WS/WSS it identifies the one
    connection a reply must reuse (it stays unique for the lifetime of the layer).
    """

    transport: Transport
    local: SockAddr
    remote: SockAddr
    connection_id: int | None = None

    @property
    def family(self) -> Family:
        return family_of(self.remote[0])

    @property
    def reliable(self) -> bool:
        return self.transport.reliable

    def __str__(self) -> str:
        local = format_hostport(self.local[0], self.local[1])
        remote = format_hostport(self.remote[0], self.remote[1])
        conn = "" if self.connection_id is None else f"#{self.connection_id}"
        return f"{self.transport.value}{conn} {local}<->{remote}"
