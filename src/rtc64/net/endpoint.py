"""Transports, listen endpoints, bound listeners and flows: the plain data every layer shares.

A listen endpoint is ``TRANSPORT:HOST:PORT[;advertise=HOST[:PORT]]`` where HOST is an
IPv4 address, ``[IPv6]`` or (for ``advertise`` only) a domain name, e.g.
``udp:[::]:5060``, ``tls:[2001:db8::1]:5061``, ``udp:10.0.0.5:5060;advertise=203.0.113.5``.
Each endpoint is one socket of one family (IPv6 sockets are V6ONLY).

A ``Flow`` names where a SIP message came from and how to answer on the same path
(RFC 3261 §18.2.2: responses go back over the connection the request arrived on, or from
the listener it reached; RFC 5626 §3: a flow is (transport, local, remote) and, for
connection-oriented transports, one connection). Addresses are normalised ``(ip, port)``
pairs: ``ipaddress`` objects compare as binary values; IPv6 scope ids stay in the address.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

from rtc64.errors import RemoteProtocolError
from rtc64.net.address import (
    Family,
    Host,
    HostPort,
    IPAddress,
    family_of,
    format_hostport,
    parse_hostport,
)


class Transport(enum.Enum):
    """SIP transports (RFC 3261 §18, RFC 7118 for WebSocket)."""

    UDP = "udp"
    TCP = "tcp"
    TLS = "tls"
    WS = "ws"
    WSS = "wss"

    __hash__ = object.__hash__  # members are singletons: no Python-level hash per look-up

    @property
    def reliable(self) -> bool:
        return self is not Transport.UDP

    @property
    def secure(self) -> bool:
        return self in (Transport.TLS, Transport.WSS)

    @property
    def via_token(self) -> str:
        """The Via ``transport`` token (RFC 3261 §20.42, RFC 7118 §5.2)."""
        return self.value.upper()

    @property
    def default_port(self) -> int:
        return _DEFAULT_PORTS[self.value]


_DEFAULT_PORTS = {"udp": 5060, "tcp": 5060, "tls": 5061, "ws": 80, "wss": 443}


@dataclass(frozen=True, slots=True)
class ListenSpec:
    """One listening socket: transport, local address, port, optional advertised host."""

    transport: Transport
    address: IPAddress
    port: int
    advertise: HostPort | None = None

    def __reduce__(
        self,
    ) -> tuple[type[ListenSpec], tuple[Transport, IPAddress, int, HostPort | None]]:
        # Pickled to the SIP workers; compiled, a frozen class cannot be unpickled field
        # by field (its __setattr__ refuses): rebuild it through the constructor.
        return (ListenSpec, (self.transport, self.address, self.port, self.advertise))

    @property
    def family(self) -> Family:
        return family_of(self.address)

    def __str__(self) -> str:
        text = f"{self.transport.value}:{format_hostport(self.address, self.port)}"
        if self.advertise is not None:
            text += f";advertise={self.advertise}"
        return text


class EndpointError(ValueError):
    """A listen endpoint string is malformed; the message names the bad part."""


EXPECTED_FORM = (
    "TRANSPORT:HOST:PORT[;advertise=HOST[:PORT]] with TRANSPORT one of "
    "udp, tcp, tls, ws, wss and HOST an IPv4 address or [IPv6] "
    "(e.g. udp:[::]:5060, tcp:0.0.0.0:5060)"
)


def parse_listen(text: str) -> ListenSpec:
    """Parse a listen endpoint; raises ``EndpointError`` naming what is wrong."""
    main, _, params = text.partition(";")
    scheme, sep, rest = main.partition(":")
    if not sep:
        raise EndpointError(f"{text!r}: missing transport")
    try:
        transport = Transport(scheme.lower())
    except ValueError:
        raise EndpointError(f"{text!r}: unknown transport {scheme!r}") from None
    try:
        hostport = parse_hostport(rest)
    except RemoteProtocolError:
        raise EndpointError(f"{text!r}: bad address {rest!r}") from None
    host: Host = hostport.host
    if not isinstance(host, IPv4Address | IPv6Address):
        raise EndpointError(f"{text!r}: listen address must be an IP address, not {host!r}")
    port = transport.default_port if hostport.port is None else hostport.port
    advertise: HostPort | None = None
    if params:
        for param in params.split(";"):
            name, _, value = param.partition("=")
            if name.strip().lower() != "advertise" or not value:
                raise EndpointError(f"{text!r}: unknown parameter {param!r}")
            try:
                advertise = parse_hostport(value.strip())
            except RemoteProtocolError:
                raise EndpointError(f"{text!r}: bad advertise address {value!r}") from None
    return ListenSpec(transport, host, port, advertise)


SockAddr = tuple[IPAddress, int]
"""A normalised socket address: ``(ip, port)``."""


@dataclass(frozen=True, slots=True)
class BoundListener:
    """A listen spec and the port it is actually bound to (differs when the spec says 0)."""

    spec: ListenSpec
    port: int

    def __reduce__(self) -> tuple[type[BoundListener], tuple[ListenSpec, int]]:
        return (BoundListener, (self.spec, self.port))  # see ListenSpec.__reduce__

    @property
    def transport(self) -> Transport:
        return self.spec.transport

    @property
    def family(self) -> Family:
        return self.spec.family

    @property
    def local(self) -> SockAddr:
        return (self.spec.address, self.port)

    @property
    def wildcard(self) -> bool:
        return self.spec.address.is_unspecified

    def name(self) -> str:
        """Stable text naming this listener (stored with registrations)."""
        return f"{self.transport.value}:{format_hostport(self.spec.address, self.port)}"


@dataclass(frozen=True, slots=True, init=False)
class Flow:
    """Transport, local ``(ip, port)``, remote ``(ip, port)`` and connection id.

    ``connection_id`` is ``None`` for UDP; for TCP/TLS/WS/WSS it identifies the one
    connection a reply must reuse (it stays unique for the lifetime of the layer).
    """

    transport: Transport
    local: SockAddr
    remote: SockAddr
    connection_id: int | None = None

    # Written out (init=False): mypyc compiles it; a generated __init__ stays Python.
    def __init__(
        self,
        transport: Transport,
        local: SockAddr,
        remote: SockAddr,
        connection_id: int | None = None,
    ) -> None:
        object.__setattr__(self, "transport", transport)
        object.__setattr__(self, "local", local)
        object.__setattr__(self, "remote", remote)
        object.__setattr__(self, "connection_id", connection_id)

    def __reduce__(self) -> tuple[type[Flow], tuple[Transport, SockAddr, SockAddr, int | None]]:
        return (Flow, (self.transport, self.local, self.remote, self.connection_id))  # ditto

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
